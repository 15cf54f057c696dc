// AES-256-GCM: the known answers of the GCM specification, then every way a sealed record can be
// altered, each of which must fail with corruption and leave nothing usable behind.
#include "annal/crypto/aead.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <algorithm>
#include <memory>
#include <random>
#include <vector>

#include "hex.h"

namespace annal::crypto {
namespace {

using testing::from_hex;
using testing::to_hex;

// McGrew & Viega, "The Galois/Counter Mode of Operation (GCM)", appendix B, the 256-bit test cases
// with 96-bit IVs, as OpenSSL's test/recipes/30-test_evp_data/evpciph_aes_common.txt carries them.
// Test cases 17 and 18 use 8- and 60-byte IVs, which Aes256Gcm does not take (kNonceBytes only).
struct GcmVector {
  const char* name;
  const char* key;
  const char* iv;
  const char* aad;
  const char* plaintext;
  const char* ciphertext;
  const char* tag;
};

constexpr const char* kKey0 = "0000000000000000000000000000000000000000000000000000000000000000";
constexpr const char* kKeyFeffe = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
constexpr const char* kPlain60 =
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525"
    "b16aedf5aa0de657ba637b39";
constexpr const char* kCipher60 =
    "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838"
    "c5f61e6393ba7a0abcc9f662";

const GcmVector kVectors[] = {
    {"TestCase13", kKey0, "000000000000000000000000", "", "", "", "530f8afbc74536b9a963b4f1c4cb738b"},
    {"TestCase14", kKey0, "000000000000000000000000", "", "00000000000000000000000000000000",
     "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919"},
    {"TestCase15", kKeyFeffe, "cafebabefacedbaddecaf888", "",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525"
     "b16aedf5aa0de657ba637b391aafd255",
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838"
     "c5f61e6393ba7a0abcc9f662898015ad",
     "b094dac5d93471bdec1a502270e3cc6c"},
    {"TestCase16", kKeyFeffe, "cafebabefacedbaddecaf888", "feedfacedeadbeeffeedfacedeadbeefabaddad2", kPlain60,
     kCipher60, "76fc6ece0f4e1768cddf8853bb2d551b"},
};

Key key_from_hex(const char* hex) {
  const std::vector<std::byte> bytes = from_hex(hex);
  return Key(std::span<const std::byte, kKeyBytes>(bytes.data(), kKeyBytes));
}

Nonce nonce_of(const std::vector<std::byte>& bytes) { return Nonce(bytes.data(), kNonceBytes); }

bool all_zero(std::span<const std::byte> bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](std::byte b) { return b == std::byte{0}; });
}

TEST(Aes256Gcm, SealMatchesTheGcmSpecificationVectors) {
  for (const GcmVector& v : kVectors) {
    SCOPED_TRACE(v.name);
    Aes256Gcm cipher = Aes256Gcm::make(key_from_hex(v.key));
    const auto iv = from_hex(v.iv), aad = from_hex(v.aad), plaintext = from_hex(v.plaintext);
    std::vector<std::byte> sealed(plaintext.size() + kTagBytes);
    cipher.seal(nonce_of(iv), aad, plaintext, sealed);
    EXPECT_EQ(to_hex(sealed), std::string(v.ciphertext) + v.tag);
  }
}

TEST(Aes256Gcm, OpenRecoversTheGcmSpecificationPlaintexts) {
  for (const GcmVector& v : kVectors) {
    SCOPED_TRACE(v.name);
    Aes256Gcm cipher = Aes256Gcm::make(key_from_hex(v.key));
    const auto iv = from_hex(v.iv), aad = from_hex(v.aad);
    const auto sealed = from_hex(std::string(v.ciphertext) + v.tag);
    std::vector<std::byte> plaintext(sealed.size() - kTagBytes);
    const Status opened = cipher.open(nonce_of(iv), aad, sealed, plaintext);
    ASSERT_TRUE(opened.ok()) << opened.to_string();
    EXPECT_EQ(to_hex(plaintext), v.plaintext);
  }
}

