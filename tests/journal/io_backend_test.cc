#include <gtest/gtest.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "journal_fixture.h"

namespace annal::journal {
namespace {

std::vector<std::byte> filled(std::size_t n, std::uint8_t value) {
  return std::vector<std::byte>(n, std::byte{value});
}

std::vector<std::byte> read_all(IoBackend& io, FileId file) {
  const auto size = io.size(file);
  EXPECT_TRUE(size.ok());
  std::vector<std::byte> out(size.value());
  const auto n = io.read(file, 0, out);
  EXPECT_TRUE(n.ok());
  out.resize(n.value());
  return out;
}

using test::TempDirectory;

template <class Backend>
class IoBackendTest : public ::testing::Test {
 protected:
  std::unique_ptr<IoBackend> make() {
    if constexpr (std::is_same_v<Backend, FaultBackend>) {
      return std::make_unique<FaultBackend>(/*seed=*/1);
    } else if constexpr (std::is_same_v<Backend, UringBackend>) {
      auto backend = UringBackend::create(8);
      ANNAL_ASSERT(backend.ok());  // io_uring is required on annal's machines
      return std::move(backend).value();
    } else {
      return std::make_unique<PosixBackend>();
    }
  }
  std::string file(const std::string& name) const { return dir_.path() + "/" + name; }
  TempDirectory dir_;
};

TYPED_TEST_SUITE(IoBackendTest, test::Backends, test::BackendName);

TYPED_TEST(IoBackendTest, WritesReadBackAndSizeFollows) {
  auto io = this->make();
  const auto file = io->open(this->file("a.log"), OpenMode::create_exclusive);
  ASSERT_TRUE(file.ok()) << file.status().to_string();
  ASSERT_TRUE(io->write(file.value(), 0, filled(100, 1)).ok());
  ASSERT_TRUE(io->write(file.value(), 50, filled(100, 2)).ok());
  ASSERT_TRUE(io->sync(file.value()).ok());
  const auto bytes = read_all(*io, file.value());
  ASSERT_EQ(bytes.size(), 150u);
  EXPECT_EQ(bytes[49], std::byte{1});
  EXPECT_EQ(bytes[50], std::byte{2});
  ASSERT_TRUE(io->close(file.value()).ok());
}

TYPED_TEST(IoBackendTest, CreateExclusiveRefusesAnExistingFileAndOpenAMissingOne) {
  auto io = this->make();
  ASSERT_TRUE(io->open(this->file("a.log"), OpenMode::create_exclusive).ok());
  EXPECT_FALSE(io->open(this->file("a.log"), OpenMode::create_exclusive).ok());
  const auto missing = io->open(this->file("missing.log"), OpenMode::read_write);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), ErrorCode::not_found);
  EXPECT_NE(missing.status().message().find("missing.log"), std::string::npos);
}

TYPED_TEST(IoBackendTest, ListsRenamesAndRemovesNames) {
  auto io = this->make();
  ASSERT_TRUE(io->open(this->file("a.tmp"), OpenMode::create_exclusive).ok());
  ASSERT_TRUE(io->rename(this->file("a.tmp"), this->file("a.log")).ok());
  ASSERT_TRUE(io->open(this->file("b.log"), OpenMode::create_exclusive).ok());
  ASSERT_TRUE(io->remove(this->file("b.log")).ok());
  ASSERT_TRUE(io->sync_directory(this->dir_.path()).ok());
  const auto names = io->list(this->dir_.path());
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(names.value(), std::vector<std::string>{"a.log"});
}

// And asking whether it is held neither takes it nor, by closing what it opened, lets it go.
TYPED_TEST(IoBackendTest, ASecondLockOnTheDirectoryIsRefusedUntilTheFirstCloses) {
  auto io = this->make();
  const std::string& dir = this->dir_.path();
  ASSERT_FALSE(io->directory_locked(dir).value());  // no LOCK file yet
  const auto first = io->lock_directory(dir);
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  EXPECT_TRUE(io->directory_locked(dir).value());
  EXPECT_TRUE(io->directory_locked(dir).value());
  const auto second = io->lock_directory(dir);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), ErrorCode::locked);
  EXPECT_NE(second.status().message().find("in use"), std::string::npos);
  EXPECT_TRUE(io->directory_locked(dir).value());
  ASSERT_TRUE(io->close(first.value()).ok());
  EXPECT_FALSE(io->directory_locked(dir).value());
  EXPECT_TRUE(io->lock_directory(dir).ok());
}

