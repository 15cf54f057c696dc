// AES-256-GCM: authenticated encryption of a payload, bound to additional data (a record's header)
// that is authenticated but not encrypted. OpenSSL's EVP API, which uses AES-NI and PCLMULQDQ (or
// VAES) when the CPU has them.
//
// Sealed layout: ciphertext (as long as the plaintext) || 16-byte tag.
//
// The nonce is 12 bytes and must never repeat under one key: a repeat leaks the XOR of two
// plaintexts and lets an attacker forge tags. The caller owns uniqueness (the journal will use a
// 4-byte random part per open plus the 8-byte global sequence); this class cannot check it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "annal/base/status.h"
#include "annal/crypto/key.h"

struct evp_cipher_ctx_st;  // OpenSSL's EVP_CIPHER_CTX, declared so this header needs no OpenSSL one

namespace annal::crypto {

inline constexpr std::size_t kNonceBytes = 12;  // GCM's native IV size: no GHASH of the IV needed
inline constexpr std::size_t kTagBytes = 16;    // full-length tag, never truncated
inline constexpr std::size_t kPlaintextBytesMax = std::size_t{1} << 30;  // 1 GiB, within an int
inline constexpr std::size_t kAadBytesMax = std::size_t{1} << 20;        // 1 MiB; a header is ~48 B

using Nonce = std::span<const std::byte, kNonceBytes>;

// One key, its schedule computed once. seal() and open() re-initialise OpenSSL's context with the
// nonce only, so a call allocates nothing.
//
// Not thread-safe: one object per thread (each holds OpenSSL contexts that a call mutates). Make
// another from the same Key for another thread.
//
// Buffers: `out` may be the same memory as the input (in place: out.data() == plaintext.data(),
// or == sealed.data()); any other overlap is a programmer error and asserts.
class Aes256Gcm {
 public:
  // Fails only if OpenSSL cannot allocate its contexts (ErrorCode::failed). Does not keep `key`.
  [[nodiscard]] static Result<Aes256Gcm> make(const Key& key);

  ~Aes256Gcm();  // frees the contexts, whose key schedule OpenSSL wipes
  Aes256Gcm(Aes256Gcm&& other) noexcept;
  Aes256Gcm& operator=(Aes256Gcm&& other) noexcept;
  Aes256Gcm(const Aes256Gcm&) = delete;
  Aes256Gcm& operator=(const Aes256Gcm&) = delete;

  // Keys the same contexts with another key, as make(key) would, without allocating: a cache of
  // ciphers reuses the one it lets go of. Fails only if OpenSSL does (ErrorCode::failed); the
  // object must not be used then.
  [[nodiscard]] Status rekey(const Key& key);

  // Encrypts `plaintext` (at most kPlaintextBytesMax) and authenticates it with `aad` (at most
  // kAadBytesMax); writes ciphertext || tag to `out`, which must be exactly plaintext.size() +
  // kTagBytes. Fails only if OpenSSL does (ErrorCode::failed), and `out` is wiped then.
  [[nodiscard]] Status seal(Nonce nonce, std::span<const std::byte> aad, std::span<const std::byte> plaintext,
                            std::span<std::byte> out);

  // Checks and decrypts what seal() wrote. `sealed` is ciphertext || tag (at least kTagBytes);
  // `out` must be exactly sealed.size() - kTagBytes. ErrorCode::corruption if the tag does not
  // match: the key, nonce or aad is not the one sealed with, or a byte was altered. On any failure
  // `out` is wiped to zeros, never left holding unauthenticated plaintext (in place, that means
  // the sealed bytes are lost: keep a copy if you need them afterwards).
  [[nodiscard]] Status open(Nonce nonce, std::span<const std::byte> aad, std::span<const std::byte> sealed,
                            std::span<std::byte> out);

 private:
  Aes256Gcm(evp_cipher_ctx_st* seal, evp_cipher_ctx_st* open) noexcept : seal_(seal), open_(open) {}

  // One context per direction, each keyed once in make(); both null once moved from.
  evp_cipher_ctx_st* seal_;
  evp_cipher_ctx_st* open_;
};

}  // namespace annal::crypto
