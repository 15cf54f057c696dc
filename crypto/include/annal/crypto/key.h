// Key: 32 bytes of secret key material (an AES-256 key, an HKDF master). KeyProvider: where master
// keys come from; the application implements it over its HSM, KMS or vault, or uses KeyFile
// (key_file.h).
//
// A Key wipes its bytes when destroyed or moved from, so a key lives in as few places as the code
// says. It cannot be copied by accident (clone() says so aloud) nor printed: there is no
// operator<< and no to_string, so a key cannot end up in a log line.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <span>

#include "annal/base/status.h"

namespace annal::crypto {

inline constexpr std::size_t kKeyBytes = 32;  // AES-256, and SHA-256's output for HKDF

class Key {
 public:
  // Takes a copy of `bytes`; the caller wipes its own copy.
  explicit Key(std::span<const std::byte, kKeyBytes> bytes) noexcept;
  // 32 bytes from OpenSSL's CSPRNG (RAND_bytes); fails only if the generator cannot be seeded.
  [[nodiscard]] static Result<Key> random();

  ~Key();  // wipes (OPENSSL_cleanse, which the compiler may not elide)
  Key(Key&& other) noexcept;             // `other` is left all zeros
  Key& operator=(Key&& other) noexcept;  // likewise
  Key(const Key&) = delete;
  Key& operator=(const Key&) = delete;

  // A second copy of the same key, for the rare holder that must keep its own.
  [[nodiscard]] Key clone() const noexcept { return Key(bytes()); }

  // The raw bytes, valid while this Key lives and is not moved from.
  [[nodiscard]] std::span<const std::byte, kKeyBytes> bytes() const noexcept { return bytes_; }

  // Constant time (CRYPTO_memcmp): how long it takes says nothing about where two keys differ.
  friend bool operator==(const Key& a, const Key& b) noexcept;

  friend std::ostream& operator<<(std::ostream&, const Key&) = delete;  // never print a key

 private:
  std::byte bytes_[kKeyBytes];
};

// Where master keys come from. A master key never encrypts data itself: the engine derives one key
// per stream from it and a random seed of the stream's own (hkdf.h), so that destroying a stream's
// seed (crypto-shredding) or rotating the master touches nothing else.
//
// Versions let the master rotate: data sealed under version 3 names version 3 and is opened with
// it, while new data uses current_version(). An implementation keeps every version that sealed
// data still needs; dropping one makes that data unreadable, which is the point when done on
// purpose.
//
// Thread safety: the engine calls both methods from any of its threads, concurrently; an
// implementation synchronises whatever state it keeps. master_key() may block (a network round
// trip to a KMS); the engine calls it when a stream's key is first needed, not per record.
class KeyProvider {
 public:
  virtual ~KeyProvider() = default;

  // The version new data is sealed with; at least 1.
  [[nodiscard]] virtual std::uint32_t current_version() = 0;

  // The master key of `version`. ErrorCode::not_found with a message naming the version when this
  // provider does not have it; any other error when it cannot be reached (the engine reports it
  // and may ask again).
  [[nodiscard]] virtual Result<Key> master_key(std::uint32_t version) = 0;
};

}  // namespace annal::crypto
