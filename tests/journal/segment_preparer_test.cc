#include "segment_preparer.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "annal/journal/journal.h"
#include "fault_backend.h"
#include "forwarding_backend.h"
#include "posix_backend.h"
#include "temp_directory.h"

namespace annal::journal {
namespace {

using namespace std::chrono_literals;
using annal::test::TempDirectory;

// take() never blocks; tests poll it, sleeping between tries, for at most a minute.
std::optional<SegmentPreparer::Prepared> take_within_a_minute(SegmentPreparer& preparer) {
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (auto prepared = preparer.take()) return prepared;
    std::this_thread::sleep_for(1ms);
  }
  return std::nullopt;
}

std::vector<std::string> temp_files(IoBackend& io, const std::string& directory) {
  std::vector<std::string> found;
  const auto names = io.list(directory);
  EXPECT_TRUE(names.ok());
  for (const std::string& name : names.value()) {
    if (name.ends_with(".tmp")) found.push_back(name);
  }
  return found;
}

// Whether any extent of `path` is still "unwritten" (fallocated, never written), by FIEMAP.
// nullopt where the file system cannot tell (tmpfs, say).
std::optional<bool> has_unwritten_extents(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  constexpr std::size_t kExtents = 512;
  std::vector<std::byte> storage(sizeof(fiemap) + kExtents * sizeof(fiemap_extent));
  auto* map = reinterpret_cast<fiemap*>(storage.data());
  map->fm_length = FIEMAP_MAX_OFFSET;
  map->fm_flags = FIEMAP_FLAG_SYNC;
  map->fm_extent_count = kExtents;
  const int rc = ::ioctl(fd, FS_IOC_FIEMAP, map);
  ::close(fd);
  if (rc != 0 || map->fm_mapped_extents == 0) return std::nullopt;
  for (std::uint32_t i = 0; i < map->fm_mapped_extents; ++i) {
    if ((map->fm_extents[i].fe_flags & FIEMAP_EXTENT_UNWRITTEN) != 0) return true;
  }
  return false;
}

TEST(SegmentPreparer, ZeroFillLeavesNoUnwrittenExtentsAndAllocateDoes) {
  TempDirectory dir;
  PosixBackend io;
  for (const bool zero_fill : {true, false}) {
    SegmentPreparer preparer(io, dir.path(), 1 << 20, zero_fill ? SegmentPreparation::zero_fill : SegmentPreparation::allocate);
    preparer.request();
    const auto prepared = take_within_a_minute(preparer);
    ASSERT_TRUE(prepared.has_value());
    EXPECT_EQ(io.size(prepared->file).value(), 1u << 20);
    const std::optional<bool> unwritten = has_unwritten_extents(prepared->path);
    if (unwritten.has_value()) {
      EXPECT_EQ(*unwritten, !zero_fill) << prepared->path;
    } else {
      std::printf("note: %s cannot report extents (FIEMAP); only sizes were checked\n", dir.path().c_str());
    }
    ASSERT_TRUE(io.close(prepared->file).ok());
    ASSERT_TRUE(io.remove(prepared->path).ok());
  }
}

TEST(SegmentPreparer, PreparesOnlyWhenAskedAndTheNextOneAfterATake) {
  TempDirectory dir;
  PosixBackend io;
  SegmentPreparer preparer(io, dir.path(), 64 << 10, SegmentPreparation::zero_fill);
  std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(preparer.take().has_value());  // nothing requested, nothing written
  EXPECT_TRUE(temp_files(io, dir.path()).empty());
  preparer.request();
  preparer.request();  // idempotent
  const auto first = take_within_a_minute(preparer);
  ASSERT_TRUE(first.has_value());
  const auto second = take_within_a_minute(preparer);  // taking the first asked for the next
  ASSERT_TRUE(second.has_value());
  EXPECT_NE(first->path, second->path);
  for (const auto& prepared : {*first, *second}) {
    ASSERT_TRUE(io.close(prepared.file).ok());
    ASSERT_TRUE(io.remove(prepared.path).ok());
  }
}

TEST(SegmentPreparer, AnUntakenFileIsRemovedWhenThePreparerStops) {
  TempDirectory dir;
  PosixBackend io;
  {
    SegmentPreparer preparer(io, dir.path(), 64 << 10, SegmentPreparation::zero_fill);
    preparer.request();
    const auto prepared = take_within_a_minute(preparer);  // the second is under way or ready
    ASSERT_TRUE(prepared.has_value());
    ASSERT_TRUE(io.close(prepared->file).ok());
    ASSERT_TRUE(io.remove(prepared->path).ok());
  }
  EXPECT_TRUE(temp_files(io, dir.path()).empty());
}

TEST(SegmentPreparer, AFullDiskMakesItGiveUpCleanly) {
  FaultBackend io(5);
  io.set_space_limit(32 << 10);
  SegmentPreparer preparer(io, "/journal", 64 << 10, SegmentPreparation::zero_fill);
  preparer.request();
  EXPECT_FALSE(preparer.take(/*wait_if_under_way=*/true).has_value());  // waits for the attempt to end
  EXPECT_TRUE(temp_files(io, "/journal").empty());
  preparer.request();  // given up: no retry loop against a full disk
  EXPECT_FALSE(preparer.take(/*wait_if_under_way=*/true).has_value());
  EXPECT_TRUE(temp_files(io, "/journal").empty());
}

TEST(SegmentPreparer, AdaptiveZeroFillsOnlyWhileASegmentTakesFourZeroFillsOrMoreToFill) {
  using Ms = std::chrono::milliseconds;
  EXPECT_TRUE(SegmentPreparer::zero_fill_next(std::nullopt, std::nullopt));  // nothing known: zeros
  EXPECT_TRUE(SegmentPreparer::zero_fill_next(Ms(10), std::nullopt));      // no zero fill timed yet
  EXPECT_TRUE(SegmentPreparer::zero_fill_next(std::nullopt, Ms(10)));      // no segment filled yet
  EXPECT_TRUE(SegmentPreparer::zero_fill_next(Ms(4000), Ms(100)));         // a slow journal
  EXPECT_TRUE(SegmentPreparer::zero_fill_next(Ms(400), Ms(100)));          // just slow enough
  EXPECT_FALSE(SegmentPreparer::zero_fill_next(Ms(399), Ms(100)));         // zeros would take > 1/4
  EXPECT_FALSE(SegmentPreparer::zero_fill_next(Ms(50), Ms(100)));          // a journal at full speed
}

// Holds the writes into prepared-N.tmp for N >= `from` until open_gate() (or a minute), and
// counts each file's writes of zeros.
class ZeroGate final : public test::ForwardingBackend {
 public:
  explicit ZeroGate(std::uint64_t from) : ForwardingBackend(make_posix_backend()), from_(from) {}

