#include "annal/journal/journal.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "gated_backend.h"
#include "annal/journal/chain.h"
#include "eventually.h"
#include "journal_fixture.h"
#include "test_cipher.h"
#include "watchdog.h"

namespace annal::journal {
namespace {

using namespace std::chrono_literals;

using test::payload_for;
using test::soon;
using test::TempDirectory;

// Appends `count` single-record batches to stream `stream`, versions from `first_version`.
std::vector<Receipt> append_events(Journal& journal, std::uint64_t stream, std::uint64_t first_version,
                                   std::uint64_t count) {
  std::vector<Receipt> receipts;
  for (std::uint64_t v = first_version; v < first_version + count; ++v) {
    const auto payload = payload_for(stream, v);
    const RecordInput record{.stream_id = stream, .stream_version = v, .type = 3, .payload = payload};
    auto receipt = journal.append(std::span(&record, 1));
    EXPECT_TRUE(receipt.ok()) << receipt.status().to_string();
    if (receipt.ok()) receipts.push_back(receipt.value());
  }
  return receipts;
}

void expect_records(Journal& journal, std::uint64_t first, std::uint64_t last) {
  const auto records = journal.read(first, last - first + 1);
  ASSERT_TRUE(records.ok()) << records.status().to_string();
  ASSERT_EQ(records.value().size(), last - first + 1);
  for (std::uint64_t i = 0; i < records.value().size(); ++i) {
    const Record& record = records.value()[i];
    ASSERT_EQ(record.header.sequence, first + i);
    ASSERT_EQ(record.payload, payload_for(record.header.stream_id, record.header.stream_version));
  }
}

template <class Backend>
class JournalTest : public test::JournalFixture<Backend> {};
TYPED_TEST_SUITE(JournalTest, test::Backends, test::BackendName);

TYPED_TEST(JournalTest, AppendsGetContiguousSequencesFromOneAndBecomeDurable) {
  auto journal = this->open();
  ASSERT_TRUE(journal.ok()) << journal.status().to_string();
  const auto receipts = append_events(*journal.value(), 7, 0, 100);
  ASSERT_EQ(receipts.front().first, 1u);
  ASSERT_EQ(receipts.back().last, 100u);
  ASSERT_TRUE(journal.value()->wait_durable(100, soon()).ok());
  EXPECT_EQ(journal.value()->durable_sequence(), 100u);
  expect_records(*journal.value(), 1, 100);
  expect_records(*journal.value(), 42, 60);
}

TYPED_TEST(JournalTest, ABatchIsContiguousAndMarkedAtItsEnd) {
  auto journal = this->open();
  ASSERT_TRUE(journal.ok());
  std::vector<std::vector<std::byte>> payloads;
  std::vector<RecordInput> batch;
  for (std::uint64_t v = 0; v < 5; ++v) payloads.push_back(payload_for(9, v));
  for (std::uint64_t v = 0; v < 5; ++v) batch.push_back({.stream_id = 9, .stream_version = v, .payload = payloads[v]});
  const auto receipt = journal.value()->append(batch);
  ASSERT_TRUE(receipt.ok());
  EXPECT_EQ(receipt.value().first, 1u);
  EXPECT_EQ(receipt.value().last, 5u);
  ASSERT_TRUE(journal.value()->wait_durable(5, soon()).ok());
  const auto records = journal.value()->read(1, 10);
  ASSERT_TRUE(records.ok());
  ASSERT_EQ(records.value().size(), 5u);
  for (std::size_t i = 0; i < 5; ++i) {
    EXPECT_EQ((records.value()[i].header.flags & kFlagBatchEnd) != 0, i == 4);
  }
}

TYPED_TEST(JournalTest, ReopenRecoversEverythingAndContinuesTheSequence) {
  {
    auto journal = this->open();
    ASSERT_TRUE(journal.ok());
    append_events(*journal.value(), 1, 0, 50);
    ASSERT_TRUE(journal.value()->close().ok());
  }
  auto journal = this->open();
  ASSERT_TRUE(journal.ok()) << journal.status().to_string();
  EXPECT_EQ(journal.value()->durable_sequence(), 50u);
  EXPECT_TRUE(journal.value()->recovery().message.empty());
  const auto more = append_events(*journal.value(), 1, 50, 10);
  EXPECT_EQ(more.front().first, 51u);
  ASSERT_TRUE(journal.value()->wait_durable(60, soon()).ok());
  expect_records(*journal.value(), 1, 60);
}

// Appends staged in one burst carry no proof of each other's durability (each record proves only
// what was durable when it was staged); the mark a clean close leaves does. So damage to the first
// of them is reported, not mistaken for a torn tail and cut off with everything after it.
TYPED_TEST(JournalTest, DamageBeforeACleanCloseIsCorruptionNotATornTail) {
  {
    auto journal = this->open();
    ASSERT_TRUE(journal.ok());
    std::vector<std::vector<std::byte>> payloads;
    std::vector<RecordInput> batch;
    for (std::uint64_t v = 0; v < 40; ++v) payloads.push_back(payload_for(1, v, 100));
    for (std::uint64_t v = 0; v < 40; ++v) {
      batch.assign(1, {.stream_id = 1, .stream_version = v, .payload = payloads[v]});
      ASSERT_TRUE(journal.value()->append(batch).ok());
    }
    ASSERT_TRUE(journal.value()->close().ok());
  }
  auto io = this->backend();
  const std::string segment = this->dir_.path() + "/" + segment_file_name(kFirstSequence);
  const auto file = io->open(segment, OpenMode::read_write);
  ASSERT_TRUE(file.ok());
  std::array<std::byte, 1> byte{};
  const std::uint64_t at = kSegmentHeaderBytes + kRecordHeaderBytes + 3;  // in the first payload
  ASSERT_TRUE(io->read(file.value(), at, byte).ok());
  byte[0] ^= std::byte{0x20};
  ASSERT_TRUE(io->write(file.value(), at, byte).ok());
  ASSERT_TRUE(io->sync(file.value()).ok());
  ASSERT_TRUE(io->close(file.value()).ok());
  const auto reopened = this->open();
  ASSERT_EQ(reopened.code(), ErrorCode::corruption) << "39 acknowledged records would have been cut off";
  EXPECT_NE(reopened.status().message().find("sequence 1"), std::string::npos) << reopened.status().to_string();
}

TYPED_TEST(JournalTest, ASecondOpenOfTheDirectoryIsRefused) {
  auto first = this->open();
  ASSERT_TRUE(first.ok());
  auto second = this->open();
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), ErrorCode::locked);
}

