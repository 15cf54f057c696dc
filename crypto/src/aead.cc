#include "annal/crypto/aead.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <cstring>
#include <functional>
#include <string>
#include <utility>

#include "openssl_error.h"

namespace annal::crypto {
namespace {

static_assert(kPlaintextBytesMax + kTagBytes <= static_cast<std::size_t>(INT32_MAX), "EVP lengths are int");
static_assert(kAadBytesMax <= static_cast<std::size_t>(INT32_MAX));

unsigned char* u8(std::byte* p) noexcept { return reinterpret_cast<unsigned char*>(p); }
const unsigned char* u8(const std::byte* p) noexcept { return reinterpret_cast<const unsigned char*>(p); }

// In place (same start) is supported by OpenSSL's GCM; a partial overlap would read bytes already
// overwritten.
bool same_or_disjoint(std::span<const std::byte> in, std::span<const std::byte> out) noexcept {
  if (in.empty() || out.empty() || in.data() == out.data()) return true;
  const std::less<const std::byte*> before;
  return !before(in.data(), out.data() + out.size()) || !before(out.data(), in.data() + in.size());
}

EVP_CIPHER_CTX* keyed_context(const Key& key, int encrypt) {
  // Fetched once: EVP_aes_256_gcm() makes OpenSSL 3 fetch the cipher by name from its method store
  // at every init, under its lock, and an engine keys a context for each stream it meets (kept
  // for the process; an EVP_CIPHER is not changed by use, so threads share it).
  static EVP_CIPHER* const aes_256_gcm = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  if (aes_256_gcm == nullptr) return nullptr;
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  if (ctx == nullptr) return nullptr;
  // The IV comes with each call; the default IV length for GCM is 12 bytes, kNonceBytes.
  if (EVP_CipherInit_ex(ctx, aes_256_gcm, nullptr, u8(key.bytes().data()), nullptr, encrypt) != 1) {
    EVP_CIPHER_CTX_free(ctx);
    return nullptr;
  }
  return ctx;
}

// Re-initialises with the nonce only (the key schedule stays) and feeds the additional data.
bool start(EVP_CIPHER_CTX* ctx, Nonce nonce, std::span<const std::byte> aad) {
  if (EVP_CipherInit_ex(ctx, nullptr, nullptr, nullptr, u8(nonce.data()), -1) != 1) return false;
  int written = 0;
  return aad.empty() ||
         EVP_CipherUpdate(ctx, nullptr, &written, u8(aad.data()), static_cast<int>(aad.size())) == 1;
}

// The tag moves through OSSL_PARAMs directly: EVP_CIPHER_CTX_ctrl would build the same array and
// look it up again, a measurable part of sealing a small record (bench/crypto_bench.cc).
bool get_tag(EVP_CIPHER_CTX* ctx, std::span<std::byte, kTagBytes> tag) {
  OSSL_PARAM params[] = {OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag.data(), kTagBytes),
                         OSSL_PARAM_construct_end()};
  return EVP_CIPHER_CTX_get_params(ctx, params) == 1;
}

bool set_tag(EVP_CIPHER_CTX* ctx, std::span<const std::byte, kTagBytes> tag) {
  // A copy, because OSSL_PARAM takes the expected tag through a non-const pointer.
  std::byte copy[kTagBytes];
  std::memcpy(copy, tag.data(), kTagBytes);
  OSSL_PARAM params[] = {OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, copy, kTagBytes),
                         OSSL_PARAM_construct_end()};
  return EVP_CIPHER_CTX_set_params(ctx, params) == 1;
}

// Runs the cipher over `in` into `out` (same size); GCM is a stream mode, so nothing is held back.
bool update(EVP_CIPHER_CTX* ctx, std::span<const std::byte> in, std::span<std::byte> out) {
  if (in.empty()) return true;
  int written = 0;
  const int ok = EVP_CipherUpdate(ctx, u8(out.data()), &written, u8(in.data()), static_cast<int>(in.size()));
  return ok == 1 && static_cast<std::size_t>(written) == in.size();
}

}  // namespace

Result<Aes256Gcm> Aes256Gcm::make(const Key& key) {
  EVP_CIPHER_CTX* seal = keyed_context(key, 1);
  if (seal == nullptr) return openssl_error("AES-256-GCM encryption context");
  EVP_CIPHER_CTX* open = keyed_context(key, 0);
  if (open == nullptr) {
    EVP_CIPHER_CTX_free(seal);
    return openssl_error("AES-256-GCM decryption context");
  }
  return Aes256Gcm(seal, open);
}

