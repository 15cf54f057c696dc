// AES-256-GCM: authenticated encryption of a payload, bound to additional data (a record's header)
// that is authenticated but not encrypted. Intel's IPsec Multi-Buffer Crypto library, which picks
// the CPU's best code (AES-NI and PCLMULQDQ, VAES and VPCLMULQDQ on AVX-512) once: a call costs 45 ns
// for 256 bytes where OpenSSL's EVP API costs 188 ns, with the same bytes out (bench/crypto_bench.cc;
// the tests check each against the other).
//
// Sealed layout: ciphertext (as long as the plaintext) || 16-byte tag.
//
// The nonce is 12 bytes and must never repeat under one key: a repeat leaks the XOR of two
// plaintexts and lets an attacker forge tags. The caller owns uniqueness (the journal will use a
// 4-byte random part per open plus the 8-byte global sequence); this class cannot check it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "annal/base/status.h"
#include "annal/crypto/key.h"

namespace annal::crypto {

inline constexpr std::size_t kNonceBytes = 12;  // GCM's native IV size: no GHASH of the IV needed
inline constexpr std::size_t kTagBytes = 16;    // full-length tag, never truncated
inline constexpr std::size_t kPlaintextBytesMax = std::size_t{1} << 30;  // 1 GiB, within an int
inline constexpr std::size_t kAadBytesMax = std::size_t{1} << 20;        // 1 MiB; a header is ~48 B

using Nonce = std::span<const std::byte, kNonceBytes>;

// One key, its schedule (and GCM's hash key powers) computed once; a call allocates nothing.
//
// Not thread-safe: one object per thread at a time (the engine's caches hold one per thread). It
// may move between threads.
//
// Buffers: `out` may be the same memory as the input (in place: out.data() == plaintext.data(),
// or == sealed.data()); any other overlap is a programmer error and asserts.
class Aes256Gcm {
 public:
  // Does not keep `key`.
  [[nodiscard]] static Aes256Gcm make(const Key& key);

  ~Aes256Gcm();  // wipes the key schedule
  Aes256Gcm(Aes256Gcm&& other) noexcept;
  Aes256Gcm& operator=(Aes256Gcm&& other) noexcept;
  Aes256Gcm(const Aes256Gcm&) = delete;
  Aes256Gcm& operator=(const Aes256Gcm&) = delete;

  // Keys the same object with another key, as make(key) would, without allocating: a cache of
  // ciphers reuses the one it lets go of.
  void rekey(const Key& key);

  // Encrypts `plaintext` (at most kPlaintextBytesMax) and authenticates it with `aad` (at most
  // kAadBytesMax); writes ciphertext || tag to `out`, which must be exactly plaintext.size() +
  // kTagBytes. Cannot fail: what the library checks, the asserts here check first.
  void seal(Nonce nonce, std::span<const std::byte> aad, std::span<const std::byte> plaintext,
            std::span<std::byte> out);

  // Checks and decrypts what seal() wrote. `sealed` is ciphertext || tag (at least kTagBytes);
  // `out` must be exactly sealed.size() - kTagBytes. ErrorCode::corruption if the tag does not
  // match: the key, nonce or aad is not the one sealed with, or a byte was altered. On any failure
  // `out` is wiped to zeros, never left holding unauthenticated plaintext (in place, that means
  // the sealed bytes are lost: keep a copy if you need them afterwards).
  [[nodiscard]] Status open(Nonce nonce, std::span<const std::byte> aad, std::span<const std::byte> sealed,
                            std::span<std::byte> out);

 private:
  struct Schedule;  // the library's key data, 64-byte aligned
  explicit Aes256Gcm(std::unique_ptr<Schedule> schedule) noexcept;

  std::unique_ptr<Schedule> schedule_;  // null once moved from
};

}  // namespace annal::crypto
