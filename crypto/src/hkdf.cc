#include "annal/crypto/hkdf.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include <array>
#include <cstring>
#include <memory>

#include "annal/base/little_endian.h"
#include "openssl_error.h"

namespace annal::crypto {
namespace {

struct KdfFree {
  void operator()(EVP_KDF_CTX* ctx) const noexcept { EVP_KDF_CTX_free(ctx); }
};

// OSSL_PARAM wants non-const pointers to buffers it only reads.
void* param_bytes(std::span<const std::byte> bytes) noexcept {
  return const_cast<std::byte*>(bytes.data());  // NOLINT: OpenSSL reads, never writes, these
}

}  // namespace

Status hkdf_sha256(std::span<const std::byte> ikm, std::span<const std::byte> salt,
                   std::span<const std::byte> info, std::span<std::byte> out) {
  ANNAL_ASSERT(!out.empty() && out.size() <= kHkdfOutputBytesMax);
  // Fetched once: a fetch looks the name up in OpenSSL's method store, under its lock, about a
  // microsecond, and an engine derives a key for each stream it meets after an open (kept for
  // the process; an EVP_KDF is not changed by use, so threads share it).
  static EVP_KDF* const kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  if (kdf == nullptr) return openssl_error("EVP_KDF_fetch(HKDF)");
  const std::unique_ptr<EVP_KDF_CTX, KdfFree> ctx(EVP_KDF_CTX_new(kdf));
  if (ctx == nullptr) return openssl_error("EVP_KDF_CTX_new(HKDF)");

  char digest[] = "SHA256";
  std::array<OSSL_PARAM, 5> params{};
  std::size_t n = 0;
  params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
  params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, param_bytes(ikm), ikm.size());
  // An empty salt or info is left out: OpenSSL then uses HashLen zero bytes of salt (RFC 5869's
  // default) and no info, the same as empty ones.
  if (!salt.empty()) params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, param_bytes(salt), salt.size());
  if (!info.empty()) params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, param_bytes(info), info.size());
  params[n] = OSSL_PARAM_construct_end();

  if (EVP_KDF_derive(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), out.size(), params.data()) != 1) {
    OPENSSL_cleanse(out.data(), out.size());
    return openssl_error("EVP_KDF_derive(HKDF-SHA256)");
  }
  return {};
}

Result<Key> derive_key(const Key& master, std::span<const std::byte> salt, std::span<const std::byte> info) {
  std::array<std::byte, kKeyBytes> bytes;
  if (Status derived = hkdf_sha256(master.bytes(), salt, info, bytes); !derived.ok()) return derived;
  Key key{std::span<const std::byte, kKeyBytes>(bytes)};
  OPENSSL_cleanse(bytes.data(), bytes.size());
  return key;
}

Result<Key> stream_key(const Key& master, std::span<const std::byte, kStreamSeedBytes> seed, std::uint64_t stream_id,
                       std::uint32_t key_version) {
  std::array<std::byte, kStreamKeyInfoBytes> info;
  std::memcpy(info.data(), kStreamKeyLabel, kStreamKeyLabelBytes);
  store_le(std::span<std::byte>(info), kStreamKeyLabelBytes, stream_id);
  store_le(std::span<std::byte>(info), kStreamKeyLabelBytes + 8, key_version);
  return derive_key(master, seed, info);
}

namespace {

// HKDF-SHA256(IKM = key, no salt, info = label | key_version u32 LE).
template <std::size_t kLabelSize>
Result<Key> labelled_key(const char (&label)[kLabelSize], const Key& key, std::uint32_t key_version) {
  constexpr std::size_t kLabelBytes = kLabelSize - 1;
  std::array<std::byte, kLabelBytes + 4> info;
  std::memcpy(info.data(), label, kLabelBytes);
  store_le(std::span<std::byte>(info), kLabelBytes, key_version);
  return derive_key(key, {}, info);
}

template <std::size_t kLabelSize>
std::function<std::optional<Key>(std::uint32_t)> labelled_keys(const char (&label)[kLabelSize],
                                                               std::shared_ptr<KeyProvider> keys) {
  return [&label, keys = std::move(keys)](std::uint32_t key_version) -> std::optional<Key> {
    auto from = keys->master_key(key_version);
    if (!from.ok()) return std::nullopt;
    auto key = labelled_key(label, from.value(), key_version);
    if (!key.ok()) return std::nullopt;
    return std::move(key).value();
  };
}

}  // namespace

Result<Key> chain_key(const Key& master, std::uint32_t key_version) {
  return labelled_key(kChainKeyLabel, master, key_version);
}

std::function<std::optional<Key>(std::uint32_t key_version)> chain_keys(std::shared_ptr<KeyProvider> keys) {
  return labelled_keys(kChainKeyLabel, std::move(keys));
}

std::function<std::optional<Key>(std::uint32_t key_version)> head_signing_keys(std::shared_ptr<KeyProvider> keys) {
  return labelled_keys(kHeadSigningKeyLabel, std::move(keys));
}

}  // namespace annal::crypto
