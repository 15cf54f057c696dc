// HMAC-SHA256 for the derivations that run per stream (the seed tree's steps, HKDF), written over
// a SHA-256 digest context fetched once per thread. A one-shot HMAC() or a new EVP_KDF context
// fetches the algorithm and builds its state again on every call, and even a kept EVP_MAC context
// sets up its provider state for each new key: most of the cost of hashing 32 bytes
// (bench/crypto_bench.cc, stream_key/hkdf and stream_seed).
#pragma once

#include <cstddef>
#include <initializer_list>
#include <span>

namespace annal::crypto {

inline constexpr std::size_t kHmacBytes = 32;

// HMAC-SHA256 under `key` (any length) of the concatenation of `message`, into `out`. Any
// thread (each has its own context, freed and wiped at the thread's exit). OpenSSL fails here only
// without memory: the process stops (ANNAL_ASSERT).
void hmac_sha256(std::span<const std::byte> key, std::initializer_list<std::span<const std::byte>> message,
                 std::span<std::byte, kHmacBytes> out);

// Starts this thread's digest context again, so that it holds nothing of the last key it was
// given (the digest state made from it stays until the next use). Called at
// the end of each derivation: an idle thread must not keep an erased stream's key material.
void hmac_sha256_forget();

}  // namespace annal::crypto