// A cipher keyed again (as a cache reuses the one it lets go of) seals and opens as one made with
// the new key, and opens nothing sealed under its old key.
TEST(Aes256Gcm, RekeyedItWorksAsOneMadeWithTheNewKey) {
  Aes256Gcm cipher = Aes256Gcm::make(key_from_hex(kKey0));
  for (const GcmVector& v : kVectors) {
    SCOPED_TRACE(v.name);
    cipher.rekey(key_from_hex(v.key));
    const auto iv = from_hex(v.iv), aad = from_hex(v.aad), plaintext = from_hex(v.plaintext);
    std::vector<std::byte> sealed(plaintext.size() + kTagBytes);
    cipher.seal(nonce_of(iv), aad, plaintext, sealed);
    EXPECT_EQ(to_hex(sealed), std::string(v.ciphertext) + v.tag);
    std::vector<std::byte> opened(plaintext.size());
    ASSERT_TRUE(cipher.open(nonce_of(iv), aad, sealed, opened).ok());
    EXPECT_EQ(opened, plaintext);
  }
  // Test case 16's sealed bytes, under test case 13's key now: refused.
  const GcmVector& last = kVectors[std::size(kVectors) - 1];
  cipher.rekey(key_from_hex(kKey0));
  const auto sealed = from_hex(std::string(last.ciphertext) + last.tag);
  std::vector<std::byte> out(sealed.size() - kTagBytes);
  EXPECT_EQ(cipher.open(nonce_of(from_hex(last.iv)), from_hex(last.aad), sealed, out).code(), ErrorCode::corruption);
}

// Test case 16: a 60-byte payload with 20 bytes of additional data, the shape of a journal record.
class Tampering : public ::testing::Test {
 protected:
  void SetUp() override { cipher_.seal(nonce_of(iv_), aad_, plaintext_, sealed_); }

  // Opens with the given inputs into a buffer of 0xAA bytes and expects corruption and zeros.
  void expect_refused(const std::vector<std::byte>& iv, const std::vector<std::byte>& aad,
                      const std::vector<std::byte>& sealed) {
    std::vector<std::byte> out(plaintext_.size(), std::byte{0xAA});
    const Status opened = cipher_.open(nonce_of(iv), aad, sealed, out);
    ASSERT_EQ(opened.code(), ErrorCode::corruption);
    EXPECT_NE(opened.message().find("authentication failed"), std::string::npos) << opened.message();
    EXPECT_TRUE(all_zero(out)) << "unauthenticated plaintext left in the output";
  }

  Key key_ = key_from_hex(kKeyFeffe);
  Aes256Gcm cipher_ = Aes256Gcm::make(key_);
  std::vector<std::byte> iv_ = from_hex("cafebabefacedbaddecaf888");
  std::vector<std::byte> aad_ = from_hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
  std::vector<std::byte> plaintext_ = from_hex(kPlain60);
  std::vector<std::byte> sealed_ = std::vector<std::byte>(plaintext_.size() + kTagBytes);
};

TEST_F(Tampering, AnyFlippedBitOfCiphertextOrTagFailsAndWipesTheOutput) {
  for (std::size_t bit = 0; bit < sealed_.size() * 8; ++bit) {
    SCOPED_TRACE("bit " + std::to_string(bit) + (bit >= plaintext_.size() * 8 ? " (tag)" : " (ciphertext)"));
    std::vector<std::byte> altered = sealed_;
    altered[bit / 8] ^= std::byte{1} << (bit % 8);
    expect_refused(iv_, aad_, altered);
  }
}

TEST_F(Tampering, AnyFlippedBitOfTheNonceFails) {
  for (std::size_t bit = 0; bit < kNonceBytes * 8; ++bit) {
    SCOPED_TRACE("bit " + std::to_string(bit));
    std::vector<std::byte> altered = iv_;
    altered[bit / 8] ^= std::byte{1} << (bit % 8);
    expect_refused(altered, aad_, sealed_);
  }
}

TEST_F(Tampering, AnyFlippedBitOfTheAdditionalDataFails) {
  for (std::size_t bit = 0; bit < aad_.size() * 8; ++bit) {
    SCOPED_TRACE("bit " + std::to_string(bit));
    std::vector<std::byte> altered = aad_;
    altered[bit / 8] ^= std::byte{1} << (bit % 8);
    expect_refused(iv_, altered, sealed_);
  }
}

