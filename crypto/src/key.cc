#include "annal/crypto/key.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <cstring>

#include "openssl_error.h"

namespace annal::crypto {

Key::Key(std::span<const std::byte, kKeyBytes> bytes) noexcept { std::memcpy(bytes_, bytes.data(), kKeyBytes); }

Result<Key> Key::random() {
  std::byte bytes[kKeyBytes];
  if (RAND_bytes(reinterpret_cast<unsigned char*>(bytes), kKeyBytes) != 1) return openssl_error("RAND_bytes");
  Key key{std::span<const std::byte, kKeyBytes>(bytes)};
  OPENSSL_cleanse(bytes, sizeof bytes);
  return key;
}

Key::~Key() { OPENSSL_cleanse(bytes_, sizeof bytes_); }

Key::Key(Key&& other) noexcept {
  std::memcpy(bytes_, other.bytes_, kKeyBytes);
  OPENSSL_cleanse(other.bytes_, sizeof other.bytes_);
}

Key& Key::operator=(Key&& other) noexcept {
  if (this != &other) {
    std::memcpy(bytes_, other.bytes_, kKeyBytes);
    OPENSSL_cleanse(other.bytes_, sizeof other.bytes_);
  }
  return *this;
}

bool operator==(const Key& a, const Key& b) noexcept { return CRYPTO_memcmp(a.bytes_, b.bytes_, kKeyBytes) == 0; }

}  // namespace annal::crypto
