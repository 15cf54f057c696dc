// HKDF-SHA256 (RFC 5869) and the per-stream keys the engine derives with it.
//
// One master key, many stream keys: each stream's data is sealed under a key of its own, derived
// from the master, a random seed of the stream's own and the stream's id. Neither the master nor
// the seed alone gives the key, so destroying a stream's seed (and every cached copy of its key)
// shreds that stream alone: whoever keeps the master can no longer derive it. A leaked stream key
// exposes one stream, not all.
//
// All functions are pure and safe to call from any thread at once. Each costs a few microseconds
// (bench/crypto_bench.cc, stream_key/hkdf), so the engine derives a stream's key once and caches it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>

#include "annal/base/status.h"
#include "annal/crypto/key.h"

namespace annal::crypto {

inline constexpr std::size_t kHkdfOutputBytesMax = 255 * 32;  // RFC 5869: L <= 255 * HashLen

// HKDF-SHA256 of `ikm` with `salt` and `info`, filling all of `out` (1 to kHkdfOutputBytesMax
// bytes). An empty salt means HashLen zero bytes, as RFC 5869 says.
void hkdf_sha256(std::span<const std::byte> ikm, std::span<const std::byte> salt,
                                 std::span<const std::byte> info, std::span<std::byte> out);

// A 32-byte key derived from `master` by HKDF-SHA256. Distinct `info` gives independent keys.
[[nodiscard]] Result<Key> derive_key(const Key& master, std::span<const std::byte> salt,
                                     std::span<const std::byte> info);

// The label that starts every stream key's info. The "v1" names this derivation: changing any byte
// below changes every stream key, so a new scheme gets a new label and v1 stays derivable for data
// already sealed with it.
inline constexpr char kStreamKeyLabel[] = "annal stream key v1";
inline constexpr std::size_t kStreamKeyLabelBytes = sizeof kStreamKeyLabel - 1;  // without the NUL
inline constexpr std::size_t kStreamKeyInfoBytes = kStreamKeyLabelBytes + 8 + 4;
static_assert(kStreamKeyLabelBytes == 19 && kStreamKeyInfoBytes == 31);

// A stream's seed: random bytes (Key::random()) the store's key store keeps per stream and
// destroys when the stream is erased. It is the HKDF salt below.
inline constexpr std::size_t kStreamSeedBytes = 32;
static_assert(kStreamSeedBytes == kKeyBytes, "a seed fits a Key, which wipes it");

// The key that seals stream `stream_id`'s data under master key version `key_version`:
//
//   HKDF-SHA256(IKM = master, salt = seed, info, L = 32), where the salt is the stream's 32-byte
//   seed as given and info is exactly 31 bytes:
//
//   offset  0: "annal stream key v1"   19 bytes of ASCII, no terminating NUL
//   offset 19: stream_id               u64, little-endian
//   offset 27: key_version             u32, little-endian
//
// The seed goes in as the salt, RFC 5869's place for random input (the extract step keys HMAC
// with it), as docs/security.md specifies; the info holds only public bytes.
// key_version is in the info although each version has its own master, so that two versions
// given the same master by mistake still yield different stream keys.
// Example: stream 1, version 1 -> info = "annal stream key v1" 01 00 00 00 00 00 00 00 01 00 00 00.
//
// The seed is a span, not a Key, so that swapping it with the master does not compile; the key
// store should still hold seeds where they are wiped (a Key, passed as seed.bytes()), since a seed
// and the master together are the stream's key.
[[nodiscard]] Result<Key> stream_key(const Key& master, std::span<const std::byte, kStreamSeedBytes> seed,
                                     std::uint64_t stream_id, std::uint32_t key_version);

// The key that tags the journal's hash chain (annal/journal/chain.h) under master version
// `key_version`: HKDF-SHA256(IKM = master, no salt, info = "annal chain key v1" | key_version u32
// LE). Whoever can rewrite the disk but has no master key cannot make a tag.
inline constexpr char kChainKeyLabel[] = "annal chain key v1";
[[nodiscard]] Result<Key> chain_key(const Key& master, std::uint32_t key_version);
// The chain key of each master version `keys` holds, asked version by version (as
// journal::verify_chain does): nullopt for a version `keys` lacks or cannot give.
[[nodiscard]] std::function<std::optional<Key>(std::uint32_t key_version)> chain_keys(std::shared_ptr<KeyProvider> keys);

// The keys that sign an exported chain head (annal inspect --chain --sign-key), derived the same
// way from a key file of their own (info = "annal chain head signing key v1" | key_version):
// held apart from the master keys (by an auditor), so that whoever runs the store, master keys
// and all, cannot sign a head of a history they edited.
inline constexpr char kHeadSigningKeyLabel[] = "annal chain head signing key v1";
[[nodiscard]] std::function<std::optional<Key>(std::uint32_t key_version)> head_signing_keys(
    std::shared_ptr<KeyProvider> keys);

}  // namespace annal::crypto