TEST_F(Tampering, TruncatedOrMissingAdditionalDataFails) {
  expect_refused(iv_, std::vector<std::byte>(aad_.begin(), aad_.end() - 1), sealed_);
  expect_refused(iv_, {}, sealed_);
}

TEST_F(Tampering, AnotherKeyFails) {
  std::vector<std::byte> other = from_hex(kKeyFeffe);
  other[31] ^= std::byte{0x80};
  Aes256Gcm wrong = Aes256Gcm::make(Key(std::span<const std::byte, kKeyBytes>(other.data(), kKeyBytes)));
  std::vector<std::byte> out(plaintext_.size(), std::byte{0xAA});
  EXPECT_EQ(wrong.open(nonce_of(iv_), aad_, sealed_, out).code(), ErrorCode::corruption);
  EXPECT_TRUE(all_zero(out));
}

TEST_F(Tampering, AFailedOpenInPlaceWipesTheBuffer) {
  std::vector<std::byte> buffer = sealed_;
  buffer[0] ^= std::byte{1};
  const auto out = std::span<std::byte>(buffer).first(plaintext_.size());
  EXPECT_EQ(cipher_.open(nonce_of(iv_), aad_, buffer, out).code(), ErrorCode::corruption);
  EXPECT_TRUE(all_zero(out));
}

TEST(Aes256Gcm, SealAndOpenInPlace) {
  Aes256Gcm cipher = Aes256Gcm::make(key_from_hex(kKeyFeffe));
  const auto iv = from_hex("cafebabefacedbaddecaf888"), aad = from_hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
  std::vector<std::byte> buffer = from_hex(kPlain60);
  buffer.resize(buffer.size() + kTagBytes);
  const std::span<std::byte> body = std::span<std::byte>(buffer).first(buffer.size() - kTagBytes);
  cipher.seal(nonce_of(iv), aad, body, buffer);
  EXPECT_EQ(to_hex(buffer), std::string(kCipher60) + "76fc6ece0f4e1768cddf8853bb2d551b");
  ASSERT_TRUE(cipher.open(nonce_of(iv), aad, buffer, body).ok());
  EXPECT_EQ(to_hex(body), kPlain60);
}

// Many calls, interleaved, on one object must each give what a fresh object gives: nothing of one
// call's state leaks into the next.
TEST(Aes256Gcm, OneObjectServesManyInterleavedCalls) {
  const Key key = key_from_hex(kKeyFeffe);
  Aes256Gcm cipher = Aes256Gcm::make(key);
  std::vector<std::byte> nonce(kNonceBytes), plaintext(100), sealed, opened;
  for (std::size_t i = 0; i < 200; ++i) {
    nonce[0] = static_cast<std::byte>(i);
    plaintext.resize(i % 41);
    std::fill(plaintext.begin(), plaintext.end(), static_cast<std::byte>(i));
    sealed.assign(plaintext.size() + kTagBytes, std::byte{});
    cipher.seal(nonce_of(nonce), nonce, plaintext, sealed);
    std::vector<std::byte> fresh(sealed.size());
    Aes256Gcm::make(key).seal(nonce_of(nonce), nonce, plaintext, fresh);
    ASSERT_EQ(sealed, fresh) << "call " << i;
    opened.assign(plaintext.size(), std::byte{});
    ASSERT_TRUE(cipher.open(nonce_of(nonce), nonce, sealed, opened).ok()) << "call " << i;
    ASSERT_EQ(opened, plaintext) << "call " << i;
  }
}