  Result<FileId> open(const std::string& path, OpenMode mode) override {
    auto file = ForwardingBackend::open(path, mode);
    const std::string name = std::filesystem::path(path).filename().string();
    if (file.ok() && name.starts_with("prepared-") && name.ends_with(".tmp")) {
      std::lock_guard lock(mutex_);
      numbers_[file.value()] = std::stoull(name.substr(9));
      files_[path] = file.value();
    }
    return file;
  }
  // Renamed, a prepared file is a segment: the journal's writes into it are not the preparer's.
  Status rename(const std::string& from, const std::string& to) override {
    {
      std::lock_guard lock(mutex_);
      if (const auto file = files_.find(from); file != files_.end()) {
        numbers_.erase(file->second);
        files_.erase(file);
      }
    }
    return ForwardingBackend::rename(from, to);
  }
  Status write(FileId file, std::uint64_t offset, std::span<const std::byte> data) override {
    {
      std::unique_lock lock(mutex_);
      if (const auto number = numbers_.find(file); number != numbers_.end()) {
        const bool zeros = std::all_of(data.begin(), data.end(), [](std::byte b) { return b == std::byte{0}; });
        writes_[number->second] += zeros;  // not the segment header, written there before the rename
        if (number->second >= from_) {
          ++blocked_;
          changed_.notify_all();
          changed_.wait_for(lock, std::chrono::minutes(1), [&] { return open_; });
        }
      }
    }
    return ForwardingBackend::write(file, offset, data);
  }
  // Whether a write is (or was) held, within a minute.
  bool wait_for_a_held_write() {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, std::chrono::minutes(1), [&] { return blocked_ > 0; });
  }
  void open_gate() {
    std::lock_guard lock(mutex_);
    open_ = true;
    changed_.notify_all();
  }
  std::uint64_t zero_writes(std::uint64_t number) {
    std::lock_guard lock(mutex_);
    return writes_[number];
  }

 private:
  const std::uint64_t from_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::map<FileId, std::uint64_t> numbers_;  // prepared files not renamed yet
  std::map<std::string, FileId> files_;
  std::map<std::uint64_t, std::uint64_t> writes_;
  std::uint64_t blocked_ = 0;
  bool open_ = false;
};