TYPED_TEST(IoBackendTest, QueuedOperationsCompleteWithTheirTagsAndTheSyncLast) {
  auto io = this->make();
  const auto file = io->open(this->file("a.log"), OpenMode::create_exclusive);
  ASSERT_TRUE(file.ok());
  const auto first = filled(4096, 7), second = filled(10, 8);
  io->queue_write(file.value(), 0, first, 11);
  io->queue_write(file.value(), 4096, second, 12);
  io->queue_sync(file.value(), 13);
  ASSERT_TRUE(io->submit().ok());
  std::array<Completion, 4> done{};
  const auto n = io->reap(done, 3);
  ASSERT_TRUE(n.ok());
  ASSERT_EQ(n.value(), 3u);
  // Writes may complete in any order; the sync only after both.
  std::sort(done.begin(), done.begin() + 2, [](auto& a, auto& b) { return a.tag < b.tag; });
  EXPECT_EQ(done[0].tag, 11u);
  EXPECT_EQ(done[0].result, 4096);
  EXPECT_EQ(done[1].tag, 12u);
  EXPECT_EQ(done[1].result, 10);
  EXPECT_EQ(done[2].tag, 13u);
  EXPECT_EQ(done[2].result, 0);
  EXPECT_EQ(read_all(*io, file.value()).size(), 4106u);
}

TYPED_TEST(IoBackendTest, AllocateReservesZeros) {
  auto io = this->make();
  const auto file = io->open(this->file("a.log"), OpenMode::create_exclusive);
  ASSERT_TRUE(file.ok());
  ASSERT_TRUE(io->allocate(file.value(), 8192).ok());
  const auto bytes = read_all(*io, file.value());
  ASSERT_EQ(bytes.size(), 8192u);
  EXPECT_TRUE(std::all_of(bytes.begin(), bytes.end(), [](std::byte b) { return b == std::byte{0}; }));
}

// A write the kernel refuses (the file is open read-only) must cancel the sync queued after it.
// A writer built before the OFD lock takes only flock, and Linux keeps the two kinds of lock
// apart: the lock must refuse, and be refused by, such a writer too.
TEST(KernelBackends, TheDirectoryLockExcludesAWriterThatTakesOnlyFlock) {
  TempDirectory dir;
  PosixBackend io;
  const std::string lock_path = dir.path() + "/LOCK";
  const int older = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(older, 0);
  ASSERT_EQ(::flock(older, LOCK_EX | LOCK_NB), 0);
  const auto refused = io.lock_directory(dir.path());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), ErrorCode::locked);
  ASSERT_EQ(::close(older), 0);

  const auto held = io.lock_directory(dir.path());
  ASSERT_TRUE(held.ok()) << held.status().to_string();
  const int newer = ::open(lock_path.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(newer, 0);
  EXPECT_EQ(::flock(newer, LOCK_EX | LOCK_NB), -1);
  EXPECT_EQ(errno, EWOULDBLOCK);
  ::close(newer);
}

TEST(KernelBackends, ASyncAfterAFailedWriteIsCancelled) {
  TempDirectory dir;
  auto uring = UringBackend::create(8);
  ASSERT_TRUE(uring.ok());
  PosixBackend posix;
  for (IoBackend* io : {static_cast<IoBackend*>(uring.value().get()), static_cast<IoBackend*>(&posix)}) {
    const std::string path = dir.path() + "/ro.log";
    (void)io->remove(path);
    ASSERT_TRUE(io->open(path, OpenMode::create_exclusive).ok());
    const auto file = io->open(path, OpenMode::read_only);
    ASSERT_TRUE(file.ok());
    const auto data = filled(64, 1);
    io->queue_write(file.value(), 0, data, 1);
    io->queue_sync(file.value(), 2);
    ASSERT_TRUE(io->submit().ok());
    std::array<Completion, 2> done{};
    ASSERT_EQ(io->reap(done, 2).value(), 2u);
    EXPECT_EQ(done[0].tag, 1u);
    EXPECT_EQ(done[0].result, -EBADF);
    EXPECT_EQ(done[1].tag, 2u);
    EXPECT_EQ(done[1].result, -ECANCELED);
  }
}

