#include "annal/journal/reader.h"

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <deque>
#include <map>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "annal/journal/inspect.h"
#include "forwarding_backend.h"
#include "journal_fixture.h"
#include "segment_index.h"
#include "watchdog.h"

namespace annal::journal {
namespace {

using namespace std::chrono_literals;

using test::payload_for;
using test::soon;

// Small segments, a fine index and a small chunk, so a few hundred records span several segments,
// several index entries each, and many chunks.
const Options kSmall{.segment_bytes_max = 16384,
                         .record_bytes_max = 1024,
                         .commit_bytes_max = 4096,
                         .index_interval_bytes = 1024,
                         .read_chunk_bytes = 4096};

// Payload sizes vary with the version so records do not fall on a regular grid.
std::size_t payload_bytes(std::uint64_t version) { return 8 + version * 37 % 300; }

// Appends `count` records in batches of 1 to 3, stream 5, versions from `first`; returns the last
// sequence.
std::uint64_t append_varied(Journal& journal, std::uint64_t first, std::uint64_t count,
                            std::size_t (*bytes)(std::uint64_t) = payload_bytes) {
  std::uint64_t last = 0;
  for (std::uint64_t v = first; v < first + count;) {
    const std::uint64_t size = std::min<std::uint64_t>(1 + v % 3, first + count - v);
    std::vector<std::vector<std::byte>> payloads;
    std::vector<RecordInput> batch;
    for (std::uint64_t i = 0; i < size; ++i) payloads.push_back(payload_for(5, v + i, bytes(v + i)));
    for (std::uint64_t i = 0; i < size; ++i) {
      batch.push_back({.stream_id = 5, .stream_version = v + i, .payload = payloads[i]});
    }
    const auto receipt = journal.append(batch);
    EXPECT_TRUE(receipt.ok()) << receipt.status().to_string();
    if (!receipt.ok()) break;
    last = receipt.value().last;
    v += size;
  }
  return last;
}

// The record is sequence `sequence` of a log written by append_varied from version 0.
void expect_record(const RecordView& record, std::uint64_t sequence,
                   std::size_t (*bytes)(std::uint64_t) = payload_bytes) {
  ASSERT_EQ(record.header.sequence, sequence);
  const std::uint64_t version = sequence - 1;
  ASSERT_EQ(record.header.stream_version, version);
  const auto expected = payload_for(5, version, bytes(version));
  ASSERT_TRUE(std::equal(record.payload.begin(), record.payload.end(), expected.begin(), expected.end()))
      << "payload of sequence " << sequence;
}

RecordView next_record(Reader& reader) {
  auto record = reader.next();
  EXPECT_TRUE(record.ok()) << record.status().to_string();
  EXPECT_TRUE(record.ok() && record.value().has_value()) << "caught up at " << reader.position();
  if (!record.ok() || !record.value()) return {};
  return *record.value();
}

// Reads from every sequence in [1, last] and checks the next few records.
void expect_reads_from_everywhere(Journal& journal, std::uint64_t last) {
  for (std::uint64_t from = 1; from <= last; ++from) {
    SCOPED_TRACE("from " + std::to_string(from));
    auto reader = journal.reader(from);
    ASSERT_TRUE(reader.ok()) << reader.status().to_string();
    for (std::uint64_t s = from; s <= std::min(last, from + 3); ++s) {
      expect_record(next_record(*reader.value()), s);
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
}

std::vector<SegmentLocation> locate_all(const Journal& journal, std::uint64_t last) {
  std::vector<SegmentLocation> out;
  for (std::uint64_t s = 1; s <= last; ++s) {
    auto where = journal.locate(s);
    EXPECT_TRUE(where.ok()) << where.status().to_string();
    if (where.ok()) out.push_back(where.value());
  }
  return out;
}

template <class Backend>
class ReaderTest : public test::JournalFixture<Backend> {};
TYPED_TEST_SUITE(ReaderTest, test::Backends, test::BackendName);

// The engine's stream reads jump backwards and forwards through the log, one record at a time,
// with a small chunk; every jump must land on the record asked for, across segments and index
// entries, whether the buffer already holds it or not.
// Sealed segments leave an index file behind, and open() reads those instead of the segments: only
// the tail is scanned. A damaged index file, or one built at another interval, is ignored and its
// segment scanned; the index recovery ends up with is the same either way.
TYPED_TEST(ReaderTest, OpenScansOnlySegmentsWithoutAValidIndexFile) {
  std::uint64_t last = 0;
  std::vector<SegmentLocation> written;
  {
    auto journal = this->open(kSmall);
    ASSERT_TRUE(journal.ok()) << journal.status().to_string();
    last = append_varied(*journal.value(), 0, 300);
    ASSERT_TRUE(journal.value()->wait_durable(last, soon()).ok());
    written = locate_all(*journal.value(), last);
    ASSERT_TRUE(journal.value()->close().ok());
  }
  const auto reopen_and_check = [&](const Options& options, std::size_t scanned) {
    auto journal = this->open(options);
    ASSERT_TRUE(journal.ok()) << journal.status().to_string();
    ASSERT_GE(journal.value()->recovery().segments, 4u);
    EXPECT_EQ(journal.value()->recovery().segments_scanned, scanned);
    if (options.index_interval_bytes == kSmall.index_interval_bytes) {
      const auto located = locate_all(*journal.value(), last);
      ASSERT_EQ(located.size(), written.size());
      for (std::size_t i = 0; i < located.size(); ++i) {
        EXPECT_EQ(located[i].start_offset, written[i].start_offset) << "sequence " << i + 1;
        EXPECT_EQ(located[i].end_sequence >= written[i].end_sequence, true);
      }
    }
    expect_reads_from_everywhere(*journal.value(), last);
    ASSERT_TRUE(journal.value()->close().ok());
  };
  reopen_and_check(kSmall, 1);  // the tail only
  // Damage the first segment's index file: that segment is scanned, and its index file rewritten.
  const std::string first_index = this->dir_.path() + "/" + segment_file_name(1).substr(0, 20) + ".idx";
  {
    auto io = this->backend();
    const auto file = io->open(first_index, OpenMode::read_write);
    ASSERT_TRUE(file.ok()) << file.status().to_string();
    const std::byte junk[8] = {};
    ASSERT_TRUE(io->write(file.value(), 60, junk).ok());
    ASSERT_TRUE(io->close(file.value()).ok());
  }
  reopen_and_check(kSmall, 2);
  reopen_and_check(kSmall, 1);
  // An index built at another interval is still an index of the segment: an open with a coarser
  // interval trusts it (and reads from everywhere through it), writing its own only at the tail.
  Options coarser = kSmall;
  coarser.index_interval_bytes = 2048;
  auto journal = this->open(coarser);
  ASSERT_TRUE(journal.ok());
  EXPECT_EQ(journal.value()->recovery().segments_scanned, 1u);
  expect_reads_from_everywhere(*journal.value(), journal.value()->last_sequence());
}

TYPED_TEST(ReaderTest, SeeksLandOnTheRecordInEitherDirection) {
  auto journal = this->open(kSmall);
  ASSERT_TRUE(journal.ok()) << journal.status().to_string();
  const std::uint64_t last = append_varied(*journal.value(), 0, 300);
  ASSERT_TRUE(journal.value()->wait_durable(last, soon()).ok());
  auto reader = journal.value()->reader(last, 1024);
  ASSERT_TRUE(reader.ok()) << reader.status().to_string();
  std::vector<std::uint64_t> jumps;
  for (std::uint64_t s = last; s >= 1; s -= std::min<std::uint64_t>(s, 1 + s % 4)) jumps.push_back(s);
  for (std::uint64_t s = 1; s <= last; s += 1 + s % 7) jumps.push_back(s);
  for (std::uint64_t i = 0; i < 200; ++i) jumps.push_back(1 + i * 7919 % last);
  for (const std::uint64_t s : jumps) {
    SCOPED_TRACE("seek to " + std::to_string(s));
    reader.value()->seek(s);
    expect_record(next_record(*reader.value()), s);
    if (::testing::Test::HasFatalFailure()) return;
    ASSERT_EQ(reader.value()->position(), s + 1);
  }
}

TYPED_TEST(ReaderTest, ReadsFromEverySequenceLandOnTheRightRecordAndSurviveReopen) {
  std::vector<SegmentLocation> before;
  std::uint64_t last = 0;
  {
    auto journal = this->open(kSmall);
    ASSERT_TRUE(journal.ok()) << journal.status().to_string();
    last = append_varied(*journal.value(), 0, 300);
    ASSERT_TRUE(journal.value()->wait_durable(last, soon()).ok());
    expect_reads_from_everywhere(*journal.value(), last);
    before = locate_all(*journal.value(), last);
    ASSERT_TRUE(journal.value()->close().ok());
  }
  auto journal = this->open(kSmall);
  ASSERT_TRUE(journal.ok()) << journal.status().to_string();
  ASSERT_GE(journal.value()->recovery().segments, 4u);
  // The index recovery's scan rebuilt is the one the writer built.
  const std::vector<SegmentLocation> after = locate_all(*journal.value(), last);
  ASSERT_EQ(after.size(), before.size());
  std::size_t seeks = 0;
  for (std::size_t i = 0; i < after.size(); ++i) {
    EXPECT_EQ(after[i].path, before[i].path);
    EXPECT_EQ(after[i].start_sequence, before[i].start_sequence) << "sequence " << i + 1;
    EXPECT_EQ(after[i].start_offset, before[i].start_offset) << "sequence " << i + 1;
    seeks += after[i].start_offset > kSegmentHeaderBytes;
  }
  EXPECT_GT(seeks, after.size() / 2);  // most reads start past the segment's first record
  expect_reads_from_everywhere(*journal.value(), last);
}

TYPED_TEST(ReaderTest, ASeekStepsOverOnlyTheRecordsAfterItsIndexEntry) {
  // Without the hash chain: its thread reads each sealed segment whole, whenever it comes to it,
  // and those reads would count among the reader's below (once in CI: 3 reads, 24 KiB).
  Options unchained = kSmall;
  unchained.hash_chain = false;
  auto journal = this->open(unchained);
  ASSERT_TRUE(journal.ok());
  const std::uint64_t last = append_varied(*journal.value(), 0, 300);
  ASSERT_TRUE(journal.value()->wait_durable(last, soon()).ok());
  // Two consecutive index entries in a sealed segment: `damaged` and `entry`.
  auto first = journal.value()->locate(1);
  ASSERT_TRUE(first.ok());
  auto second = journal.value()->locate(first.value().end_sequence);
  ASSERT_TRUE(second.ok());
  ASSERT_LT(second.value().end_sequence, last);  // sealed: appends go elsewhere
  std::uint64_t s = second.value().base + 1;
  while (journal.value()->locate(s).value().start_sequence == second.value().base) ++s;
  const SegmentLocation entry = journal.value()->locate(s).value();
  const SegmentLocation damaged = journal.value()->locate(entry.start_sequence - 1).value();
  ASSERT_LT(damaged.start_sequence, entry.start_sequence);

  // Corrupt the payload of the record at `damaged`, behind the journal's back.
  auto io = this->backend();
  const auto file = io->open(entry.path, OpenMode::read_write);
  ASSERT_TRUE(file.ok());
  const std::byte junk[] = {std::byte{0x5A}};
  ASSERT_TRUE(io->write(file.value(), damaged.start_offset + kRecordHeaderBytes, junk).ok());
  ASSERT_TRUE(io->close(file.value()).ok());

  // A read from the entry on never touches the damaged record, which lies before it...
  const std::uint64_t reads_before = this->fault_ ? this->fault_->reads() : 0;
  const std::uint64_t bytes_before = this->fault_ ? this->fault_->read_bytes() : 0;
  auto reader = journal.value()->reader(entry.start_sequence + 1);
  ASSERT_TRUE(reader.ok());
  expect_record(next_record(*reader.value()), entry.start_sequence + 1);
  if (this->fault_) {
    // ...and reads the segment header plus one chunk from the entry's offset.
    EXPECT_EQ(this->fault_->reads() - reads_before, 2u);
    EXPECT_LE(this->fault_->read_bytes() - bytes_before, kSegmentHeaderBytes + kSmall.read_chunk_bytes);
  }
  // ...while one from the damaged record's entry on steps onto it and names it.
  auto damaged_reader = journal.value()->reader(damaged.start_sequence + 1);
  ASSERT_TRUE(damaged_reader.ok());
  const auto failed = damaged_reader.value()->next();
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), ErrorCode::corruption);
  const std::string expected = damaged.path + " offset " + std::to_string(damaged.start_offset) +
                               " sequence " + std::to_string(damaged.start_sequence) + ": ";
  EXPECT_EQ(failed.status().message().rfind(expected, 0), 0u) << failed.status().message();
  EXPECT_EQ(damaged_reader.value()->position(), damaged.start_sequence + 1);  // unmoved
}

std::size_t large_bytes(std::uint64_t version) {
  constexpr std::size_t kSizes[] = {100, 10000, 40000, 5000, 60000};
  return kSizes[version % 5];
}

TYPED_TEST(ReaderTest, RecordsLargerThanTheChunkAreReadWhole) {
  auto journal = this->open({.segment_bytes_max = 512u << 10,
                             .record_bytes_max = 64u << 10,
                             .commit_bytes_max = 128u << 10,
                             .index_interval_bytes = 16u << 10,
                             .read_chunk_bytes = 4096});
  ASSERT_TRUE(journal.ok()) << journal.status().to_string();
  const std::uint64_t last = append_varied(*journal.value(), 0, 40, large_bytes);
  ASSERT_TRUE(journal.value()->wait_durable(last, soon()).ok());
  for (std::uint64_t from = 1; from <= last; ++from) {
    auto reader = journal.value()->reader(from);
    ASSERT_TRUE(reader.ok());
    for (std::uint64_t s = from; s <= last; ++s) {
      expect_record(next_record(*reader.value()), s, large_bytes);
      if (::testing::Test::HasFatalFailure()) return;
    }
    const auto end = reader.value()->next();
    ASSERT_TRUE(end.ok());
    EXPECT_FALSE(end.value().has_value());
  }
}

TYPED_TEST(ReaderTest, ATailingReaderSeesEveryRecordOnceInOrderAcrossRollovers) {
  const annal::test::Watchdog watchdog("tailing reader");
  auto journal = this->open(kSmall);
  ASSERT_TRUE(journal.ok());
  constexpr std::uint64_t kRecords = 1500;  // about ten segments
  auto reader = journal.value()->reader(1);
  ASSERT_TRUE(reader.ok());
  std::uint64_t seen = 0;
  Status failure;
  std::thread tail([&] {
    while (seen < kRecords) {
      const auto record = reader.value()->next(Journal::Clock::now() + 30s);
      if (!record.ok()) {
        failure = record.status();
        return;
      }
      expect_record(record.value(), seen + 1);
      if (::testing::Test::HasFailure()) return;
      ++seen;
    }
  });
  const std::uint64_t last = append_varied(*journal.value(), 0, kRecords);
  tail.join();
  EXPECT_TRUE(failure.ok()) << failure.to_string();
  EXPECT_EQ(last, kRecords);
  EXPECT_EQ(seen, kRecords);
  EXPECT_GE(journal.value()->locate(kRecords).value().base, 1000u);  // it did cross segments
  const auto end = reader.value()->next();
  ASSERT_TRUE(end.ok());
  EXPECT_FALSE(end.value().has_value());
}

TYPED_TEST(ReaderTest, ATailingReaderTimesOutWhenNothingMoreBecomesDurable) {
  auto journal = this->open(kSmall);
  ASSERT_TRUE(journal.ok());
  auto reader = journal.value()->reader(1);
  ASSERT_TRUE(reader.ok());
  const auto before = Journal::Clock::now();
  const auto record = reader.value()->next(before + 50ms);
  ASSERT_FALSE(record.ok());
  EXPECT_EQ(record.status().code(), ErrorCode::timed_out) << record.status().to_string();
  EXPECT_GE(Journal::Clock::now() - before, 50ms);
  EXPECT_EQ(reader.value()->position(), 1u);
  // Not a failure: once there is something, the same reader carries on.
  append_varied(*journal.value(), 0, 1);
  const auto later = reader.value()->next(soon());
  ASSERT_TRUE(later.ok()) << later.status().to_string();
  expect_record(later.value(), 1);
}

TYPED_TEST(ReaderTest, ReadsOfSegmentsRemovedByRetentionAreNotFound) {
  auto journal = this->open(kSmall);
  ASSERT_TRUE(journal.ok());
  const std::uint64_t last = append_varied(*journal.value(), 0, 300);
  ASSERT_TRUE(journal.value()->wait_durable(last, soon()).ok());
  // A reader already inside the first segment when the retention comes.
  const std::uint64_t first_end = journal.value()->locate(1).value().end_sequence;
  auto inside = journal.value()->reader(1);
  ASSERT_TRUE(inside.ok());
  expect_record(next_record(*inside.value()), 1);
  ASSERT_TRUE(journal.value()->remove_segments_before(200).ok());
  const std::uint64_t kept = journal.value()->locate(200).value().base;
  ASSERT_GT(kept, first_end);  // the segment after the first one is gone as well

  EXPECT_EQ(journal.value()->reader(1).status().code(), ErrorCode::not_found);
  EXPECT_EQ(journal.value()->reader(kept - 1).status().code(), ErrorCode::not_found);
  auto from_kept = journal.value()->reader(kept);
  ASSERT_TRUE(from_kept.ok());
  expect_record(next_record(*from_kept.value()), kept);
  // The open file still reads to its end; the next segment it needs is gone.
  Status stopped;
  while (stopped.ok()) {
    const auto record = inside.value()->next();
    if (!record.ok()) stopped = record.status();
    ASSERT_TRUE(!record.ok() || record.value().has_value());
  }
  EXPECT_EQ(stopped.code(), ErrorCode::not_found) << stopped.to_string();
  EXPECT_LT(inside.value()->position(), kept);
}

TYPED_TEST(ReaderTest, ClosingTheJournalEndsATailingWait) {
  auto journal = this->open(kSmall);
  ASSERT_TRUE(journal.ok());
  auto reader = journal.value()->reader(1);
  ASSERT_TRUE(reader.ok());
  ASSERT_TRUE(journal.value()->close().ok());
  const auto record = reader.value()->next(soon());
  ASSERT_FALSE(record.ok());
  EXPECT_EQ(record.status().code(), ErrorCode::failed);
}

// ---- durability (FaultBackend) ------------------------------------------------------------------

// Records each file's reads and read-ahead hints, for one reader at a time (the journal's writer
// closes its files through it too, hence the lock).
class HintRecorder final : public test::ForwardingBackend {
 public:
  struct Range {
    std::uint64_t begin, end;
    std::uint64_t hinted_end = 0;  // for a read: how far hints had reached when it was made
  };
  struct File {
    std::vector<Range> reads, hints;
    std::uint64_t hinted_beyond_reads = 0;  // hinted bytes not ahead of the last read, or too far
  };
  explicit HintRecorder(std::uint64_t window) : ForwardingBackend(make_posix_backend()), window_(window) {}

