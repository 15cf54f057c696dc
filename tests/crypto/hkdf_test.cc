// HKDF-SHA256 against RFC 5869's test cases, and the stream keys' documented derivation.
#include "annal/crypto/hkdf.h"

#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include <array>
#include <memory>
#include <optional>
#include <random>
#include <string_view>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "hex.h"
#include "master_keys.h"

namespace annal::crypto {
namespace {

using testing::from_hex;
using testing::to_hex;

struct HkdfVector {
  const char* name;
  const char* ikm;
  const char* salt;
  const char* info;
  const char* okm;  // L is its length
};

// RFC 5869 appendix A, test cases 1 to 3 (SHA-256), as OpenSSL's
// test/recipes/30-test_evp_data/evpkdf_hkdf.txt carries them.
const HkdfVector kRfc5869[] = {
    {"TestCase1", "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "000102030405060708090a0b0c",
     "f0f1f2f3f4f5f6f7f8f9",
     "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"},
    {"TestCase2",
     "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f"
     "303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f",
     "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f808182838485868788898a8b8c8d8e8f"
     "909192939495969798999a9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
     "b0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
     "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
     "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09"
     "da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87"},
    {"TestCase3", "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "", "",
     "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"},
};

Key test_master() {
  std::array<std::byte, kKeyBytes> bytes;
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::byte>(i);
  return Key(bytes);
}

TEST(Hkdf, MatchesRfc5869TestCases) {
  for (const HkdfVector& v : kRfc5869) {
    SCOPED_TRACE(v.name);
    std::vector<std::byte> okm(std::strlen(v.okm) / 2);
    hkdf_sha256(from_hex(v.ikm), from_hex(v.salt), from_hex(v.info), okm);
    EXPECT_EQ(to_hex(okm), v.okm);
  }
}

// annal spells HKDF out over HMAC; OpenSSL's own (EVP_KDF "HKDF") must agree with it on every
// shape of input: keys and salts shorter and longer than SHA-256's 64-byte block (a longer HMAC key
// is hashed first), no salt, no info, outputs of one block, part of one and many, up to the limit.
TEST(Hkdf, AgreesWithOpenSslsHkdfOnEveryShapeOfInput) {
  EVP_KDF* const kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  ASSERT_NE(kdf, nullptr);
  std::mt19937_64 random(17);
  const auto bytes = [&](std::size_t n) {
    std::vector<std::byte> out(n);
    for (std::byte& b : out) b = static_cast<std::byte>(random());
    return out;
  };
  for (const std::size_t ikm_bytes : {1, 32, 64, 65, 200}) {
    for (const std::size_t salt_bytes : {0, 13, 32, 64, 80}) {
      for (const std::size_t info_bytes : {0, 31, 100}) {
        for (const std::size_t out_bytes : {std::size_t{1}, std::size_t{32}, std::size_t{42}, std::size_t{64},
                                            std::size_t{255}, kHkdfOutputBytesMax}) {
          SCOPED_TRACE(std::to_string(ikm_bytes) + " " + std::to_string(salt_bytes) + " " +
                       std::to_string(info_bytes) + " " + std::to_string(out_bytes));
          auto ikm = bytes(ikm_bytes), salt = bytes(salt_bytes), info = bytes(info_bytes);
          std::vector<std::byte> ours(out_bytes), theirs(out_bytes);
          hkdf_sha256(ikm, salt, info, ours);
          EVP_KDF_CTX* const ctx = EVP_KDF_CTX_new(kdf);
          char digest[] = "SHA256";
          std::vector<OSSL_PARAM> params{
              OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
              OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, ikm.data(), ikm.size())};
          if (!salt.empty()) params.push_back(OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, salt.data(), salt.size()));
          if (!info.empty()) params.push_back(OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info.data(), info.size()));
          params.push_back(OSSL_PARAM_construct_end());
          const int derived =
              EVP_KDF_derive(ctx, reinterpret_cast<unsigned char*>(theirs.data()), theirs.size(), params.data());
          EVP_KDF_CTX_free(ctx);
          ASSERT_EQ(derived, 1);
          EXPECT_EQ(to_hex(ours), to_hex(theirs));
        }
      }
    }
  }
  EVP_KDF_free(kdf);
}

// HKDF's output is a stream: a 32-byte key is the first 32 bytes of a longer output.
TEST(Hkdf, DeriveKeyIsTheFirst32BytesOfTheOutput) {
  const Key master = test_master();
  const auto salt = from_hex("000102030405060708090a0b0c"), info = from_hex("f0f1f2f3f4f5f6f7f8f9");
  std::vector<std::byte> okm(42);
  hkdf_sha256(master.bytes(), salt, info, okm);
  Result<Key> key = derive_key(master, salt, info);
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(to_hex(key.value().bytes()), to_hex(std::span(okm).first(kKeyBytes)));
}

// A seed as the key store would hold one; any 32 bytes other than test_master()'s.
std::array<std::byte, kStreamSeedBytes> test_seed(std::uint8_t first = 0x20) {
  std::array<std::byte, kStreamSeedBytes> bytes;
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::byte>(first + i);
  return bytes;
}

