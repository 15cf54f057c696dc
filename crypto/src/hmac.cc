#include "hmac.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "annal/base/assert.h"

namespace annal::crypto {
namespace {

class Hmac {
 public:
  Hmac() {
    EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    ANNAL_ASSERT(mac != nullptr);
    ctx_ = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac);  // the context keeps its own reference
    char digest[] = "SHA256";
    const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                                 OSSL_PARAM_construct_end()};
    ANNAL_ASSERT(ctx_ != nullptr && EVP_MAC_CTX_set_params(ctx_, params) == 1);
  }
  ~Hmac() { EVP_MAC_CTX_free(ctx_); }
  Hmac(const Hmac&) = delete;
  Hmac& operator=(const Hmac&) = delete;

  void mac(std::span<const std::byte> key, std::initializer_list<std::span<const std::byte>> message,
           std::span<std::byte, kHmacBytes> out) {
    // Never empty: EVP_MAC_init reads a null key as "the key set before", not as no key.
    ANNAL_ASSERT(!key.empty());
    bool done = EVP_MAC_init(ctx_, reinterpret_cast<const unsigned char*>(key.data()), key.size(), nullptr) == 1;
    for (const std::span<const std::byte> part : message) {
      done = done && EVP_MAC_update(ctx_, reinterpret_cast<const unsigned char*>(part.data()), part.size()) == 1;
    }
    std::size_t length = 0;
    done = done && EVP_MAC_final(ctx_, reinterpret_cast<unsigned char*>(out.data()), &length, out.size()) == 1;
    ANNAL_ASSERT(done && length == kHmacBytes);
  }

  void forget() {
    static constexpr unsigned char kNothing[kHmacBytes] = {};
    ANNAL_ASSERT(EVP_MAC_init(ctx_, kNothing, sizeof kNothing, nullptr) == 1);
  }

 private:
  EVP_MAC_CTX* ctx_ = nullptr;
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
