#include "annal/snapshots/snapshot_store.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>

#include "fault_backend.h"

namespace annal::snapshots {
namespace {

using journal::FaultBackend;

constexpr const char* kDir = "/store";

std::vector<std::byte> state_for(std::uint64_t sequence, std::size_t bytes = 300) {
  std::vector<std::byte> out(bytes);
  for (std::size_t i = 0; i < bytes; ++i) out[i] = static_cast<std::byte>((sequence * 13 + i) & 0xFF);
  return out;
}

// Overwrites `bytes` bytes at `offset` of a file on the fault backend.
void damage(FaultBackend& io, const std::string& path, std::uint64_t offset, std::size_t bytes = 1) {
  const auto file = io.open(path, journal::OpenMode::read_write);
  ASSERT_TRUE(file.ok());
  std::vector<std::byte> junk(bytes, std::byte{0xEE});
  ASSERT_TRUE(io.write(file.value(), offset, junk).ok());
  ASSERT_TRUE(io.close(file.value()).ok());
}

TEST(SnapshotFormat, FileNamesSortBySequenceAndParseOnlyForTheirProjection) {
  EXPECT_EQ(snapshot_file_name("orders", 1234), "snapshot-orders-00000000000000001234.snap");
  EXPECT_EQ(parse_snapshot_file_name("snapshot-orders-00000000000000001234.snap", "orders"), 1234u);
  EXPECT_FALSE(parse_snapshot_file_name("snapshot-orders-00000000000000001234.snap", "order"));
  EXPECT_FALSE(parse_snapshot_file_name("snapshot-orders-00000000000000001234.snap.tmp", "orders"));
  EXPECT_FALSE(parse_snapshot_file_name("00000000000000000001.log", "orders"));
  EXPECT_FALSE(parse_snapshot_file_name("snapshot-orders-0000000000000000123x.snap", "orders"));
  EXPECT_LT(snapshot_file_name("a", 99), snapshot_file_name("a", 100));
  EXPECT_TRUE(valid_projection_name("orders_v2.eu"));
  EXPECT_FALSE(valid_projection_name(""));
  EXPECT_FALSE(valid_projection_name("../etc"));
  EXPECT_FALSE(valid_projection_name(std::string(65, 'a')));
}

TEST(SnapshotStore, WritesAndReadsBackTheNewestAtOrBelowASequence) {
  auto io = std::make_shared<FaultBackend>(1);
  SnapshotStore store(kDir, io, 5);
  for (const std::uint64_t sequence : {100u, 200u, 300u}) {
    ASSERT_TRUE(store.write("orders", 1, sequence, state_for(sequence)).ok());
  }
  ASSERT_TRUE(store.write("payments", 1, 250, state_for(7)).ok());
  const auto newest = store.newest("orders", 1, UINT64_MAX);
  ASSERT_TRUE(newest.ok() && newest.value());
  EXPECT_EQ(newest.value()->header.sequence, 300u);
  EXPECT_EQ(newest.value()->state, state_for(300));
  // Point in time, and "at or below the durable sequence" at recovery.
  const auto at_250 = store.newest("orders", 1, 250);
  ASSERT_TRUE(at_250.ok() && at_250.value());
  EXPECT_EQ(at_250.value()->header.sequence, 200u);
  EXPECT_FALSE(store.newest("orders", 1, 99).value());
  EXPECT_EQ(store.newest("payments", 1, UINT64_MAX).value()->state, state_for(7));
  // An empty state is a state.
  ASSERT_TRUE(store.write("empty", 1, 5, {}).ok());
  EXPECT_TRUE(store.newest("empty", 1, 5).value()->state.empty());
}

TEST(SnapshotStore, KeepsTheNewestKAndNothingOfOtherProjections) {
  auto io = std::make_shared<FaultBackend>(2);
  SnapshotStore store(kDir, io, 2);
  ASSERT_TRUE(store.write("other", 1, 1, state_for(1)).ok());
  for (std::uint64_t sequence = 10; sequence <= 50; sequence += 10) {
    ASSERT_TRUE(store.write("orders", 1, sequence, state_for(sequence)).ok());
  }
  EXPECT_EQ(store.sequences("orders").value(), (std::vector<std::uint64_t>{40, 50}));
  EXPECT_EQ(store.sequences("other").value(), (std::vector<std::uint64_t>{1}));
}

// A projection rebuilt under a new schema (or past damaged snapshots) replays from the start, so
// its first snapshots are numbered below the old ones it passed over. They must not be pruned as
// the oldest: they were, as soon as written, and each restart during the rebuild began at 0 again.
// The old files stay until the rebuild passes them; then the newest `keep` are kept as ever.
TEST(SnapshotStore, ARebuildsSnapshotsBelowOnesItPassedOverAreKept) {
  auto io = std::make_shared<FaultBackend>(5);
  SnapshotStore store(kDir, io, 2);
  for (const std::uint64_t sequence : {100u, 200u}) ASSERT_TRUE(store.write("orders", 1, sequence, state_for(sequence)).ok());
  ASSERT_TRUE(store.write("orders", 2, 50, state_for(50)).ok());
  const auto rebuilt = store.newest("orders", 2, UINT64_MAX);
  ASSERT_TRUE(rebuilt.ok() && rebuilt.value()) << "schema 2's snapshot was pruned as soon as written";
  EXPECT_EQ(rebuilt.value()->header.sequence, 50u);
  ASSERT_TRUE(store.write("orders", 2, 150, state_for(150)).ok());
  EXPECT_EQ(store.sequences("orders").value(), (std::vector<std::uint64_t>{100, 150, 200}));  // 2 at or below 150
  ASSERT_TRUE(store.write("orders", 2, 250, state_for(250)).ok());
  ASSERT_TRUE(store.write("orders", 2, 300, state_for(300)).ok());
  EXPECT_EQ(store.sequences("orders").value(), (std::vector<std::uint64_t>{250, 300}));
}

TEST(SnapshotStore, DamagedSnapshotsArePassedOverWithTheReason) {
  auto io = std::make_shared<FaultBackend>(3);
  SnapshotStore store(kDir, io, 10);
  for (const std::uint64_t sequence : {10u, 20u, 30u, 40u, 50u}) {
    ASSERT_TRUE(store.write("orders", 1, sequence, state_for(sequence)).ok());
  }
  const auto path = [](std::uint64_t s) { return std::string(kDir) + "/" + snapshot_file_name("orders", s); };
  damage(*io, path(50), 60);                               // inside the state
  damage(*io, path(40), 20);                               // inside the header's fields
  ASSERT_TRUE(io->remove(path(30)).ok());
  {
    const auto file = io->open(path(20), journal::OpenMode::read_write);  // cut short
    ASSERT_TRUE(file.ok());
    ASSERT_TRUE(io->truncate(file.value(), 100).ok());
    ASSERT_TRUE(io->close(file.value()).ok());
  }
  std::vector<SnapshotStore::Skipped> skipped;
  const auto newest = store.newest("orders", 1, UINT64_MAX, &skipped);
  ASSERT_TRUE(newest.ok() && newest.value());
  EXPECT_EQ(newest.value()->header.sequence, 10u);
  ASSERT_EQ(skipped.size(), 3u);
  EXPECT_NE(skipped[0].why.message().find("state checksum"), std::string::npos) << skipped[0].why.message();
  EXPECT_NE(skipped[1].why.message().find("header checksum"), std::string::npos) << skipped[1].why.message();
  EXPECT_NE(skipped[2].why.message().find("promises"), std::string::npos) << skipped[2].why.message();
  for (const auto& s : skipped) EXPECT_EQ(s.why.code(), ErrorCode::corruption);
}

TEST(SnapshotStore, AnotherSchemaIsNotRestored) {
  auto io = std::make_shared<FaultBackend>(4);
  SnapshotStore store(kDir, io, 10);
  ASSERT_TRUE(store.write("orders", 1, 10, state_for(10)).ok());
  ASSERT_TRUE(store.write("orders", 2, 20, state_for(20)).ok());
  std::vector<SnapshotStore::Skipped> skipped;
  EXPECT_EQ(store.newest("orders", 2, UINT64_MAX, &skipped).value()->header.sequence, 20u);
  EXPECT_TRUE(skipped.empty());
  const auto v3 = store.newest("orders", 3, UINT64_MAX, &skipped);
  ASSERT_TRUE(v3.ok());
  EXPECT_FALSE(v3.value());  // rebuild from the journal
  EXPECT_EQ(skipped.size(), 2u);
  EXPECT_NE(skipped[0].why.message().find("schema 2"), std::string::npos);
}

TEST(SnapshotStore, AFileRenamedToAnotherSequenceIsRefused) {
  auto io = std::make_shared<FaultBackend>(5);
  SnapshotStore store(kDir, io, 10);
  ASSERT_TRUE(store.write("orders", 1, 10, state_for(10)).ok());
  ASSERT_TRUE(io->rename(std::string(kDir) + "/" + snapshot_file_name("orders", 10),
                         std::string(kDir) + "/" + snapshot_file_name("orders", 99)).ok());
  std::vector<SnapshotStore::Skipped> skipped;
  EXPECT_FALSE(store.newest("orders", 1, UINT64_MAX, &skipped).value());
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_NE(skipped[0].why.message().find("header says"), std::string::npos);
}

// A power cut before each step of a write (create, write, sync, rename, directory sync, prune):
// afterwards the newest snapshot is the new one whole or the previous one whole, never a torn one,
// and the next write succeeds over the leftover .tmp file.
TEST(SnapshotStore, APowerCutDuringAWriteLeavesTheOldSnapshotOrTheNewOneWhole) {
  std::size_t saw_new = 0, saw_old = 0;
  for (std::uint64_t cut = 1; cut <= 12; ++cut) {
    SCOPED_TRACE("cut before data operation " + std::to_string(cut));
    auto io = std::make_shared<FaultBackend>(cut);
    {
      SnapshotStore store(kDir, io, 2);
      ASSERT_TRUE(store.write("orders", 1, 100, state_for(100, 5000)).ok());
      io->crash_before(cut);
      (void)store.write("orders", 1, 200, state_for(200, 5000));
      io->crash();
    }
    io->revive();
    SnapshotStore store(kDir, io, 2);
    std::vector<SnapshotStore::Skipped> skipped;
    const auto newest = store.newest("orders", 1, UINT64_MAX, &skipped);
    ASSERT_TRUE(newest.ok() && newest.value()) << "both snapshots lost";
    const std::uint64_t sequence = newest.value()->header.sequence;
    ASSERT_TRUE(sequence == 100 || sequence == 200);
    EXPECT_EQ(newest.value()->state, state_for(sequence, 5000));
    (sequence == 200 ? saw_new : saw_old) += 1;
    const Status next = store.write("orders", 1, 300, state_for(300));
    ASSERT_TRUE(next.ok()) << next.to_string();
    EXPECT_EQ(store.newest("orders", 1, UINT64_MAX).value()->header.sequence, 300u);
  }
  EXPECT_GT(saw_old, 0u);
  EXPECT_GT(saw_new, 0u);
}

TEST(SnapshotStore, AFailedWriteLeavesTheSnapshotsThatWereThere) {
  for (const bool sync : {false, true}) {
    auto io = std::make_shared<FaultBackend>(6);
    SnapshotStore store(kDir, io, 2);
    ASSERT_TRUE(store.write("orders", 1, 100, state_for(100)).ok());
    if (sync) {
      io->fail_sync(1, EIO);
    } else {
      io->fail_write(1, ENOSPC);
    }
    const Status failed = store.write("orders", 1, 200, state_for(200));
    EXPECT_FALSE(failed.ok());
    EXPECT_EQ(store.sequences("orders").value(), (std::vector<std::uint64_t>{100}));
    EXPECT_EQ(store.newest("orders", 1, UINT64_MAX).value()->header.sequence, 100u);
  }
}

}  // namespace
}  // namespace annal::snapshots