TYPED_TEST(JournalTest, RejectsEmptyBatchesOversizedRecordsAndBadOptions) {
  auto journal = this->open({.record_bytes_max = 256});
  ASSERT_TRUE(journal.ok());
  EXPECT_EQ(journal.value()->append({}).status().code(), ErrorCode::invalid_argument);
  const std::vector<std::byte> big(300);
  const RecordInput record{.payload = big};
  const auto rejected = journal.value()->append(std::span(&record, 1));
  ASSERT_FALSE(rejected.ok());
  EXPECT_NE(rejected.status().message().find("exceeds record_bytes_max"), std::string::npos);
  EXPECT_EQ(journal.value()->last_sequence(), 0u);
  journal.value().reset();
  EXPECT_EQ(this->open({.segment_bytes_max = 1000}).status().code(), ErrorCode::invalid_argument);
}

TYPED_TEST(JournalTest, RollsOverSegmentsReadsAcrossThemAndRemovesOldOnes) {
  const Options options{.segment_bytes_max = 16384, .record_bytes_max = 1024, .commit_bytes_max = 4096};
  {
    auto journal = this->open(options);
    ASSERT_TRUE(journal.ok());
    append_events(*journal.value(), 3, 0, 500);  // 500 x 88 B: about four segments
    ASSERT_TRUE(journal.value()->wait_durable(500, soon()).ok());
    expect_records(*journal.value(), 1, 500);
    ASSERT_TRUE(journal.value()->close().ok());
  }
  auto journal = this->open(options);
  ASSERT_TRUE(journal.ok()) << journal.status().to_string();
  EXPECT_GE(journal.value()->recovery().segments, 4u);
  expect_records(*journal.value(), 1, 500);
  ASSERT_TRUE(journal.value()->remove_segments_before(300).ok());
  EXPECT_EQ(journal.value()->read(1, 1).status().code(), ErrorCode::not_found);
  expect_records(*journal.value(), 300, 500);
}