// The derivation is a format: sealed data depends on it for ever. These values were computed with
// an HKDF-SHA256 written over Python's hmac and hashlib (an implementation independent of OpenSSL,
// checked first against RFC 5869 test case 1) from the bytes hkdf.h documents: master 00..1f,
// seed (salt) 20..3f.
TEST(StreamKey, MatchesTheDocumentedDerivation) {
  const Key master = test_master();
  const auto seed = test_seed();
  Result<Key> first = stream_key(master, seed, 1, 1);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(to_hex(first.value().bytes()), "7b2effeee63894e343233ec7cad8331a63d53986ad41432986bd99a7c0d47877");
  Result<Key> second = stream_key(master, seed, 0x0123456789abcdef, 7);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(to_hex(second.value().bytes()), "93756ca9c06ef546676c657da82cfd97b27b5a07313b384c404d1b0a1baa3570");

  const auto info = from_hex(to_hex(std::as_bytes(std::span(kStreamKeyLabel, kStreamKeyLabelBytes))) +
                             "efcdab8967452301" "07000000");
  Result<Key> by_hand = derive_key(master, seed, info);
  ASSERT_TRUE(by_hand.ok());
  EXPECT_TRUE(by_hand.value() == second.value());
}

// The seed is what shredding destroys: the master alone must not give the key back, so the key
// must depend on the seed (an empty salt, or a seed left out, would give the same key for all).
TEST(StreamKey, DifferentSeedsGiveDifferentKeys) {
  const Key master = test_master();
  Result<Key> a = stream_key(master, test_seed(0x20), 1, 1);
  Result<Key> b = stream_key(master, test_seed(0x40), 1, 1);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_FALSE(a.value() == b.value());
  EXPECT_EQ(to_hex(b.value().bytes()), "8324e29faf511d3e9621c685f9136aa6a41a7830ed3efeb8b81a88c4a0d43125");
  Result<Key> unsalted = derive_key(master, {}, from_hex(to_hex(std::as_bytes(std::span(kStreamKeyLabel, kStreamKeyLabelBytes))) +
                                                         "0100000000000000" "01000000"));
  ASSERT_TRUE(unsalted.ok());
  EXPECT_FALSE(unsalted.value() == a.value());
}

TEST(StreamKey, SameInputsGiveTheSameKey) {
  Result<Key> a = stream_key(test_master(), test_seed(), 42, 3);
  Result<Key> b = stream_key(test_master(), test_seed(), 42, 3);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(a.value() == b.value());
}

TEST(StreamKey, EachStreamVersionMasterAndSeedGetsItsOwnKey) {
  const Key master = test_master();
  Result<Key> other_master = Key::random();
  Result<Key> other_seed = Key::random();
  ASSERT_TRUE(other_master.ok() && other_seed.ok());
  const auto seed = test_seed();
  std::set<std::string> seen;
  const auto add = [&](const Key& from, std::span<const std::byte, kStreamSeedBytes> salt, std::uint64_t stream,
                       std::uint32_t version) {
    Result<Key> key = stream_key(from, salt, stream, version);
    ASSERT_TRUE(key.ok());
    EXPECT_TRUE(seen.insert(to_hex(key.value().bytes())).second) << "stream " << stream << " version " << version;
  };
  for (std::uint64_t stream : {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{2}, std::uint64_t{1} << 32,
                               ~std::uint64_t{0}}) {
    for (std::uint32_t version : {1u, 2u, 0xFFFFFFFFu}) add(master, seed, stream, version);
  }
  add(other_master.value(), seed, 1, 1);
  add(master, other_seed.value().bytes(), 1, 1);
  EXPECT_EQ(seen.size(), 5u * 3u + 2u);
}

// The chain key and the head signing key are HKDF of a master (or signing) key under labels of
// their own, the version after: the same key file given as both never yields the same key, so a
// signature cannot be made with the chain key.
TEST(ChainKeys, EachIsItsDocumentedDerivationUnderItsOwnLabel) {
  auto keys = std::make_shared<annal::test::MasterKeys>();
  const Key master = keys->master_key(1).value();
  const auto by_hand = [&](std::string_view label) {
    std::vector<std::byte> info(label.size() + 4);
    std::memcpy(info.data(), label.data(), label.size());
    info[label.size()] = std::byte{1};  // version 1, little-endian
    return to_hex(derive_key(master, {}, info).value().bytes());
  };
  const std::optional<Key> chain = chain_keys(keys)(1);
  const std::optional<Key> signing = head_signing_keys(keys)(1);
  ASSERT_TRUE(chain && signing);
  EXPECT_EQ(to_hex(chain->bytes()), by_hand(kChainKeyLabel));
  EXPECT_EQ(to_hex(signing->bytes()), by_hand(kHeadSigningKeyLabel));
  EXPECT_NE(to_hex(chain->bytes()), to_hex(signing->bytes()));
  EXPECT_FALSE(head_signing_keys(keys)(99).has_value());  // a version the file lacks
}

}  // namespace
}  // namespace annal::crypto