  Result<FileId> open(const std::string& path, OpenMode mode) override {
    auto file = ForwardingBackend::open(path, mode);
    std::lock_guard lock(mutex_);
    if (file.ok() && mode == OpenMode::read_only) current_[file.value()] = &files_.emplace_back();
    return file;
  }
  Status close(FileId file) override {
    {
      std::lock_guard lock(mutex_);
      current_.erase(file);
    }
    return ForwardingBackend::close(file);
  }
  Result<std::size_t> read(FileId file, std::uint64_t offset, std::span<std::byte> out) override {
    auto n = ForwardingBackend::read(file, offset, out);
    std::lock_guard lock(mutex_);
    if (const auto open = current_.find(file); n.ok() && open != current_.end()) {
      File& f = *open->second;
      f.reads.push_back({offset, offset + n.value(), f.hints.empty() ? 0 : f.hints.back().end});
    }
    return n;
  }
  void read_ahead(FileId file, std::uint64_t offset, std::uint64_t bytes) override {
    {
      std::lock_guard lock(mutex_);
      const auto open = current_.find(file);
      ASSERT_NE(open, current_.end()) << "a hint for a file no reader has open";
      File& f = *open->second;
      const std::uint64_t read_end = f.reads.empty() ? 0 : f.reads.back().end;
      if (offset < read_end || offset + bytes > read_end + window_) f.hinted_beyond_reads += bytes;
      f.hints.push_back({offset, offset + bytes});
    }
    ForwardingBackend::read_ahead(file, offset, bytes);
  }
  // Forgets what was recorded, and the files open now with it.
  void clear() {
    std::lock_guard lock(mutex_);
    files_.clear();
    current_.clear();
  }
  // What was recorded: read once the journal is done with the files (no lock).
  std::deque<File> files_;