Aes256Gcm::~Aes256Gcm() {
  EVP_CIPHER_CTX_free(seal_);  // both accept null
  EVP_CIPHER_CTX_free(open_);
}

Aes256Gcm::Aes256Gcm(Aes256Gcm&& other) noexcept
    : seal_(std::exchange(other.seal_, nullptr)), open_(std::exchange(other.open_, nullptr)) {}

Aes256Gcm& Aes256Gcm::operator=(Aes256Gcm&& other) noexcept {
  if (this != &other) {
    EVP_CIPHER_CTX_free(seal_);
    EVP_CIPHER_CTX_free(open_);
    seal_ = std::exchange(other.seal_, nullptr);
    open_ = std::exchange(other.open_, nullptr);
  }
  return *this;
}

Status Aes256Gcm::rekey(const Key& key) {
  ANNAL_ASSERT(seal_ != nullptr && open_ != nullptr);  // not moved from
  // The cipher stays; only the key schedule (and GCM's hash key) is computed again.
  if (EVP_CipherInit_ex(seal_, nullptr, nullptr, u8(key.bytes().data()), nullptr, -1) != 1 ||
      EVP_CipherInit_ex(open_, nullptr, nullptr, u8(key.bytes().data()), nullptr, -1) != 1) {
    return openssl_error("AES-256-GCM rekey");
  }
  return {};
}

Status Aes256Gcm::seal(Nonce nonce, std::span<const std::byte> aad, std::span<const std::byte> plaintext,
                       std::span<std::byte> out) {
  ANNAL_ASSERT(seal_ != nullptr);  // not moved from
  ANNAL_ASSERT(plaintext.size() <= kPlaintextBytesMax && aad.size() <= kAadBytesMax);
  ANNAL_ASSERT(out.size() == plaintext.size() + kTagBytes);
  ANNAL_ASSERT(same_or_disjoint(plaintext, out) && same_or_disjoint(aad, out));

  const std::span<std::byte> ciphertext = out.first(plaintext.size());
  int final_bytes = 0;
  const bool sealed = start(seal_, nonce, aad) && update(seal_, plaintext, ciphertext) &&
                      EVP_EncryptFinal_ex(seal_, u8(ciphertext.data() + ciphertext.size()), &final_bytes) == 1 &&
                      final_bytes == 0 &&
                      get_tag(seal_, out.last<kTagBytes>());
  if (!sealed) {
    OPENSSL_cleanse(out.data(), out.size());
    return openssl_error("AES-256-GCM seal");
  }
  return {};
}

Status Aes256Gcm::open(Nonce nonce, std::span<const std::byte> aad, std::span<const std::byte> sealed,
                       std::span<std::byte> out) {
  ANNAL_ASSERT(open_ != nullptr);  // not moved from
  ANNAL_ASSERT(sealed.size() >= kTagBytes && sealed.size() - kTagBytes <= kPlaintextBytesMax);
  ANNAL_ASSERT(aad.size() <= kAadBytesMax && out.size() == sealed.size() - kTagBytes);
  ANNAL_ASSERT(same_or_disjoint(sealed, out) && same_or_disjoint(aad, out));

  int final_bytes = 0;
  if (!start(open_, nonce, aad) || !update(open_, sealed.first(out.size()), out) ||
      !set_tag(open_, sealed.last<kTagBytes>())) {
    OPENSSL_cleanse(out.data(), out.size());
    return openssl_error("AES-256-GCM open");
  }
  // The tag is compared here, in constant time, after all the data went through.
  if (EVP_DecryptFinal_ex(open_, u8(out.data() + out.size()), &final_bytes) != 1) {
    OPENSSL_cleanse(out.data(), out.size());
    ERR_clear_error();  // a mismatch may queue an error; it is reported here, not later
    return Status(ErrorCode::corruption,
                  "AES-256-GCM authentication failed: wrong key, nonce or additional data, or the sealed "
                  "bytes (" + std::to_string(sealed.size()) + ") were altered");
  }
  ANNAL_ASSERT(final_bytes == 0);
  return {};
}

}  // namespace annal::crypto