// What the store wrote under OpenSSL's EVP API (annal's cipher before IPsec-MB) and what other
// tools make with it must read back, and the other way round: the same AES-256-GCM bytes for every
// length around the library's block and multi-block paths, with and without additional data.
TEST(Aes256Gcm, SealsAndOpensAsOpenSslsEvpDoes) {
  std::mt19937_64 random(17);
  std::vector<std::byte> key_bytes(kKeyBytes), nonce(kNonceBytes);
  for (auto& b : key_bytes) b = static_cast<std::byte>(random());
  const Key key(std::span<const std::byte, kKeyBytes>(key_bytes.data(), kKeyBytes));
  Aes256Gcm cipher = Aes256Gcm::make(key);
  const std::unique_ptr<EVP_CIPHER_CTX, void (*)(EVP_CIPHER_CTX*)> evp(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  const auto u8 = [](auto* p) { return reinterpret_cast<unsigned char*>(const_cast<std::byte*>(p)); };
  for (const std::size_t bytes : {0, 1, 15, 16, 17, 63, 64, 65, 127, 128, 129, 255, 256, 257, 511, 4096, 65'537}) {
    for (const std::size_t aad_bytes : {0, 1, 36, 100}) {
      for (auto& b : nonce) b = static_cast<std::byte>(random());
      std::vector<std::byte> plaintext(bytes), aad(aad_bytes);
      for (auto& b : plaintext) b = static_cast<std::byte>(random());
      for (auto& b : aad) b = static_cast<std::byte>(random());
      std::vector<std::byte> ours(bytes + kTagBytes), theirs(bytes + kTagBytes);
      cipher.seal(nonce_of(nonce), aad, plaintext, ours);
      int written = 0;
      ASSERT_EQ(EVP_EncryptInit_ex(evp.get(), EVP_aes_256_gcm(), nullptr, u8(key_bytes.data()), u8(nonce.data())), 1);
      ASSERT_EQ(EVP_EncryptUpdate(evp.get(), nullptr, &written, u8(aad.data()), static_cast<int>(aad_bytes)), 1);
      ASSERT_EQ(EVP_EncryptUpdate(evp.get(), u8(theirs.data()), &written, u8(plaintext.data()), static_cast<int>(bytes)), 1);
      ASSERT_EQ(EVP_EncryptFinal_ex(evp.get(), u8(theirs.data() + bytes), &written), 1);
      ASSERT_EQ(EVP_CIPHER_CTX_ctrl(evp.get(), EVP_CTRL_GCM_GET_TAG, kTagBytes, theirs.data() + bytes), 1);
      ASSERT_EQ(ours, theirs) << bytes << " bytes, " << aad_bytes << " of additional data";
      std::vector<std::byte> opened(bytes);
      ASSERT_TRUE(cipher.open(nonce_of(nonce), aad, theirs, opened).ok()) << bytes;
      ASSERT_EQ(opened, plaintext) << bytes;
    }
  }
}

TEST(Aes256Gcm, MovedObjectKeepsWorking) {
  Aes256Gcm first = Aes256Gcm::make(key_from_hex(kKey0));
  Aes256Gcm second = std::move(first);
  const std::vector<std::byte> iv(kNonceBytes);
  std::vector<std::byte> sealed(kTagBytes);
  second.seal(nonce_of(iv), {}, {}, sealed);
  EXPECT_EQ(to_hex(sealed), "530f8afbc74536b9a963b4f1c4cb738b");
}

using Aes256GcmDeathTest = ::testing::Test;

TEST_F(Aes256GcmDeathTest, AnOutputOfTheWrongSizeIsAProgrammerError) {
  Aes256Gcm cipher = Aes256Gcm::make(key_from_hex(kKey0));
  const std::vector<std::byte> iv(kNonceBytes), plaintext(10);
  std::vector<std::byte> out(plaintext.size() + kTagBytes - 1);
  EXPECT_DEATH(cipher.seal(nonce_of(iv), {}, plaintext, out), "invariant violated");
}

TEST_F(Aes256GcmDeathTest, PartlyOverlappingBuffersAreAProgrammerError) {
  Aes256Gcm cipher = Aes256Gcm::make(key_from_hex(kKey0));
  const std::vector<std::byte> iv(kNonceBytes);
  std::vector<std::byte> buffer(64);
  const auto in = std::span<const std::byte>(buffer).subspan(0, 32);
  const auto out = std::span<std::byte>(buffer).subspan(8, 32 + kTagBytes);
  EXPECT_DEATH(cipher.seal(nonce_of(iv), {}, in, out), "invariant violated");
}

}  // namespace
}  // namespace annal::crypto
