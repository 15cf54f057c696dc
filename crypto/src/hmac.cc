#include "hmac.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <array>
#include <cstring>

#include "annal/base/assert.h"

namespace annal::crypto {
namespace {

constexpr std::size_t kBlockBytes = 64;  // SHA-256's block, HMAC's padded key
constexpr unsigned char kInnerPad = 0x36;
constexpr unsigned char kOuterPad = 0x5c;

// HMAC written out over one SHA-256 digest context (RFC 2104: H(K ^ opad || H(K ^ ipad || m))).
// OpenSSL's EVP_MAC does the same but sets up its provider state on every new key, more than
// half the cost of a seed-tree step, where the key is new on every call (bench/crypto_bench.cc).
class Hmac {
 public:
  Hmac() : md_(EVP_MD_fetch(nullptr, "SHA256", nullptr)), ctx_(EVP_MD_CTX_new()) {
    ANNAL_ASSERT(md_ != nullptr && ctx_ != nullptr);
    ANNAL_ASSERT(EVP_MD_get_size(md_) == static_cast<int>(kHmacBytes));
  }
  ~Hmac() {
    EVP_MD_CTX_free(ctx_);  // wipes the digest state
    EVP_MD_free(md_);
  }
  Hmac(const Hmac&) = delete;
  Hmac& operator=(const Hmac&) = delete;

  void mac(std::span<const std::byte> key, std::initializer_list<std::span<const std::byte>> message,
           std::span<std::byte, kHmacBytes> out) {
    std::array<unsigned char, kBlockBytes> pad{};
    if (key.size() > kBlockBytes) {
      start();  // a key longer than a block is hashed first
      update(key);
      finish(std::span(pad).first<kHmacBytes>());
    } else if (!key.empty()) {
      std::memcpy(pad.data(), key.data(), key.size());
    }
    for (unsigned char& byte : pad) byte ^= kInnerPad;
    std::array<unsigned char, kHmacBytes> inner{};
    begin(pad);
    for (const std::span<const std::byte> part : message) update(part);
    finish(inner);
    for (unsigned char& byte : pad) byte ^= kInnerPad ^ kOuterPad;
    begin(pad);
    update(std::as_bytes(std::span(inner)));
    finish(std::span(reinterpret_cast<unsigned char*>(out.data()), kHmacBytes));
    OPENSSL_cleanse(pad.data(), pad.size());
    OPENSSL_cleanse(inner.data(), inner.size());
  }

  // The context's state after a digest is the digest's last chaining value (key material):
  // started again, it holds only SHA-256's constants.
  void forget() { start(); }

 private:
  void start() { ANNAL_ASSERT(EVP_DigestInit_ex2(ctx_, md_, nullptr) == 1); }
  void begin(std::span<const unsigned char, kBlockBytes> pad) {
    start();
    ANNAL_ASSERT(EVP_DigestUpdate(ctx_, pad.data(), pad.size()) == 1);
  }
  void update(std::span<const std::byte> part) {
    ANNAL_ASSERT(EVP_DigestUpdate(ctx_, part.data(), part.size()) == 1);
  }
  void finish(std::span<unsigned char> out) {
    unsigned int length = 0;
    ANNAL_ASSERT(EVP_DigestFinal_ex(ctx_, out.data(), &length) == 1 && length == kHmacBytes);
  }

  EVP_MD* const md_;
  EVP_MD_CTX* const ctx_;
};

Hmac& this_threads() {
  thread_local Hmac hmac;
  return hmac;
}

}  // namespace

void hmac_sha256(std::span<const std::byte> key, std::initializer_list<std::span<const std::byte>> message,
                 std::span<std::byte, kHmacBytes> out) {
  this_threads().mac(key, message, out);
}

void hmac_sha256_forget() { this_threads().forget(); }

}  // namespace annal::crypto
