// Encryption at rest for snapshot files (state_cipher.h): a store with a cipher writes states
// sealed (format version 2) and reads them back plain, and no byte of a state is left on disk in
// clear; without the key, or with another, a load fails naming the file; a sealed state moved
// into another projection's or sequence's file fails to open even with its checksums redone; a
// state in clear where the store seals everything is refused.
#include <gtest/gtest.h>
#include <openssl/rand.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <string>

#include "annal/base/little_endian.h"
#include "annal/crypto/aead.h"
#include "annal/crypto/key.h"
#include "annal/journal/crc32c.h"
#include "annal/snapshots/snapshot_store.h"
#include "file_bytes.h"
#include "temp_directory.h"

namespace annal::snapshots {
namespace {

// AES-256-GCM under one key, a random nonce per state: nonce (12 B) || ciphertext || tag.
class TestCipher final : public StateCipher {
 public:
  TestCipher(const crypto::Key& key, std::uint64_t sealed_from, std::uint64_t state_bytes_max = crypto::kPlaintextBytesMax)
      : aead_(crypto::Aes256Gcm::make(key)), sealed_from_(sealed_from), state_bytes_max_(state_bytes_max) {}
  std::size_t overhead() const noexcept override { return crypto::kNonceBytes + crypto::kTagBytes; }
  std::uint64_t state_bytes_max() const noexcept override { return state_bytes_max_; }
  Status seal(std::span<const std::byte> associated, std::span<const std::byte> state, std::span<std::byte> out) override {
    std::lock_guard lock(mutex_);  // one context: seal and open from any thread
    if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), crypto::kNonceBytes) != 1) {
      return Status(ErrorCode::failed, "no nonce");
    }
    aead_.seal(std::span<const std::byte>(out).first<crypto::kNonceBytes>(), associated, state,
               out.subspan(crypto::kNonceBytes));
    return {};
  }
  Status open(std::span<const std::byte> associated, std::span<const std::byte> sealed, std::span<std::byte> out) override {
    std::lock_guard lock(mutex_);
    return aead_.open(sealed.first<crypto::kNonceBytes>(), associated, sealed.subspan(crypto::kNonceBytes), out);
  }
  Status check_plain(std::uint64_t sequence) override {
    if (sequence < sealed_from_) return {};
    return Status(ErrorCode::corruption, "sealed from sequence " + std::to_string(sealed_from_));
  }

 private:
  std::mutex mutex_;
  crypto::Aes256Gcm aead_;
  std::uint64_t sealed_from_;
  std::uint64_t state_bytes_max_;
};

constexpr std::string_view kMarker = "MARKER-9d2e-STATE";

std::vector<std::byte> marked_state(std::uint64_t sequence) {
  const std::string text = std::string(kMarker) + " as of " + std::to_string(sequence) + std::string(200, '.');
  const auto bytes = std::as_bytes(std::span(text));
  return {bytes.begin(), bytes.end()};
}

SnapshotStore store_in(const std::string& directory, std::shared_ptr<StateCipher> cipher) {
  return SnapshotStore(directory, journal::make_posix_backend(), 3, std::move(cipher));
}

TEST(StateCipher, SealedStatesReadBackPlainAndLeaveNoPlaintextOnDisk) {
  const auto key = crypto::Key::random().value();
  annal::test::TempDirectory sealed_dir;
  annal::test::TempDirectory plain_dir;
  for (const bool sealed : {true, false}) {
    const std::string dir = sealed ? sealed_dir.path() : plain_dir.path();
    SnapshotStore store = store_in(dir, sealed ? std::make_shared<TestCipher>(key, 1) : nullptr);
    for (const std::uint64_t sequence : {10u, 20u}) ASSERT_TRUE(store.write("orders", 3, sequence, marked_state(sequence)).ok());
    const auto newest = store.newest("orders", 3, 100);
    ASSERT_TRUE(newest.ok() && newest.value()) << newest.status().to_string();
    EXPECT_EQ(newest.value()->state, marked_state(20));
    EXPECT_EQ(newest.value()->header.sealed, sealed);
  }
  EXPECT_FALSE(annal::test::any_file_contains(sealed_dir.path(), kMarker));
  EXPECT_TRUE(annal::test::any_file_contains(plain_dir.path(), kMarker));  // the search finds it when it is there
}

TEST(StateCipher, WithoutTheKeyOrWithAnotherALoadFailsNamingTheFile) {
  annal::test::TempDirectory dir;
  ASSERT_TRUE(store_in(dir.path(), std::make_shared<TestCipher>(crypto::Key::random().value(), 1))
                  .write("orders", 3, 10, marked_state(10))
                  .ok());
  std::vector<SnapshotStore::Skipped> skipped;
  const auto keyless = store_in(dir.path(), nullptr).newest("orders", 3, 100, &skipped);
  ASSERT_TRUE(keyless.ok());
  EXPECT_FALSE(keyless.value());  // passed over, with the reason
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_EQ(skipped[0].why.code(), ErrorCode::invalid_argument);
  EXPECT_NE(skipped[0].why.message().find("snapshot-orders-00000000000000000010.snap: its state is encrypted"),
            std::string::npos)
      << skipped[0].why.message();
  skipped.clear();
  const auto other = store_in(dir.path(), std::make_shared<TestCipher>(crypto::Key::random().value(), 1))
                         .newest("orders", 3, 100, &skipped);
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other.value());
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_EQ(skipped[0].why.code(), ErrorCode::corruption);
  EXPECT_NE(skipped[0].why.message().find("cannot open its sealed state"), std::string::npos) << skipped[0].why.message();
}

