#include "annal/crypto/digest.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "annal/base/assert.h"

namespace annal::crypto {

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  ANNAL_ASSERT(ctx_ != nullptr && EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) == 1);
}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_); }

void Sha256::update(std::span<const std::byte> bytes) noexcept {
  ANNAL_ASSERT(EVP_DigestUpdate(ctx_, bytes.data(), bytes.size()) == 1);
}

Digest Sha256::finish() noexcept {
  Digest out{};
  unsigned int length = 0;
  ANNAL_ASSERT(EVP_DigestFinal_ex(ctx_, reinterpret_cast<unsigned char*>(out.data()), &length) == 1 &&
               length == kDigestBytes);
  ANNAL_ASSERT(EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) == 1);
  return out;
}

Digest hmac_sha256(std::span<const std::byte> key, std::span<const std::byte> message) noexcept {
  Digest out{};
  std::size_t length = 0;
  // One-shot, fetching SHA-256 each time: called once per segment and per head, not per record.
  ANNAL_ASSERT(EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, key.data(), key.size(),
                         reinterpret_cast<const unsigned char*>(message.data()), message.size(),
                         reinterpret_cast<unsigned char*>(out.data()), out.size(), &length) != nullptr &&
               length == kDigestBytes);
  return out;
}

bool equal_digests(const Digest& a, const Digest& b) noexcept { return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0; }

std::string to_hex(const Digest& digest) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * digest.size());
  for (const std::byte b : digest) {
    out += kHex[std::to_integer<unsigned>(b) >> 4];
    out += kHex[std::to_integer<unsigned>(b) & 15];
  }
  return out;
}

std::optional<Digest> digest_from_hex(std::string_view text) noexcept {
  if (text.size() != 2 * kDigestBytes) return std::nullopt;
  const auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  Digest out{};
  for (std::size_t i = 0; i < out.size(); ++i) {
    const int high = nibble(text[2 * i]);
    const int low = nibble(text[2 * i + 1]);
    if (high < 0 || low < 0) return std::nullopt;
    out[i] = static_cast<std::byte>(high * 16 + low);
  }
  return out;
}

}  // namespace annal::crypto
