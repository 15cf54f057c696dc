#include "annal/crypto/hkdf.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>

#include "annal/base/assert.h"
#include "annal/base/little_endian.h"
#include "hmac.h"

namespace annal::crypto {

void hkdf_sha256(std::span<const std::byte> ikm, std::span<const std::byte> salt, std::span<const std::byte> info,
                 std::span<std::byte> out) {
  ANNAL_ASSERT(!out.empty() && out.size() <= kHkdfOutputBytesMax);
  // RFC 5869 spelled out over one HMAC context per thread: OpenSSL's EVP_KDF("HKDF") builds a
  // context and fetches its digest and MAC on every call, three times the cost of the two HMACs
  // a 32-byte key takes, and the engine derives a key for each stream it meets after an open.
  static constexpr std::array<std::byte, kHmacBytes> kNoSalt{};  // HashLen zero bytes
  std::array<std::byte, kHmacBytes> prk;                         // extract
  hmac_sha256(salt.empty() ? std::span<const std::byte>(kNoSalt) : salt, {ikm}, prk);
  std::array<std::byte, kHmacBytes> block;  // expand: T(i) = HMAC(PRK, T(i-1) | info | i)
  for (std::size_t done = 0, i = 1; done < out.size(); done += kHmacBytes, ++i) {
    const std::byte counter{static_cast<unsigned char>(i)};
    const std::span<const std::byte> previous = std::span(block).first(i == 1 ? 0 : kHmacBytes);
    hmac_sha256(prk, {previous, info, std::span(&counter, 1)}, block);
    std::memcpy(out.data() + done, block.data(), std::min(kHmacBytes, out.size() - done));
  }
  OPENSSL_cleanse(prk.data(), prk.size());
  OPENSSL_cleanse(block.data(), block.size());
  hmac_sha256_forget();  // the context was last keyed with the PRK, which gives the output
}

Result<Key> derive_key(const Key& master, std::span<const std::byte> salt, std::span<const std::byte> info) {
  std::array<std::byte, kKeyBytes> bytes;
  hkdf_sha256(master.bytes(), salt, info, bytes);
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