TEST(StateCipher, AStateMovedIntoAnotherSnapshotsFileFailsToOpenEvenWithItsChecksumsRedone) {
  const auto key = crypto::Key::random().value();
  annal::test::TempDirectory dir;
  SnapshotStore store = store_in(dir.path(), std::make_shared<TestCipher>(key, 1));
  ASSERT_TRUE(store.write("orders", 3, 10, marked_state(10)).ok());
  ASSERT_TRUE(store.write("orders", 3, 20, marked_state(20)).ok());  // the same length as 10's
  // Snapshot 20's file with snapshot 10's sealed state in it, the state checksum redone: both
  // checksums hold, and the header is 20's.
  const std::string ten = dir.path() + "/" + snapshot_file_name("orders", 10);
  const std::string twenty = dir.path() + "/" + snapshot_file_name("orders", 20);
  const std::size_t header = snapshot_header_bytes("orders");
  const std::vector<std::byte> from = annal::test::read_file_bytes(ten);
  std::vector<std::byte> into = annal::test::read_file_bytes(twenty);
  ASSERT_EQ(from.size(), into.size());
  std::copy(from.begin() + static_cast<std::ptrdiff_t>(header), from.end(), into.begin() + static_cast<std::ptrdiff_t>(header));
  store_le<std::uint32_t>(into, 40, journal::crc32c_extend(0, std::span<const std::byte>(into).subspan(header)));
  const std::size_t covered = header - 4;
  store_le<std::uint32_t>(into, covered, journal::crc32c_extend(0, std::span<const std::byte>(into).first(covered)));
  annal::test::write_file_bytes(twenty, into);
  std::vector<SnapshotStore::Skipped> skipped;
  const auto newest = store.newest("orders", 3, 100, &skipped);
  ASSERT_TRUE(newest.ok() && newest.value());
  EXPECT_EQ(newest.value()->header.sequence, 10u);  // 20 passed over, 10 used
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_EQ(skipped[0].why.code(), ErrorCode::corruption);
  EXPECT_NE(skipped[0].why.message().find("00000000000000000020.snap: cannot open its sealed state"), std::string::npos)
      << skipped[0].why.message();
}

TEST(StateCipher, AStateMovedToAnotherSchemaFailsToOpen) {
  const auto key = crypto::Key::random().value();
  annal::test::TempDirectory dir;
  SnapshotStore store = store_in(dir.path(), std::make_shared<TestCipher>(key, 1));
  ASSERT_TRUE(store.write("orders", 3, 10, marked_state(10)).ok());
  // The header relabelled schema 4, its checksum redone: only the seal can tell.
  const std::string path = dir.path() + "/" + snapshot_file_name("orders", 10);
  std::vector<std::byte> bytes = annal::test::read_file_bytes(path);
  store_le<std::uint32_t>(bytes, 12, 4);
  const std::size_t covered = snapshot_header_bytes("orders") - 4;
  store_le<std::uint32_t>(bytes, covered, journal::crc32c_extend(0, std::span<const std::byte>(bytes).first(covered)));
  annal::test::write_file_bytes(path, bytes);
  std::vector<SnapshotStore::Skipped> skipped;
  const auto newest = store.newest("orders", 4, 100, &skipped);
  ASSERT_TRUE(newest.ok());
  EXPECT_FALSE(newest.value());
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_NE(skipped[0].why.message().find("cannot open its sealed state"), std::string::npos) << skipped[0].why.message();
}

TEST(StateCipher, AStateLargerThanTheCipherSealsIsRefusedAtWriteAndAHeaderClaimingOneIsDamage) {
  const auto key = crypto::Key::random().value();
  annal::test::TempDirectory dir;
  SnapshotStore small = store_in(dir.path(), std::make_shared<TestCipher>(key, 1, 100));
  EXPECT_EQ(small.write("orders", 3, 10, marked_state(10)).code(), ErrorCode::invalid_argument);
  ASSERT_TRUE(store_in(dir.path(), std::make_shared<TestCipher>(key, 1)).write("orders", 3, 10, marked_state(10)).ok());
  std::vector<SnapshotStore::Skipped> skipped;
  const auto newest = small.newest("orders", 3, 100, &skipped);
  ASSERT_TRUE(newest.ok());
  EXPECT_FALSE(newest.value());
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_EQ(skipped[0].why.code(), ErrorCode::corruption) << skipped[0].why.message();
}

TEST(StateCipher, AStateInClearIsUsedOnlyFromBeforeSealingBegan) {
  const auto key = crypto::Key::random().value();
  annal::test::TempDirectory dir;
  SnapshotStore plain = store_in(dir.path(), nullptr);
  ASSERT_TRUE(plain.write("orders", 3, 10, marked_state(10)).ok());  // before sealing began at 15
  ASSERT_TRUE(plain.write("orders", 3, 20, marked_state(20)).ok());  // written in the key's place
  std::vector<SnapshotStore::Skipped> skipped;
  const auto newest = store_in(dir.path(), std::make_shared<TestCipher>(key, 15)).newest("orders", 3, 100, &skipped);
  ASSERT_TRUE(newest.ok() && newest.value());
  EXPECT_EQ(newest.value()->header.sequence, 10u);
  EXPECT_EQ(newest.value()->state, marked_state(10));
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_NE(skipped[0].why.message().find("a state in clear where the store seals everything"), std::string::npos)
      << skipped[0].why.message();
  // Retention reads headers only, and judges them the same way.
  const auto oldest = store_in(dir.path(), std::make_shared<TestCipher>(key, 5)).oldest("orders", 3);
  ASSERT_TRUE(oldest.ok());
  EXPECT_FALSE(oldest.value());
}

}  // namespace
}  // namespace annal::snapshots