TEST(SegmentPreparer, AWriterThatFindsTheZeroFillUnderWayCutsItShortAndTheNextFileIsOnlyAllocated) {
  TempDirectory dir;
  ZeroGate io(0);
  constexpr std::uint64_t kBytes = 4 << 20;  // four writes of zeros
  SegmentPreparer preparer(io, dir.path(), kBytes, SegmentPreparation::adaptive);
  preparer.request();
  ASSERT_TRUE(io.wait_for_a_held_write());
  EXPECT_FALSE(preparer.take().has_value());  // a rollover finds it under way: the writer fell behind
  io.open_gate();
  const auto first = take_within_a_minute(preparer);
  ASSERT_TRUE(first.has_value());
  EXPECT_FALSE(first->zero_filled);
  EXPECT_EQ(io.zero_writes(0), 1u);  // the zeros stopped after the write under way
  EXPECT_EQ(io.size(first->file).value(), kBytes);
  const auto second = take_within_a_minute(preparer);  // taking the first asked for the next
  ASSERT_TRUE(second.has_value());
  EXPECT_FALSE(second->zero_filled);
  EXPECT_EQ(io.zero_writes(1), 0u);  // only allocated
  EXPECT_EQ(io.size(second->file).value(), kBytes);
  for (const auto& prepared : {*first, *second}) {
    if (const std::optional<bool> unwritten = has_unwritten_extents(prepared.path); unwritten.has_value()) {
      EXPECT_TRUE(*unwritten) << prepared.path;
    }
    ASSERT_TRUE(io.close(prepared.file).ok());
    ASSERT_TRUE(io.remove(prepared.path).ok());
  }
}

// Every write-back fails, as sync_file_range does after the disk refused a write.
class FailingWriteBack final : public test::ForwardingBackend {
 public:
  FailingWriteBack() : ForwardingBackend(make_posix_backend()) {}
  Status write_back(FileId, std::uint64_t offset, std::uint64_t) override {
    return Status(ErrorCode::io_error, "injected write-back failure at offset " + std::to_string(offset));
  }
};

TEST(SegmentPreparer, AZeroFillWhoseWriteBackFailsGivesNoFileAndNoRetry) {
  TempDirectory dir;
  FailingWriteBack io;
  SegmentPreparer preparer(io, dir.path(), 1 << 20, SegmentPreparation::zero_fill);
  preparer.request();
  EXPECT_FALSE(preparer.take(/*wait_if_under_way=*/true).has_value());  // the writer makes its own
  EXPECT_TRUE(temp_files(io, dir.path()).empty());
  preparer.request();  // given up, as after any failed preparation
  EXPECT_FALSE(preparer.take(/*wait_if_under_way=*/true).has_value());
}

// ---- in the journal -----------------------------------------------------------------------------

std::size_t segment_files(const std::string& directory) {
  std::size_t found = 0;
  for (const auto& entry : std::filesystem::directory_iterator(directory)) {
    found += parse_segment_file_name(entry.path().filename().string()).has_value();
  }
  return found;
}

std::uint64_t append_until_segments(Journal& journal, const std::string& directory, std::size_t segments) {
  const std::vector<std::byte> payload(200, std::byte{0x42});
  const RecordInput record{.stream_id = 1, .payload = payload};
  std::uint64_t last = 0;
  for (int i = 0; i < 100000; ++i) {
    last = journal.append(std::span(&record, 1)).value().last;
    EXPECT_TRUE(journal.wait_durable(last, Journal::Clock::now() + 60s).ok());
    if (segment_files(directory) >= segments) break;
  }
  return last;
}

TEST(SegmentPreparerInJournal, RolloverInstallsTheZeroFilledFileAndCloseLeavesNoTemporaryFile) {
  TempDirectory dir;
  const Options options{.io = IoKind::posix, .segment_bytes_max = 256 << 10, .record_bytes_max = 4096,
                        .commit_bytes_max = 64 << 10};
  auto journal = Journal::open(dir.path(), options);
  ASSERT_TRUE(journal.ok()) << journal.status().to_string();
  // Give the preparer time to finish before the rollover, so the second segment is the prepared file.
  const RecordInput first{.payload = {}};
  ASSERT_TRUE(journal.value()->wait_durable(journal.value()->append(std::span(&first, 1)).value().last,
                                            Journal::Clock::now() + 60s).ok());
  std::this_thread::sleep_for(200ms);
  const std::uint64_t last = append_until_segments(*journal.value(), dir.path(), 2);
  std::string second;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    const auto base = parse_segment_file_name(entry.path().filename().string());
    if (base.has_value() && *base > 1) second = entry.path().string();
  }
  ASSERT_FALSE(second.empty());
  const std::optional<bool> unwritten = has_unwritten_extents(second);
  if (unwritten.has_value()) {
    EXPECT_FALSE(*unwritten) << second;
  }
  ASSERT_TRUE(journal.value()->close().ok());
  PosixBackend io;
  EXPECT_TRUE(temp_files(io, dir.path()).empty());
  journal = Journal::open(dir.path(), options);
  ASSERT_TRUE(journal.ok());
  EXPECT_EQ(journal.value()->durable_sequence(), last);
}