// Many writes in flight through a small ring, then one sync: all complete, the data is all there.
TEST(UringBackend, ManyWritesInFlightThenOneSync) {
  TempDirectory dir;
  auto created = UringBackend::create(16);
  ASSERT_TRUE(created.ok());
  UringBackend& io = *created.value();
  const auto file = io.open(dir.path() + "/a.log", OpenMode::create_exclusive);
  ASSERT_TRUE(file.ok());
  std::vector<std::vector<std::byte>> blocks;
  for (int i = 0; i < 15; ++i) blocks.push_back(filled(4096, static_cast<std::uint8_t>(i + 1)));
  for (int i = 0; i < 15; ++i) io.queue_write(file.value(), static_cast<std::uint64_t>(i) * 4096, blocks[i], i);
  io.queue_sync(file.value(), 100);
  ASSERT_TRUE(io.submit().ok());
  std::array<Completion, 16> done{};
  std::size_t reaped = 0;
  while (reaped < 16) {
    const auto n = io.reap(std::span(done).subspan(reaped), 1);
    ASSERT_TRUE(n.ok());
    reaped += n.value();
  }
  EXPECT_EQ(done[15].tag, 100u);  // the sync is last
  for (const Completion& c : done) EXPECT_GE(c.result, 0);
  const auto bytes = read_all(io, file.value());
  ASSERT_EQ(bytes.size(), 15u * 4096);
  for (int i = 0; i < 15; ++i) EXPECT_EQ(bytes[static_cast<std::size_t>(i) * 4096 + 100], std::byte(i + 1));
}

TEST(UringBackend, WritesFromRegisteredBuffersAndFromElsewhereBothLand) {
  TempDirectory dir;
  auto created = UringBackend::create(16);
  ASSERT_TRUE(created.ok());
  UringBackend& io = *created.value();
  std::vector<std::byte> registered = filled(3 * 4096, 0x11);
  std::fill(registered.begin() + 4096, registered.end(), std::byte{0x22});
  const std::span<std::byte> spans[] = {registered};
  ASSERT_TRUE(io.register_buffers(spans).ok());
  const std::vector<std::byte> elsewhere = filled(4096, 0x33);
  const auto file = io.open(dir.path() + "/a.log", OpenMode::create_exclusive);
  ASSERT_TRUE(file.ok());
  io.queue_write(file.value(), 0, std::span(registered).first(4096), 1);           // whole start
  io.queue_write(file.value(), 4096, std::span(registered).subspan(4096, 100), 2);  // a slice inside
  io.queue_write(file.value(), 8192, elsewhere, 3);
  ASSERT_TRUE(io.submit().ok());
  std::array<Completion, 3> done{};
  std::size_t reaped = 0;
  while (reaped < 3) {
    const auto n = io.reap(std::span(done).subspan(reaped), 3 - reaped);
    ASSERT_TRUE(n.ok());
    reaped += n.value();
  }
  for (const Completion& c : done) EXPECT_GE(c.result, 0) << c.tag;
  const auto bytes = read_all(io, file.value());
  ASSERT_EQ(bytes.size(), 8192u + 4096u);
  EXPECT_EQ(bytes[0], std::byte{0x11});
  EXPECT_EQ(bytes[4096 + 99], std::byte{0x22});
  EXPECT_EQ(bytes[8192], std::byte{0x33});
  io.unregister_buffers();
  ASSERT_TRUE(io.register_buffers(spans).ok());  // again, as the next journal on this backend would
}

// ---- FaultBackend's own promises --------------------------------------------------------------

constexpr const char* kDir = "/j";

FileId create(FaultBackend& io, const std::string& name) {
  const auto file = io.open(std::string(kDir) + "/" + name, OpenMode::create_exclusive);
  ANNAL_ASSERT(file.ok());
  return file.value();
}

TEST(FaultBackend, SyncedDataSurvivesACrash) {
  FaultBackend io(7);
  const FileId file = create(io, "a.log");
  ASSERT_TRUE(io.write(file, 0, filled(1000, 3)).ok());
  ASSERT_TRUE(io.sync(file).ok());
  ASSERT_TRUE(io.sync_directory(kDir).ok());
  io.crash();
  io.revive();
  EXPECT_EQ(io.contents("/j/a.log"), filled(1000, 3));
}