TYPED_TEST(JournalTest, EveryDurabilityModeReachesDurable) {
  for (const Durability mode : {Durability::none, Durability::group_commit, Durability::interval}) {
    TempDirectory dir;
    auto journal = Journal::open(dir.path(), {.durability = mode, .sync_interval = 2ms}, this->backend());
    ASSERT_TRUE(journal.ok());
    append_events(*journal.value(), 1, 0, 20);
    EXPECT_TRUE(journal.value()->wait_durable(20, soon()).ok()) << static_cast<int>(mode);
  }
}

TYPED_TEST(JournalTest, ManyThreadsAppendingAtOnceGetDistinctContiguousSequences) {
  auto journal = this->open();
  ASSERT_TRUE(journal.ok());
  std::vector<std::thread> threads;
  for (std::uint64_t t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (const Receipt& r : append_events(*journal.value(), t, 0, 200)) {
        ASSERT_TRUE(journal.value()->wait_durable(r.last, soon()).ok());
      }
    });
  }
  for (auto& thread : threads) thread.join();
  const auto records = journal.value()->read(1, 1000);
  ASSERT_TRUE(records.ok());
  ASSERT_EQ(records.value().size(), 800u);
  std::map<std::uint64_t, std::uint64_t> next_version;
  for (std::size_t i = 0; i < 800; ++i) {
    const Record& r = records.value()[i];
    ASSERT_EQ(r.header.sequence, i + 1);
    ASSERT_EQ(r.header.stream_version, next_version[r.header.stream_id]++);  // per-thread order kept
  }
}

// ---- faults (FaultBackend) ----------------------------------------------------------------------

constexpr const char* kDir = "/journal";