// Appends batches of 1,000-byte records until `segments` segment files exist; the last sequence.
std::uint64_t append_batches_until_segments(Journal& journal, const std::string& directory, std::size_t segments) {
  const std::vector<std::byte> payload(1000, std::byte{0x42});
  const std::vector<RecordInput> batch(32, RecordInput{.stream_id = 1, .payload = payload});
  std::uint64_t last = 0;
  for (int i = 0; i < 100000 && segment_files(directory) < segments; ++i) {
    last = journal.append(batch).value().last;
    EXPECT_TRUE(journal.wait_durable(last, Journal::Clock::now() + 60s).ok());
  }
  return last;
}

TEST(SegmentPreparerInJournal, AWriterFasterThanTheZeroFillRollsOverWithoutItAndTheStatsSaySo) {
  TempDirectory dir;
  auto io = std::make_shared<ZeroGate>(1);  // the first file is zero-filled; the second is held
  const Options options{.segment_bytes_max = 4 << 20, .record_bytes_max = 4096, .commit_bytes_max = 256 << 10};
  ASSERT_EQ(options.preparation, SegmentPreparation::adaptive);  // the default
  auto journal = Journal::open(dir.path(), options, io);
  ASSERT_TRUE(journal.ok()) << journal.status().to_string();
  append_batches_until_segments(*journal.value(), dir.path(), 1);
  ASSERT_TRUE(io->wait_for_a_held_write());  // the second file's zero fill is under way
  append_batches_until_segments(*journal.value(), dir.path(), 2);  // the writer makes it itself
  io->open_gate();
  // The cut-short file is installed at the first rollover that finds it ready.
  std::uint64_t last = 0;
  for (std::size_t segments = 3; segments <= 20 && journal.value()->stats().segments_allocated == 0; ++segments) {
    last = append_batches_until_segments(*journal.value(), dir.path(), segments);
  }
  last = append_batches_until_segments(*journal.value(), dir.path(), segment_files(dir.path()) + 1);
  const Stats stats = journal.value()->stats();
  EXPECT_GE(stats.segments_zero_filled, 1u);  // the first
  EXPECT_GE(stats.segments_unprepared, 1u);
  EXPECT_GE(stats.segments_allocated, 1u);  // the cut-short file, and those after it
  EXPECT_EQ(io->zero_writes(1), 1u);
  EXPECT_EQ(io->zero_writes(2), 0u);
  ASSERT_TRUE(journal.value()->close().ok());
  journal = Journal::open(dir.path(), options);
  ASSERT_TRUE(journal.ok()) << journal.status().to_string();
  EXPECT_EQ(journal.value()->durable_sequence(), last);
  EXPECT_TRUE(temp_files(*io, dir.path()).empty());
}

TEST(SegmentPreparerInJournal, APowerCutWithAPreparedFileLeavesItToRecoveryToRemove) {
  auto io = std::make_shared<FaultBackend>(11);
  const Options options{.segment_bytes_max = 16384, .record_bytes_max = 1024, .commit_bytes_max = 4096};
  std::uint64_t acknowledged = 0;
  {
    auto journal = Journal::open("/journal", options, io);
    ASSERT_TRUE(journal.ok());
    const std::vector<std::byte> payload(100, std::byte{7});
    const RecordInput record{.payload = payload};
    acknowledged = journal.value()->append(std::span(&record, 1)).value().last;
    ASSERT_TRUE(journal.value()->wait_durable(acknowledged, Journal::Clock::now() + 60s).ok());
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (temp_files(*io, "/journal").empty() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(1ms);
    }
    ASSERT_FALSE(temp_files(*io, "/journal").empty());
    io->crash();
  }
  io->revive();
  auto journal = Journal::open("/journal", options, io);
  ASSERT_TRUE(journal.ok()) << journal.status().to_string();
  EXPECT_EQ(journal.value()->durable_sequence(), acknowledged);
  EXPECT_TRUE(temp_files(*io, "/journal").empty());
}

}  // namespace
}  // namespace annal::journal