 private:
  const std::uint64_t window_;
  std::mutex mutex_;
  std::map<FileId, File*> current_;
};

// A scan asks the disk for the chunks ahead of the one it reads, each byte once and never past
// what the segment has written, so that by the time it reads a chunk the disk was asked for it
// already. A reader with small chunks (they jump from record to record), or one reading a record
// from the middle of a segment, asks for nothing ahead.
TEST(ReaderReadAhead, AScanHasTheDiskReadTheChunksAheadOfItAndAJumpDoesNot) {
  test::TempDirectory dir;
  // No hash chain: its thread reads sealed segments through the backend too, and only the
  // readers under test should.
  const Options options{.segment_bytes_max = 1u << 20,
                        .record_bytes_max = 1024,
                        .commit_bytes_max = 64u << 10,
                        .index_interval_bytes = 16u << 10,
                        .read_chunk_bytes = 64u << 10,
                        .hash_chain = false};
  const std::uint64_t window = 4 * options.read_chunk_bytes;  // Reader::kReadAheadChunks chunks
  auto recorder = std::make_shared<HintRecorder>(window);
  auto journal = Journal::open(dir.path(), options, recorder);
  ASSERT_TRUE(journal.ok()) << journal.status().to_string();
  const std::uint64_t last = append_varied(*journal.value(), 0, 15000);
  ASSERT_TRUE(journal.value()->wait_durable(last, soon()).ok());
  ASSERT_GE(locate_all(*journal.value(), last).back().base, 2u) << "the log should span segments";

  recorder->clear();  // the open's recovery read some
  auto reader = journal.value()->reader(1);
  ASSERT_TRUE(reader.ok());
  for (std::uint64_t s = 1; s <= last; ++s) expect_record(next_record(*reader.value()), s);
  std::size_t scanned = 0;  // segments read in more than one chunk
  for (const HintRecorder::File& file : recorder->files_) {
    if (file.reads.size() <= 2) continue;  // the header and one chunk: the last segment's little
    ++scanned;
    ASSERT_FALSE(file.hints.empty());
    EXPECT_EQ(file.hinted_beyond_reads, 0u);
    for (std::size_t i = 1; i < file.hints.size(); ++i) {
      EXPECT_EQ(file.hints[i].begin, file.hints[i - 1].end) << "hints follow on, each byte once";
    }
    EXPECT_LE(file.hints.back().end, file.reads.back().end) << "nothing hinted past what was written";
    // Every read after the first chunk's was hinted before it was made (reads[0] is the segment
    // header; a read may start a little before the hints, again at a record the chunk before cut).
    for (const HintRecorder::Range& read : std::span(file.reads).subspan(2)) {
      EXPECT_LE(read.end, read.hinted_end) << read.begin;
    }
  }
  EXPECT_GE(scanned, 2u);
  reader.value().reset();

  recorder->clear();
  auto small = journal.value()->reader(1, 4096);
  ASSERT_TRUE(small.ok());
  for (std::uint64_t s = 1; s <= last; ++s) expect_record(next_record(*small.value()), s);
  small.value().reset();
  ASSERT_GE(recorder->files_.size(), 2u);
  for (const HintRecorder::File& file : recorder->files_) EXPECT_TRUE(file.hints.empty());

  // One record from an index entry in the middle of the first segment.
  recorder->clear();
  const std::uint64_t middle = locate_all(*journal.value(), last)[last / 8].start_sequence + 1;
  auto jump = journal.value()->reader(middle);
  ASSERT_TRUE(jump.ok());
  expect_record(next_record(*jump.value()), middle);
  ASSERT_EQ(recorder->files_.size(), 1u);
  EXPECT_TRUE(recorder->files_.front().hints.empty());
}

// Records whose sync failed are in the file, readable bytes and all, and the journal counts them
// as written (interval mode writes first and syncs later), but they were never acknowledged: a
// reader must not hand them out.
TEST(ReaderFaults, NeverReturnsARecordThatIsNotDurable) {
  auto io = std::make_shared<FaultBackend>(7);
  Options options = kSmall;
  options.durability = Durability::interval;
  options.sync_interval = 1ms;
  auto journal = Journal::open("/journal", options, io);
  ASSERT_TRUE(journal.ok());
  ASSERT_EQ(append_varied(*journal.value(), 0, 5), 5u);
  ASSERT_TRUE(journal.value()->wait_durable(5, soon()).ok());
  // For good: the segment preparer's own sync, on its thread, may be the first to fail.
  io->fail_sync(1, EIO, /*persistent=*/true);
  // One batch, hence one write before the failing sync (separate appends could meet the failure
  // halfway).
  const std::vector<std::byte> payload(100, std::byte{0x77});
  const std::vector<RecordInput> batch(5, RecordInput{.stream_id = 5, .payload = payload});
  ASSERT_EQ(journal.value()->append(batch).value().last, 10u);
  const Status failed = journal.value()->wait_durable(10, soon());
  ASSERT_FALSE(failed.ok());
  ASSERT_NE(failed.code(), ErrorCode::timed_out);
  ASSERT_EQ(journal.value()->durable_sequence(), 5u);
  const auto written = journal.value()->locate(10);
  ASSERT_TRUE(written.ok());
  EXPECT_EQ(written.value().end_sequence, 11u);  // written, in the file

  auto reader = journal.value()->reader(1);
  ASSERT_TRUE(reader.ok());
  for (std::uint64_t s = 1; s <= 5; ++s) expect_record(next_record(*reader.value()), s);
  const auto end = reader.value()->next();
  ASSERT_TRUE(end.ok());
  EXPECT_FALSE(end.value().has_value());
  // Tailing ends with the journal's error, not a timeout: nothing more will become durable.
  const auto tail = reader.value()->next(soon());
  ASSERT_FALSE(tail.ok());
  EXPECT_EQ(tail.status().to_string(), failed.to_string());
  // read() is a Reader too.
  EXPECT_EQ(journal.value()->read(1, 100).value().size(), 5u);
}

// ---- the index alone ----------------------------------------------------------------------------

TEST(SegmentIndex, MarksTheFirstRecordAndEachRecordHoldingABoundary) {
  constexpr std::uint64_t kInterval = 1024;
  IndexMarker marker(kSegmentHeaderBytes, kInterval);
  SegmentIndex index;
  std::uint64_t at = kSegmentHeaderBytes;
  std::uint64_t sequence = 1;
  for (const std::uint64_t bytes : {400, 400, 400, 2048, 8, 1016, 1024}) {
    if (marker.due(at, bytes)) index.add({sequence, at});
    at += bytes;
    ++sequence;
  }
  // Boundaries at header + 0, 1024, 2048, 3072, 4096, 5120: records 1 (0), 3 (800..1200),
  // 4 (1200..3248 holds 2048 and 3072), 6 (3256..4272), 7 (4272..5296).
  const std::vector<std::uint64_t> expected = {1, 3, 4, 6, 7};
  ASSERT_EQ(index.entries().size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(index.entries()[i].sequence, expected[i]);
  EXPECT_FALSE(index.floor(0).has_value());
  EXPECT_EQ(index.floor(2).value().sequence, 1u);
  EXPECT_EQ(index.floor(5).value().sequence, 4u);
  EXPECT_EQ(index.floor(99).value().sequence, 7u);
  index.drop_from(6);
  EXPECT_EQ(index.floor(99).value().sequence, 4u);
}

// ---- read-only journals and inspection ------------------------------------------------------

using ReadOnly = test::JournalFixture<PosixBackend>;

// Beside a writer that holds the lock: every record from everywhere, then tailing across rollovers.
TEST_F(ReadOnly, ReadsBesideTheWriterAndFollowsWhatItAppends) {
  annal::test::Watchdog watchdog("read-only tailing");
  auto writer = open(kSmall);
  ASSERT_TRUE(writer.ok());
  const std::uint64_t first = append_varied(*writer.value(), 0, 200);
  ASSERT_TRUE(writer.value()->wait_durable(first, soon()).ok());
  auto reading = Journal::open_read_only(dir_.path(), kSmall);
  ASSERT_TRUE(reading.ok()) << reading.status().to_string();
  ASSERT_EQ(reading.value()->last_sequence(), first);
  EXPECT_EQ(reading.value()->durable_sequence(), first);  // the writer told it, in LOCK
  expect_reads_from_everywhere(*reading.value(), first);
  EXPECT_EQ(reading.value()->append({}).code(), ErrorCode::invalid_argument);

  auto tail = reading.value()->reader(first + 1);
  ASSERT_TRUE(tail.ok());
  std::thread appender([&] { append_varied(*writer.value(), 200, 300); });
  for (std::uint64_t sequence = first + 1; sequence <= 500; ++sequence) {
    const auto record = tail.value()->next(soon());
    ASSERT_TRUE(record.ok()) << record.status().to_string();
    expect_record(record.value(), sequence);
  }
  appender.join();
  EXPECT_EQ(tail.value()->next(Journal::Clock::now() + 50ms).code(), ErrorCode::timed_out);
}

// A round the writer has written but not synced is in the files; a power cut could still take it
// back, so readers beside the writer do not show it until the writer says it is durable (here at
// close: the interval is an hour). With no writer holding the directory, the files are the truth.
TEST_F(ReadOnly, BesideALiveWriterShowsOnlyWhatItAcknowledgedDurable) {
  annal::test::Watchdog watchdog("read-only durable cap");
  Options hourly = kSmall;
  hourly.durability = Durability::interval;
  hourly.sync_interval = std::chrono::hours(1);
  auto writer = open(hourly);
  ASSERT_TRUE(writer.ok());
  const std::uint64_t last = append_varied(*writer.value(), 0, 20);
  // Wait for the writer to write the round (it does at once; only the sync waits for the hour).
  const auto deadline = soon();
  for (;;) {
    const auto seen = inspect_directory(dir_.path(), false);
    ASSERT_TRUE(seen.ok()) << seen.status().to_string();
    if (seen.value().last_sequence == last) break;
    ASSERT_LT(Journal::Clock::now(), deadline) << "the writer never wrote the round";
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_EQ(writer.value()->durable_sequence(), 0u);

  auto reading = Journal::open_read_only(dir_.path(), kSmall);
  ASSERT_TRUE(reading.ok()) << reading.status().to_string();
  EXPECT_EQ(reading.value()->last_sequence(), last);  // in the files
  EXPECT_EQ(reading.value()->durable_sequence(), 0u);  // but not acknowledged
  auto tail = reading.value()->reader(kFirstSequence);
  ASSERT_TRUE(tail.ok());
  const auto none = tail.value()->next();
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none.value().has_value());
  EXPECT_EQ(tail.value()->next(Journal::Clock::now() + 100ms).code(), ErrorCode::timed_out);
  EXPECT_EQ(reading.value()->wait_durable(1, Journal::Clock::now() + 50ms).code(), ErrorCode::timed_out);

  ASSERT_TRUE(writer.value()->close().ok());  // syncs everything and lets the directory go
  for (std::uint64_t sequence = kFirstSequence; sequence <= last; ++sequence) {
    const auto record = tail.value()->next(soon());
    ASSERT_TRUE(record.ok()) << record.status().to_string();
    expect_record(record.value(), sequence);
  }
  EXPECT_EQ(reading.value()->durable_sequence(), last);
}

TEST_F(ReadOnly, InspectionListsSegmentsAndNamesDamageWithoutRepairingIt) {
  std::uint64_t last = 0;
  {
    auto writer = open(kSmall);
    ASSERT_TRUE(writer.ok());
    last = append_varied(*writer.value(), 0, 300);
    ASSERT_TRUE(writer.value()->close().ok());
  }
  auto sound = inspect_directory(dir_.path(), true);
  ASSERT_TRUE(sound.ok()) << sound.status().to_string();
  EXPECT_TRUE(sound.value().sound());
  EXPECT_EQ(sound.value().first_sequence, 1u);
  EXPECT_EQ(sound.value().last_sequence, last);
  ASSERT_GT(sound.value().segments.size(), 3u);
  for (std::size_t i = 1; i < sound.value().segments.size(); ++i) {
    EXPECT_EQ(sound.value().segments[i].base, sound.value().segments[i - 1].end_sequence);
  }
  EXPECT_TRUE(sound.value().segments.front().verified);
  const auto quick = inspect_directory(dir_.path(), false);
  ASSERT_TRUE(quick.ok());
  EXPECT_FALSE(quick.value().segments.front().verified);  // taken from its index file
  EXPECT_EQ(quick.value().last_sequence, last);

  // One flipped byte in the second segment's first record.
  const SegmentReport& damaged = sound.value().segments[1];
  const std::string path = dir_.path() + "/" + damaged.file;
  const std::uintmax_t size_before = std::filesystem::file_size(path);
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(kSegmentHeaderBytes + kRecordHeaderBytes + 2));
    f.put('\x5a');
  }
  const auto found = inspect_directory(dir_.path(), true);
  ASSERT_TRUE(found.ok());
  ASSERT_EQ(found.value().problems.size(), 2u);  // the damage, and the gap it leaves before the next segment
  EXPECT_NE(found.value().problems[0].find(damaged.file), std::string::npos) << found.value().problems[0];
  EXPECT_NE(found.value().problems[0].find("offset " + std::to_string(kSegmentHeaderBytes)), std::string::npos)
      << found.value().problems[0];
  EXPECT_NE(found.value().problems[0].find("sequence " + std::to_string(damaged.base)), std::string::npos);
  EXPECT_EQ(found.value().segments[1].health, SegmentHealth::corrupt);
  EXPECT_EQ(std::filesystem::file_size(path), size_before);  // nothing was repaired
  // Opening trusts the sealed segment's index file, as a writable open does; reading verifies.
  auto reading = Journal::open_read_only(dir_.path(), kSmall);
  ASSERT_TRUE(reading.ok());
  EXPECT_EQ(reading.value()->last_sequence(), last);
  auto reader = reading.value()->reader(damaged.base - 1);
  ASSERT_TRUE(reader.ok());
  ASSERT_TRUE(reader.value()->next().ok());
  const auto bad = reader.value()->next();
  ASSERT_EQ(bad.code(), ErrorCode::corruption);
  EXPECT_NE(bad.status().message().find(damaged.file), std::string::npos) << bad.status().to_string();
}

}  // namespace
}  // namespace annal::journal