// The segment files of `directory`, oldest first.
std::vector<std::string> segment_files(IoBackend& io, const std::string& directory) {
  auto names = io.list(directory);
  EXPECT_TRUE(names.ok());
  std::vector<std::string> out;
  for (const std::string& name : names.ok() ? names.value() : std::vector<std::string>{}) {
    if (parse_segment_file_name(name)) out.push_back(directory + "/" + name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

const Options kSmallSegments{.segment_bytes_max = 16384, .record_bytes_max = 1024, .commit_bytes_max = 4096};

// The durable notice in LOCK proves what the log held: a log that ends before it lost
// acknowledged records, and the next open says so instead of giving their sequences away.
TYPED_TEST(JournalTest, ALogThatLostAcknowledgedRecordsIsRefusedUntilTheLossIsAccepted) {
  std::uint64_t last = 0;
  {
    auto journal = this->open(kSmallSegments);
    ASSERT_TRUE(journal.ok());
    last = append_events(*journal.value(), 1, 0, 1000).back().last;
    ASSERT_TRUE(journal.value()->close().ok());
  }
  const auto segments = segment_files(*this->backend(), this->dir_.path());
  ASSERT_GE(segments.size(), 3u);
  const std::uint64_t lost_from = *parse_segment_file_name(segments.back().substr(segments.back().rfind('/') + 1));
  ASSERT_TRUE(this->backend()->remove(segments.back()).ok());

  for (int attempt = 0; attempt < 2; ++attempt) {  // a refusal changes nothing that proves the loss
    const auto refused = this->open(kSmallSegments);
    ASSERT_EQ(refused.code(), ErrorCode::corruption);
    EXPECT_NE(refused.status().message().find("acknowledged events " + std::to_string(lost_from) + ".." +
                                              std::to_string(last) + " are missing"),
              std::string::npos)
        << refused.status().to_string();
  }
  if constexpr (!std::is_same_v<TypeParam, FaultBackend>) {
    const auto reading = Journal::open_read_only(this->dir_.path(), kSmallSegments);
    ASSERT_TRUE(reading.ok());
    EXPECT_EQ(reading.value()->recovery().lost_first, lost_from);
    EXPECT_EQ(reading.value()->recovery().lost_last, last);
  }

  Options accepting = kSmallSegments;
  accepting.accept_data_loss = true;
  {
    auto journal = this->open(accepting);
    ASSERT_TRUE(journal.ok()) << journal.status().to_string();
    EXPECT_EQ(journal.value()->recovery().lost_first, lost_from);
    EXPECT_EQ(journal.value()->last_sequence(), lost_from - 1);
    const auto next = append_events(*journal.value(), 2, 0, 1);
    ASSERT_EQ(next.size(), 1u);
    EXPECT_EQ(next.front().first, lost_from);  // given away, knowingly
    ASSERT_TRUE(journal.value()->close().ok());
  }
  const auto names = this->backend()->list(this->dir_.path());
  ASSERT_TRUE(names.ok());
  const std::string note = "data-loss-" + std::to_string(lost_from) + "-" + std::to_string(last) + ".txt";
  EXPECT_NE(std::find(names.value().begin(), names.value().end(), note), names.value().end());
  auto again = this->open(kSmallSegments);  // the loss was accepted: the notice says so now
  ASSERT_TRUE(again.ok()) << again.status().to_string();
  EXPECT_TRUE(again.value()->recovery().data_loss.empty());
}

// Retention moves LOCK's floor before it removes a segment, so the log may start later; a segment
// removed below the floor by anything else is a loss.
TYPED_TEST(JournalTest, ASegmentRemovedBelowTheRetentionFloorIsALoss) {
  {
    auto journal = this->open(kSmallSegments);
    ASSERT_TRUE(journal.ok());
    append_events(*journal.value(), 1, 0, 1000);
    ASSERT_TRUE(journal.value()->remove_segments_before(300).ok());
    ASSERT_TRUE(journal.value()->close().ok());
  }
  auto segments = segment_files(*this->backend(), this->dir_.path());
  {
    auto journal = this->open(kSmallSegments);
    ASSERT_TRUE(journal.ok()) << journal.status().to_string();
    ASSERT_TRUE(journal.value()->close().ok());
  }
  ASSERT_TRUE(this->backend()->remove(segments.front()).ok());
  const auto refused = this->open(kSmallSegments);
  ASSERT_EQ(refused.code(), ErrorCode::corruption);
  EXPECT_NE(refused.status().message().find("retention floor"), std::string::npos) << refused.status().to_string();
}

// The caller's own proof (the engine's state snapshots) counts like the notice.
TYPED_TEST(JournalTest, TheCallersWitnessOfDurableRecordsIsHeard) {
  {
    auto journal = this->open(kSmallSegments);
    ASSERT_TRUE(journal.ok());
    append_events(*journal.value(), 1, 0, 10);
    ASSERT_TRUE(journal.value()->close().ok());
  }
  Options options = kSmallSegments;
  options.durable_witness = [](std::uint64_t last) -> std::optional<DurableWitness> {
    return DurableWitness{last + 5, "the caller's checkpoint"};
  };
  const auto refused = this->open(options);
  ASSERT_EQ(refused.code(), ErrorCode::corruption);
  EXPECT_NE(refused.status().message().find("the caller's checkpoint says 15 was durable"), std::string::npos)
      << refused.status().to_string();
  options.durable_witness = [](std::uint64_t) { return std::optional<DurableWitness>(); };
  EXPECT_TRUE(this->open(options).ok());
}

// A tool beside a writer whose retention removes segments meanwhile: retention raises the floor
// before it removes a segment, so a read-only open never takes the removal for a loss, and a
// segment removed between the listing and the scan is looked for again, not an error.
TEST(JournalReadOnly, BesideLiveRetentionSeesNoLossAndNoError) {
  annal::test::Watchdog watchdog("read-only opens beside retention");
  TempDirectory dir;
  auto writer = Journal::open(dir.path(), kSmallSegments);
  ASSERT_TRUE(writer.ok());
  std::atomic<int> trims{0};
  std::atomic<bool> stop{false};
  std::thread appender([&] {
    std::uint64_t version = 0;
    while (!stop.load()) {
      const auto receipts = append_events(*writer.value(), 1, version, 10);
      version += 10;
      if (receipts.size() != 10 || !writer.value()->wait_durable(receipts.back().last, soon()).ok()) return;
      if (writer.value()->remove_segments_before(receipts.back().last).ok()) trims.fetch_add(1);
    }
  });
  int opens = 0;
  while (trims.load() < 200 && opens < 100'000) {
    auto reading = Journal::open_read_only(dir.path(), kSmallSegments);
    ++opens;
    ASSERT_TRUE(reading.ok()) << reading.status().to_string();
    ASSERT_EQ(reading.value()->recovery().data_loss, "");
  }
  stop.store(true);
  appender.join();
  EXPECT_GE(trims.load(), 200) << opens << " opens";
  EXPECT_TRUE(writer.value()->close().ok());
}

// The names of this process's threads, as top -H, perf and gdb show them.
std::vector<std::string> thread_names() {
  std::vector<std::string> names;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    if (std::getline(comm, name)) names.push_back(name);
  }
  return names;
}

// Its threads say what they are (docs/journal.md: the chain thread yields its core between
// pieces of work, and a profile has to tell it from the writer), and are gone after close.
TEST(JournalThreads, AreNamedForWhatTheyDoAndEndWithTheJournal) {
  TempDirectory dir;
  auto journal = Journal::open(dir.path(), kSmallSegments);
  ASSERT_TRUE(journal.ok()) << journal.status().to_string();
  const auto names = thread_names();
  for (const std::string expected : {"annal-writer", "annal-prepare", "annal-chain"}) {
    EXPECT_EQ(std::count(names.begin(), names.end(), expected), 1) << expected;
  }
  ASSERT_TRUE(journal.value()->close().ok());
  journal.value().reset();
  // Joined; a thread that has exited may still be listed for a moment (the kernel clears its id
  // for pthread_join before it drops the task).
  EXPECT_TRUE(annal::test::eventually([] {
    const auto after = thread_names();
    return std::none_of(after.begin(), after.end(), [](const std::string& name) { return name.starts_with("annal-"); });
  }));
}

TEST(JournalFaults, AFailedSyncFailsThePendingAndEveryLaterAppend) {
  auto io = std::make_shared<FaultBackend>(3);
  auto journal = Journal::open(kDir, {}, io);
  ASSERT_TRUE(journal.ok());
  append_events(*journal.value(), 1, 0, 5);
  ASSERT_TRUE(journal.value()->wait_durable(5, soon()).ok());
  // For good: the segment preparer's own sync, on its thread, may be the first to fail.
  io->fail_sync(1, EIO, /*persistent=*/true);
  append_events(*journal.value(), 1, 5, 1);
  const Status waited = journal.value()->wait_durable(6, soon());
  EXPECT_EQ(waited.code(), ErrorCode::failed);
  EXPECT_NE(waited.message().find("fdatasync"), std::string::npos);
  EXPECT_EQ(journal.value()->durable_sequence(), 5u);
  const RecordInput record{.payload = {}};
  EXPECT_EQ(journal.value()->append(std::span(&record, 1)).status().code(), ErrorCode::failed);
}

TEST(JournalFaults, WaitingPastTheDeadlineTimesOutWithoutFailingTheJournal) {
  auto journal = Journal::open(kDir, {}, std::make_shared<FaultBackend>(3));
  ASSERT_TRUE(journal.ok());
  append_events(*journal.value(), 1, 0, 3);
  ASSERT_TRUE(journal.value()->wait_durable(3, soon()).ok());
  // Sequence 4 was never appended: the wait can only end at its deadline.
  const Status waited = journal.value()->wait_durable(4, Journal::Clock::now() + 20ms);
  EXPECT_EQ(waited.code(), ErrorCode::timed_out) << waited.to_string();
  append_events(*journal.value(), 1, 3, 1);
  EXPECT_TRUE(journal.value()->wait_durable(4, soon()).ok());
}

TEST(JournalFaults, WaitingOnAClosedJournalFailsAtOnce) {
  auto journal = Journal::open(kDir, {}, std::make_shared<FaultBackend>(3));
  ASSERT_TRUE(journal.ok());
  ASSERT_TRUE(journal.value()->close().ok());
  EXPECT_EQ(journal.value()->wait_durable(1, soon()).code(), ErrorCode::failed);
}

// close() while an append that must roll over waits for a buffer (the writer is held at its
// reap with every buffer staged or in flight): the append gives up, and the end marker close()
// writes goes where the log ends, not over the current segment's first record, which was
// acknowledged. The pauses only vary the interleaving; the checks hold for every one.
TEST(JournalFaults, CloseDuringARolloverWaitingForABufferMarksTheEndWhereTheLogEnds) {
  annal::test::Watchdog watchdog("close during a rollover");
  // 12 KiB segments hold 7 records of 1,048 bytes; two buffers (one write in flight).
  const Options options{.segment_bytes_max = 12 << 10, .record_bytes_max = 2048, .commit_bytes_max = 4096,
                        .writes_in_flight_max = 1};
  for (int round = 0; round < 12; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    const auto fault = std::make_shared<FaultBackend>(round + 1);
    const auto gated = std::make_shared<test::GatedBackend>(fault);
    auto opened = Journal::open(kDir, options, gated);
    ASSERT_TRUE(opened.ok()) << opened.status().to_string();
    Journal& journal = *opened.value();
    const auto append_one = [&](std::uint64_t version) {
      const auto payload = payload_for(1, version, 1000);
      const RecordInput record{.stream_id = 1, .stream_version = version, .payload = payload};
      return journal.append(std::span(&record, 1));
    };
    for (std::uint64_t v = 1; v <= 5; ++v) {
      const auto receipt = append_one(v);
      ASSERT_TRUE(receipt.ok() && journal.wait_durable(receipt.value().last, soon()).ok());
    }
    gated->hold();
    ASSERT_TRUE(append_one(6).ok());  // taken by the writer, which stops at the gate
    ASSERT_TRUE(gated->wait_until_stopped());
    ASSERT_TRUE(append_one(7).ok());  // staged in the other buffer: the segment is full after it
    // It waits for a buffer; it fails as closed, or, if the writer freed one before close() began,
    // goes into the next segment and is written before close() returns.
    bool rolled = false;
    std::thread rolling([&] {
      const auto receipt = append_one(8);
      rolled = receipt.ok();
      EXPECT_TRUE(rolled || receipt.code() == ErrorCode::failed) << receipt.status().to_string();
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(round % 4 * 5));
    std::thread closing([&] { EXPECT_TRUE(journal.close().ok()); });
    std::this_thread::sleep_for(std::chrono::milliseconds(round / 4 * 10));
    gated->release();
    closing.join();
    rolling.join();

    auto reopened = Journal::open(kDir, options, fault);
    ASSERT_TRUE(reopened.ok()) << reopened.status().to_string();
    const std::uint64_t last = rolled ? 8 : 7;
    EXPECT_EQ(reopened.value()->durable_sequence(), last);
    const auto records = reopened.value()->read(1, last);
    ASSERT_TRUE(records.ok()) << records.status().to_string();
    ASSERT_EQ(records.value().size(), last);
    for (const Record& record : records.value()) {
      EXPECT_EQ(record.payload, payload_for(1, record.header.stream_version, 1000));
    }
  }
}

// Payloads of 40 to 439 bytes, so that writes often cross 512-byte sectors and a power cut can
// tear them (small ones within one sector never tear).
std::vector<std::byte> torn_payload_for(std::uint64_t version) {
  return payload_for(1, version, 40 + version * 37 % 400);
}

// After a power cut and reopen: every acknowledged record is there, sequences contiguous from 1,
// each with its bytes, and the log ends on a whole batch (nothing unacknowledged half-visible).
void expect_intact_prefix(Journal& journal, std::uint64_t acknowledged) {
  const std::uint64_t recovered = journal.durable_sequence();
  ASSERT_GE(recovered, acknowledged);
  const auto records = journal.read(1, recovered);
  ASSERT_TRUE(records.ok()) << records.status().to_string();
  ASSERT_EQ(records.value().size(), recovered);
  for (std::uint64_t i = 0; i < recovered; ++i) {
    const Record& r = records.value()[i];
    ASSERT_EQ(r.header.sequence, i + 1);
    ASSERT_EQ(r.payload, torn_payload_for(r.header.stream_version));
  }
  if (recovered > 0) {
    ASSERT_NE(records.value().back().header.flags & kFlagBatchEnd, 0);
  }
}

// The k-th write or fdatasync fails (once, or for good) for every k over the first stretch of the
// journal's life, preparer and segment creation included: the journal stops acknowledging at the
// failure and fails every later append; after a power cut and reopen every acknowledged record is
// there and intact, contiguous from 1, ending on a whole batch.
TEST(JournalFaults, EveryFailedWriteOrSyncStopsTheJournalAndLosesNothingAcknowledged) {
  const Options options{.segment_bytes_max = 16384, .record_bytes_max = 1024, .commit_bytes_max = 4096};
  std::uint64_t failures_seen = 0;
  for (const bool sync : {false, true}) {
    for (const bool persistent : {false, true}) {
      // Each round writes its records and then the durable notice into LOCK (whose failure only
      // delays readers in other processes): 80 covers as many data writes as 40 did before it.
      for (std::uint64_t k = 1; k <= 80; ++k) {
        SCOPED_TRACE(std::string(sync ? "sync " : "write ") + std::to_string(k) + (persistent ? " for good" : " once"));
        auto io = std::make_shared<FaultBackend>(k);
        std::uint64_t acknowledged = 0;
        {
          auto journal = Journal::open(kDir, options, io);
          ASSERT_TRUE(journal.ok()) << journal.status().to_string();
          sync ? io->fail_sync(k, EIO, persistent) : io->fail_write(k, EIO, persistent);
          Status failure;
          for (std::uint64_t v = 0; v < 150 && failure.ok(); v += 2) {
            const auto first = torn_payload_for(v), second = torn_payload_for(v + 1);
            const RecordInput batch[] = {{.stream_id = 1, .stream_version = v, .payload = first},
                                         {.stream_id = 1, .stream_version = v + 1, .payload = second}};
            const auto receipt = journal.value()->append(batch);
            failure = receipt.ok() ? journal.value()->wait_durable(receipt.value().last, soon()) : receipt.status();
            if (failure.ok()) acknowledged = receipt.value().last;
          }
          if (!failure.ok()) {
            ++failures_seen;
            EXPECT_NE(failure.code(), ErrorCode::timed_out) << failure.to_string();
            EXPECT_EQ(journal.value()->durable_sequence(), acknowledged);
            const RecordInput more{.payload = {}};
            EXPECT_FALSE(journal.value()->append(std::span(&more, 1)).ok());  // fail-stop
          }
          (void)journal.value()->close();
          io->crash();
        }
        io->revive();
        auto journal = Journal::open(kDir, options, io);
        ASSERT_TRUE(journal.ok()) << journal.status().to_string();
        expect_intact_prefix(*journal.value(), acknowledged);
        if (HasFatalFailure()) return;
      }
    }
  }
  EXPECT_GT(failures_seen, 100u);  // most planned failures hit the journal, not only the preparer
}

TEST(JournalFaults, AFullDiskStopsAppendsAndAcknowledgesNothingMore) {
  auto io = std::make_shared<FaultBackend>(3);
  auto journal = Journal::open(kDir, {.segment_bytes_max = 16384, .record_bytes_max = 1024, .commit_bytes_max = 4096}, io);
  ASSERT_TRUE(journal.ok());
  io->set_space_limit(40000);  // room for two segments, not a third
  std::uint64_t durable = 0;
  Status failure;
  for (std::uint64_t v = 0; v < 2000 && failure.ok(); ++v) {
    const auto payload = payload_for(1, v);
    const RecordInput record{.stream_id = 1, .stream_version = v, .payload = payload};
    const auto receipt = journal.value()->append(std::span(&record, 1));
    if (!receipt.ok()) {
      failure = receipt.status();
      break;
    }
    failure = journal.value()->wait_durable(receipt.value().last, soon());
    if (failure.ok()) durable = receipt.value().last;
  }
  EXPECT_EQ(failure.code(), ErrorCode::no_space) << failure.to_string();
  EXPECT_EQ(journal.value()->durable_sequence(), durable);
  EXPECT_GT(durable, 100u);
}

// Power cut at an arbitrary moment: after reopening, every acknowledged record is there, in order,
// with its bytes, and appends that were not acknowledged are all there or all gone. Each mode
// (group commit or interval, buffered or direct I/O) gets a quarter of the seeds, half of them
// encrypted (test_cipher.h: each open seals under a salt of its own).
TEST(JournalFaults, SimulatedPowerLossKeepsEveryAcknowledgedRecord) {
  const char* configured = std::getenv("ANNAL_CRASH_SEEDS");
  const std::uint64_t seeds = configured != nullptr ? std::strtoull(configured, nullptr, 10) : 200;
  std::uint64_t repaired = 0;
  std::uint64_t sealed = 0;  // seeds whose reopened journal opened sealed records
  std::size_t chained = 0;
  for (std::uint64_t seed = 0; seed < seeds; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    auto io = std::make_shared<FaultBackend>(seed);
    // Interval mode leaves written-but-unsynced records for the power cut to tear.
    // Every other pair of seeds writes with direct I/O: block-aligned writes ended by padding.
    Options options{.durability = seed % 2 == 0 ? Durability::group_commit : Durability::interval,
                    .sync_interval = 1ms,
                    .direct_io = seed / 2 % 2 == 1,
                    .segment_bytes_max = 16384,
                    .record_bytes_max = 1024,
                    .commit_bytes_max = 4096};
    const bool encrypted = seed / 4 % 2 == 1;
    if (encrypted) options.cipher = std::make_shared<TestCipher>(test_key(), 1);
    std::uint64_t acknowledged = 0;
    {
      auto journal = Journal::open(kDir, options, io);
      ASSERT_TRUE(journal.ok());
      io->crash_before(1 + seed * 13 % 120);  // somewhere among the writer's writes and syncs
      for (std::uint64_t v = 0; v < 400; ++v) {
        std::vector<std::vector<std::byte>> payloads;
        std::vector<RecordInput> batch;
        const std::uint64_t size = 1 + (v + seed) % 3;
        for (std::uint64_t i = 0; i < size; ++i) payloads.push_back(torn_payload_for(v * 10 + i));
        for (std::uint64_t i = 0; i < size; ++i) {
          batch.push_back({.stream_id = 1, .stream_version = v * 10 + i, .payload = payloads[i]});
        }
        const auto receipt = journal.value()->append(batch);
        if (!receipt.ok()) break;  // the power is out
        // Wait for some appends, leave others in flight.
        if ((v + seed) % 4 != 0) {
          if (!journal.value()->wait_durable(receipt.value().last, soon()).ok()) break;
          acknowledged = receipt.value().last;
        }
      }
      io->crash();  // if the planned crash has not happened yet, it happens now
    }
    io->revive();
    if (encrypted) options.cipher = std::make_shared<TestCipher>(test_key(), 1);
    auto journal = Journal::open(kDir, options, io);
    ASSERT_TRUE(journal.ok()) << journal.status().to_string();
    repaired += !journal.value()->recovery().message.empty();
    sealed += encrypted && journal.value()->durable_sequence() > 0;
    expect_intact_prefix(*journal.value(), acknowledged);
    if (HasFatalFailure()) return;
    // The chain too: what the cut took of CHAIN (an entry torn or lost, the file itself) the open
    // set right, and its close chained every sealed segment.
    ASSERT_TRUE(journal.value()->close().ok());
    const auto chain = verify_chain(*io, kDir, {});
    ASSERT_TRUE(chain.ok()) << chain.status().to_string();
    ASSERT_TRUE(chain.value().sound()) << chain.value().problems.front();
    ASSERT_TRUE(chain.value().notes.empty()) << chain.value().notes.front();
    chained += chain.value().entries;
  }
  // The test is only worth its name if some power cuts did tear something.
  EXPECT_GT(repaired, 0u);
  EXPECT_GT(chained, 0u);
  EXPECT_GT(sealed, 0u);
}

// Durability::none acknowledges what reached the page cache, and a power cut may take any of it
// back in any order: the next open must find an intact prefix (synced segments whole) and open,
// neither refusing the loss as damage nor as lost acknowledged records. Every other seed encrypted.
TEST(JournalFaults, APowerCutUnderDurabilityNoneLeavesAnOpenableIntactPrefix) {
  const char* configured = std::getenv("ANNAL_CRASH_SEEDS");
  const std::uint64_t seeds = configured != nullptr ? std::strtoull(configured, nullptr, 10) : 100;
  std::uint64_t lost_some = 0;
  for (std::uint64_t seed = 0; seed < seeds; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    auto io = std::make_shared<FaultBackend>(seed);
    Options options{.durability = Durability::none,
                    .segment_bytes_max = 16384,
                    .record_bytes_max = 1024,
                    .commit_bytes_max = 4096};
    const bool encrypted = seed % 2 == 1;
    if (encrypted) options.cipher = std::make_shared<TestCipher>(test_key(), 1);
    std::uint64_t written = 0;
    {
      auto journal = Journal::open(kDir, options, io);
      ASSERT_TRUE(journal.ok());
      io->crash_before(1 + seed * 13 % 120);
      for (std::uint64_t v = 0; v < 400; ++v) {
        const auto payload = torn_payload_for(v);
        const RecordInput record{.stream_id = 1, .stream_version = v, .payload = payload};
        const auto receipt = journal.value()->append(std::span(&record, 1));
        if (!receipt.ok()) break;
        if (v % 3 == 0 && journal.value()->wait_durable(receipt.value().last, soon()).ok()) {
          written = receipt.value().last;
        }
      }
      io->crash();
    }
    io->revive();
    if (encrypted) options.cipher = std::make_shared<TestCipher>(test_key(), 1);
    auto journal = Journal::open(kDir, options, io);
    ASSERT_TRUE(journal.ok()) << journal.status().to_string();
    lost_some += journal.value()->durable_sequence() < written;
    expect_intact_prefix(*journal.value(), 0);
    if (HasFatalFailure()) return;
  }
  EXPECT_GT(lost_some, 0u) << "no power cut took back anything written: the test tests nothing";
}

}  // namespace
}  // namespace annal::journal