TEST(FaultBackend, UnsyncedWritesMayBeLostOrTornButNothingIsInvented) {
  bool saw_loss = false, saw_tear = false, saw_whole = false;
  for (std::uint64_t seed = 0; seed < 64; ++seed) {
    FaultBackend io(seed);
    const FileId file = create(io, "a.log");
    ASSERT_TRUE(io.write(file, 0, filled(4096, 1)).ok());
    ASSERT_TRUE(io.sync(file).ok());
    ASSERT_TRUE(io.sync_directory(kDir).ok());
    ASSERT_TRUE(io.write(file, 0, filled(4096, 2)).ok());  // 8 sectors, unsynced
    io.crash();
    io.revive();
    const auto bytes = io.contents("/j/a.log");
    ASSERT_EQ(bytes.size(), 4096u);
    std::size_t new_sectors = 0;
    for (std::size_t sector = 0; sector < 8; ++sector) {
      const std::byte first = bytes[sector * 512];
      ASSERT_TRUE(first == std::byte{1} || first == std::byte{2}) << "seed " << seed;
      for (std::size_t i = 0; i < 512; ++i) ASSERT_EQ(bytes[sector * 512 + i], first) << "sector torn inside";
      new_sectors += first == std::byte{2};
    }
    saw_loss |= new_sectors == 0;
    saw_whole |= new_sectors == 8;
    saw_tear |= new_sectors > 0 && new_sectors < 8;
  }
  EXPECT_TRUE(saw_loss && saw_tear && saw_whole);
}

TEST(FaultBackend, AFileCreatedWithoutADirectorySyncMayVanish) {
  FaultBackend io(1);
  const FileId file = create(io, "new.log");
  ASSERT_TRUE(io.write(file, 0, filled(10, 1)).ok());
  ASSERT_TRUE(io.sync(file).ok());
  io.crash();
  io.revive();
  EXPECT_TRUE(io.contents("/j/new.log").empty());
  EXPECT_TRUE(io.list(kDir).value().empty());
}

TEST(FaultBackend, TheNthWriteFailsOnceOrForGood) {
  FaultBackend io(1);
  const FileId file = create(io, "a.log");
  io.fail_write(2, EIO);
  EXPECT_TRUE(io.write(file, 0, filled(8, 1)).ok());
  EXPECT_EQ(io.write(file, 8, filled(8, 1)).code(), ErrorCode::io_error);
  EXPECT_TRUE(io.write(file, 8, filled(8, 1)).ok());
  io.fail_write(1, EIO, /*persistent=*/true);
  EXPECT_FALSE(io.write(file, 16, filled(8, 1)).ok());
  EXPECT_FALSE(io.write(file, 16, filled(8, 1)).ok());
}

TEST(FaultBackend, AFailedSyncLosesTheWritesEvenIfARetrySucceeds) {
  FaultBackend io(1);
  const FileId file = create(io, "a.log");
  ASSERT_TRUE(io.sync_directory(kDir).ok());
  ASSERT_TRUE(io.write(file, 0, filled(512, 9)).ok());
  io.fail_sync(1, EIO);
  EXPECT_EQ(io.sync(file).code(), ErrorCode::io_error);
  EXPECT_EQ(io.contents("/j/a.log"), filled(512, 9));  // still readable from the "page cache"
  EXPECT_TRUE(io.sync(file).ok());                     // the retry "works"...
  io.crash();
  io.revive();
  EXPECT_TRUE(io.contents("/j/a.log").empty());        // ...and the data is gone
}

TEST(FaultBackend, WritesPastTheSpaceLimitFailWithEnospc) {
  FaultBackend io(1);
  io.set_space_limit(1000);
  const FileId file = create(io, "a.log");
  EXPECT_TRUE(io.write(file, 0, filled(1000, 1)).ok());
  const Status full = io.write(file, 1000, filled(1, 1));
  EXPECT_EQ(full.code(), ErrorCode::no_space);
  EXPECT_TRUE(io.write(file, 0, filled(1000, 2)).ok());  // overwriting needs no new space
  EXPECT_EQ(io.allocate(file, 2000).code(), ErrorCode::no_space);
}

TEST(FaultBackend, AQueuedSyncAfterAFailedWriteIsCancelled) {
  FaultBackend io(1);
  const FileId file = create(io, "a.log");
  const auto data = filled(64, 1);
  io.fail_write(1, EIO);
  io.queue_write(file, 0, data, 1);
  io.queue_sync(file, 2);
  ASSERT_TRUE(io.submit().ok());
  std::array<Completion, 2> done{};
  ASSERT_EQ(io.reap(done, 2).value(), 2u);
  EXPECT_EQ(done[0].result, -EIO);
  EXPECT_EQ(done[1].result, -ECANCELED);
  EXPECT_EQ(io.syncs(), 0u);
}

}  // namespace
}  // namespace annal::journal
