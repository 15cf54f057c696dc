// The hash chain (chain.h): every sealed segment is chained, and an edit of the log, made by
// someone who recomputed every CRC32C, is found and named: in a sealed segment by the chain alone;
// anywhere, given a head taken earlier; in CHAIN itself, given the chain key.
#include "annal/journal/chain.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>

#include "annal/journal/format.h"
#include "chain_file.h"
#include "forwarding_backend.h"
#include "journal_fixture.h"
#include "posix_backend.h"

namespace annal::journal::test {
namespace {

namespace fs = std::filesystem;

const Options kSmallSegments{.segment_bytes_max = 16384, .record_bytes_max = 1024, .commit_bytes_max = 4096};
constexpr std::uint64_t kRecords = 600;  // some 5 segments of 16 KiB

std::vector<std::byte> read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(bytes.size());
  std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

void write_file(const fs::path& path, std::span<const std::byte> bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// A record as an attacker holding the files sees it.
struct Plain {
  RecordHeader header;
  std::vector<std::byte> payload;
};
struct PlainSegment {
  SegmentHeader header;
  std::vector<Plain> records;
};

std::vector<fs::path> segment_files(const std::string& directory) {
  std::vector<fs::path> out;
  for (const auto& entry : fs::directory_iterator(directory)) {
    if (parse_segment_file_name(entry.path().filename().string())) out.push_back(entry.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<PlainSegment> read_log(const std::string& directory) {
  std::vector<PlainSegment> log;
  for (const fs::path& path : segment_files(directory)) {
    const std::vector<std::byte> bytes = read_file(path);
    auto header = decode_segment_header(bytes, path.string());
    EXPECT_TRUE(header.ok()) << header.status().to_string();
    PlainSegment segment{.header = header.value(), .records = {}};
    for (std::size_t at = kSegmentHeaderBytes; at < bytes.size();) {
      const DecodedRecord record = decode_record(std::span(bytes).subspan(at), segment.header.salt);
      if (record.status != RecordStatus::ok) break;
      if (record.header.type != kTypePadding) {
        segment.records.push_back({record.header, {record.payload.begin(), record.payload.end()}});
      }
      at += record.padded_bytes;
    }
    log.push_back(std::move(segment));
  }
  return log;
}

// Writes `log` back the way the journal would have: sequences renumbered to run on from
// `first_base`, every checksum recomputed under each segment's own salt, files renamed to their
// (new) bases, index files removed (they would give the game away by not matching).
void write_log(const std::string& directory, std::vector<PlainSegment> log, std::uint64_t first_base) {
  for (const fs::path& path : segment_files(directory)) fs::remove(path);
  for (const auto& entry : fs::directory_iterator(directory)) {
    if (entry.path().extension() == ".idx") fs::remove(entry.path());
  }
  std::uint64_t next = first_base;
  for (PlainSegment& segment : log) {
    segment.header.base_sequence = next;
    std::size_t needed = kSegmentHeaderBytes;
    for (const Plain& record : segment.records) needed += padded_record_bytes(record.payload.size());
    std::vector<std::byte> bytes(std::max<std::size_t>(needed + kRecordHeaderBytes, kSmallSegments.segment_bytes_max));
    encode_segment_header(segment.header, std::span(bytes).first<kSegmentHeaderBytes>());
    std::size_t at = kSegmentHeaderBytes;
    for (Plain& record : segment.records) {
      record.header.sequence = next++;
      const std::size_t size = padded_record_bytes(record.payload.size());
      encode_record(record.header, record.payload, segment.header.salt, std::span(bytes).subspan(at, size));
      at += size;
    }
    write_file(fs::path(directory) / segment_file_name(segment.header.base_sequence), bytes);
  }
}

void tamper(const std::string& directory, const std::function<void(std::vector<PlainSegment>&)>& edit) {
  std::vector<PlainSegment> log = read_log(directory);
  ASSERT_GE(log.size(), 4u);
  const std::uint64_t first_base = log.front().header.base_sequence;
  edit(log);
  write_log(directory, std::move(log), first_base);
}

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const std::string& line : lines) out += line + "\n";
  return out;
}

class ChainTest : public JournalFixture<PosixBackend> {
 protected:
  void append(std::uint64_t records, const Options& options = kSmallSegments) {
    auto journal = open(options);
    ASSERT_TRUE(journal.ok()) << journal.status().to_string();
    const std::uint64_t from = journal.value()->durable_sequence() + 1;
    for (std::uint64_t i = 0; i < records; ++i) {
      const auto payload = payload_for(7, from + i);
      const RecordInput record{.stream_id = 7, .stream_version = from + i, .payload = payload};
      ASSERT_TRUE(journal.value()->append(std::span(&record, 1)).ok());
    }
    ASSERT_TRUE(journal.value()->wait_durable(from + records - 1, soon()).ok());
    ASSERT_TRUE(journal.value()->close().ok());
  }
  ChainReport verify(const ChainCheck& check = {}) {
    auto report = verify_chain(dir_.path(), check);
    EXPECT_TRUE(report.ok()) << report.status().to_string();
    return report.ok() ? report.value() : ChainReport{};
  }
  // The problems must name `what`, and the first of them `first`.
  void expect_found(const ChainReport& report, const std::string& first) {
    ASSERT_FALSE(report.sound()) << "not found: " << first;
    EXPECT_NE(report.problems.front().find(first), std::string::npos) << joined(report.problems);
  }
  std::string segment_name(std::size_t index) { return segment_files(dir_.path())[index].filename().string(); }
};

TEST_F(ChainTest, EverySealedSegmentIsChainedAndTheChainVerifies) {
  ASSERT_NO_FATAL_FAILURE(append(kRecords));
  const std::size_t segments = segment_files(dir_.path()).size();
  ASSERT_GE(segments, 4u);
  const ChainReport report = verify();
  EXPECT_TRUE(report.sound()) << joined(report.problems);
  EXPECT_EQ(report.entries, segments - 1);  // all but the tail
  EXPECT_EQ(report.checked, segments - 1);
  ASSERT_TRUE(report.head.has_value());
  EXPECT_EQ(report.head->sequence, kRecords);
  const auto head = chain_head(dir_.path(), std::nullopt);
  ASSERT_TRUE(head.ok()) << head.status().to_string();
  EXPECT_EQ(to_string(head.value()), to_string(*report.head));
  // At a sealed segment's last record, the head is that segment's link.
  PosixBackend io;
  const auto chain = read_chain_file(io, dir_.path());
  ASSERT_TRUE(chain.ok());
  const ChainEntry& second = chain.value().entries.at(1);
  const auto at_second = chain_head(dir_.path(), second.last);
  ASSERT_TRUE(at_second.ok());
  EXPECT_EQ(crypto::to_hex(at_second.value().link), crypto::to_hex(second.link));
  EXPECT_EQ(parse_chain_head(to_string(head.value()))->link, head.value().link);
}

// A head taken while its segment was the tail still holds once the segment is sealed and the log
// has grown: what a user keeps from `annal inspect --chain` checks the log later.
TEST_F(ChainTest, AHeadTakenEarlierStillHoldsAsTheLogGrows) {
  ASSERT_NO_FATAL_FAILURE(append(kRecords / 2));
  const auto early = chain_head(dir_.path(), std::nullopt);
  ASSERT_TRUE(early.ok());
  ASSERT_NO_FATAL_FAILURE(append(kRecords / 2));
  const ChainReport report = verify({.keys = {}, .expected = early.value()});
  EXPECT_TRUE(report.sound()) << joined(report.problems);
  EXPECT_EQ(report.head->sequence, kRecords);
}

TEST_F(ChainTest, AnEditedRecordInASealedSegmentBreaksTheChainThere) {
  ASSERT_NO_FATAL_FAILURE(append(kRecords));
  const std::string second = segment_name(1);
  tamper(dir_.path(), [](std::vector<PlainSegment>& log) { log[1].records[3].payload[0] ^= std::byte{1}; });
  expect_found(verify(), "chain breaks at " + second);
}

TEST_F(ChainTest, ARemovedRecordIsFoundWhereItWas) {
  ASSERT_NO_FATAL_FAILURE(append(kRecords));
  const std::string second = segment_name(1);
  tamper(dir_.path(), [](std::vector<PlainSegment>& log) { log[1].records.erase(log[1].records.begin() + 5); });
  expect_found(verify(), "chain breaks at " + second);
}

TEST_F(ChainTest, AnInsertedRecordIsFoundWhereItWasPut) {
  ASSERT_NO_FATAL_FAILURE(append(kRecords));
  const std::string first = segment_name(0);
  tamper(dir_.path(), [](std::vector<PlainSegment>& log) {
    log[0].records.insert(log[0].records.begin() + 2, log[0].records[1]);
  });
  expect_found(verify(), "chain breaks at " + first);
}

TEST_F(ChainTest, ReorderedRecordsAreFound) {
  ASSERT_NO_FATAL_FAILURE(append(kRecords));
  const std::string third = segment_name(2);
  tamper(dir_.path(), [](std::vector<PlainSegment>& log) { std::swap(log[2].records[0], log[2].records[1]); });
  expect_found(verify(), "chain breaks at " + third);
}

TEST_F(ChainTest, ARemovedSegmentIsFound) {
  ASSERT_NO_FATAL_FAILURE(append(kRecords));
  const std::string second = segment_name(1);
  tamper(dir_.path(), [](std::vector<PlainSegment>& log) { log.erase(log.begin() + 1); });
  expect_found(verify(), "chain breaks at " + second);
}

TEST_F(ChainTest, ReorderedSegmentsAreFound) {
  ASSERT_NO_FATAL_FAILURE(append(kRecords));
  const std::string first = segment_name(0);
  tamper(dir_.path(), [](std::vector<PlainSegment>& log) { std::swap(log[0], log[1]); });
  expect_found(verify(), "chain breaks at " + first);
}

// The tail is not chained until it is sealed: an edit there is found given a head taken before.
TEST_F(ChainTest, AnEditOfTheTailIsFoundGivenAnEarlierHead) {
  ASSERT_NO_FATAL_FAILURE(append(kRecords));
  const auto head = chain_head(dir_.path(), std::nullopt);
  ASSERT_TRUE(head.ok());
  tamper(dir_.path(), [](std::vector<PlainSegment>& log) { log.back().records.back().payload[1] ^= std::byte{4}; });
  EXPECT_TRUE(verify().sound());  // the chain alone cannot tell
  expect_found(verify({.keys = {}, .expected = head.value()}), "the head at sequence " + std::to_string(kRecords));
  // Records cut from the end: the log no longer reaches the head.
  tamper(dir_.path(), [](std::vector<PlainSegment>& log) { log.back().records.pop_back(); });
  expect_found(verify({.keys = {}, .expected = head.value()}), "but the log ends at " + std::to_string(kRecords - 1));
}

// An attacker who edits a sealed segment and rewrites CHAIN after it (the links recomputed, with
// no key to tag them): only a head taken earlier, or the chain key, shows it.
TEST_F(ChainTest, ARewrittenChainIsFoundByTheKeyOrAnEarlierHead) {
  auto key = crypto::Key::random();
  ASSERT_TRUE(key.ok());
  Options keyed = kSmallSegments;
  keyed.chain_key = std::make_shared<const ChainKey>(ChainKey{.version = 1, .key = key.value().clone()});
  ASSERT_NO_FATAL_FAILURE(append(kRecords, keyed));
  const auto head = chain_head(dir_.path(), std::nullopt);
  ASSERT_TRUE(head.ok());
  const ChainKeys keys = [&](std::uint32_t version) -> std::optional<crypto::Key> {
    if (version != 1) return std::nullopt;
    return key.value().clone();
  };
  ChainReport clean = verify({.keys = keys, .expected = head.value()});
  EXPECT_TRUE(clean.sound()) << joined(clean.problems);
  EXPECT_EQ(clean.tags_checked, clean.entries);

  tamper(dir_.path(), [](std::vector<PlainSegment>& log) { log[1].records[0].payload[2] ^= std::byte{8}; });
  PosixBackend io;
  auto chain = read_chain_file(io, dir_.path());
  ASSERT_TRUE(chain.ok());
  crypto::Digest previous{};
  for (ChainEntry& entry : chain.value().entries) {
    const auto path = (fs::path(dir_.path()) / segment_file_name(entry.base)).string();
    auto link = segment_link(io, path, previous, entry.last);
    ASSERT_TRUE(link.ok()) << link.status().to_string();
    entry.link = previous = link.value().link;
  }
  ASSERT_TRUE(rewrite_chain_file(io, dir_.path(), chain.value().entries).ok());  // tags left as they were
  EXPECT_TRUE(verify().sound()) << "without the key or a head, a rewritten chain cannot be told";
  expect_found(verify({.keys = keys, .expected = {}}), "its tag is wrong");
  expect_found(verify({.keys = {}, .expected = head.value()}), "the head at sequence " + std::to_string(kRecords));
  // Tags stripped instead: untagged entries, given the key, are not trusted either.
  for (ChainEntry& entry : chain.value().entries) entry.key_version = 0, entry.tag = {};
  ASSERT_TRUE(rewrite_chain_file(io, dir_.path(), chain.value().entries).ok());
  expect_found(verify({.keys = keys, .expected = {}}), "untagged");
}

// Off, nothing is chained; the next open with it on chains what was sealed meanwhile.
TEST_F(ChainTest, WithoutTheChainNothingIsChainedUntilAnOpenWithIt) {
  Options unchained = kSmallSegments;
  unchained.hash_chain = false;
  ASSERT_NO_FATAL_FAILURE(append(kRecords, unchained));
  EXPECT_FALSE(fs::exists(fs::path(dir_.path()) / "CHAIN"));
  EXPECT_FALSE(verify().sound()) << "sealed segments missing from CHAIN";
  ASSERT_NO_FATAL_FAILURE(append(1));
  const ChainReport report = verify();
  EXPECT_TRUE(report.sound()) << joined(report.problems);
  EXPECT_EQ(report.entries, segment_files(dir_.path()).size() - 1);
}

// Retention right after a rollover removes segments the chain thread may not have reached: it
// waits for them to be chained first, so that the chain keeps going past them.
TEST_F(ChainTest, RetentionWaitsForTheSegmentsItRemovesToBeChained) {
  auto journal = open(kSmallSegments);
  ASSERT_TRUE(journal.ok()) << journal.status().to_string();
  for (std::uint64_t i = 1; i <= kRecords; ++i) {
    const auto payload = payload_for(7, i);
    const RecordInput record{.stream_id = 7, .stream_version = i, .payload = payload};
    ASSERT_TRUE(journal.value()->append(std::span(&record, 1)).ok());
  }
  ASSERT_TRUE(journal.value()->wait_durable(kRecords, soon()).ok());
  const std::size_t sealed = segment_files(dir_.path()).size() - 1;
  ASSERT_TRUE(journal.value()->remove_segments_before(kRecords).ok());
  PosixBackend io;
  const auto chain = read_chain_file(io, dir_.path());
  ASSERT_TRUE(chain.ok());
  EXPECT_GE(chain.value().entries.size(), sealed) << "every removed segment was chained first";
  ASSERT_TRUE(journal.value()->close().ok());
  const ChainReport report = verify();
  EXPECT_TRUE(report.sound()) << joined(report.problems);
  EXPECT_TRUE(report.notes.empty()) << joined(report.notes);
}

// A whole entry that fails its checksum is no crash's doing.
TEST_F(ChainTest, ADamagedEntryIsAProblem) {
  ASSERT_NO_FATAL_FAILURE(append(kRecords));
  std::vector<std::byte> chain = read_file(fs::path(dir_.path()) / "CHAIN");
  ASSERT_GE(chain.size(), 2 * kChainEntryBytes);
  chain[kChainEntryBytes + 30] ^= std::byte{1};
  write_file(fs::path(dir_.path()) / "CHAIN", chain);
  expect_found(verify(), "CHAIN: entry 1 is damaged");
}

// Chaining happens beside the writer and may be cut by a crash: an open chains what was left, and
// an entry that no longer matches the log (its segment cut by point-in-time recovery, say), with
// every entry after it, is redone.
TEST_F(ChainTest, AnOpenChainsWhatWasLeftUnchainedAndRedoesWhatNoLongerMatches) {
  ASSERT_NO_FATAL_FAILURE(append(kRecords));
  PosixBackend io;
  auto chain = read_chain_file(io, dir_.path());
  ASSERT_TRUE(chain.ok());
  const std::size_t entries = chain.value().entries.size();
  // As if the process died before chaining its last sealed segment, in the middle of the append.
  std::vector<ChainEntry> kept(chain.value().entries.begin(), chain.value().entries.end() - 1);
  ASSERT_TRUE(rewrite_chain_file(io, dir_.path(), kept).ok());
  {
    std::ofstream torn(fs::path(dir_.path()) / "CHAIN", std::ios::binary | std::ios::app);
    torn << "ANNALCHN torn";
  }
  const ChainReport unchained = verify();
  EXPECT_TRUE(unchained.sound()) << joined(unchained.problems);
  EXPECT_NE(joined(unchained.notes).find("CHAIN ends inside entry " + std::to_string(kept.size())), std::string::npos)
      << joined(unchained.notes);
  EXPECT_NE(joined(unchained.notes).find("is not chained yet"), std::string::npos) << joined(unchained.notes);
  // And an entry that says its segment ends one record later than it does.
  kept.back().last += 1;
  ASSERT_TRUE(rewrite_chain_file(io, dir_.path(), kept).ok());
  expect_found(verify(), "chain breaks at " + segment_name(kept.size() - 1));

  ASSERT_NO_FATAL_FAILURE(append(1));
  const ChainReport after = verify();
  EXPECT_TRUE(after.sound()) << joined(after.problems);
  EXPECT_EQ(after.entries, entries);
  const auto reread = read_chain_file(io, dir_.path());
  ASSERT_TRUE(reread.ok());
  EXPECT_EQ(crypto::to_hex(reread.value().entries.back().link), crypto::to_hex(chain.value().entries.back().link));
}

// A backend that runs a hook before each open (the path and mode), everything else going
// straight through: tests stop the chain thread, or act between two reads of a tool, at a moment
// they choose.
class HookedBackend final : public ForwardingBackend {
 public:
  using ForwardingBackend::ForwardingBackend;
  std::function<void(const std::string&, OpenMode)> on_open;

  Result<FileId> open(const std::string& path, OpenMode mode) override {
    if (on_open) on_open(path, mode);
    return ForwardingBackend::open(path, mode);
  }
};

// Records cut from the start of the newest sealed segment (its header's base moved up,
// its file renamed, every CRC32C recomputed; whole segments before it removed as retention would),
// CHAIN left as it was. Its entry still says the segment began earlier: the chain alone must see it.
TEST_F(ChainTest, RecordsCutFromTheStartOfTheNewestSealedSegmentAreFound) {
  ASSERT_NO_FATAL_FAILURE(append(kRecords));
  std::vector<PlainSegment> log = read_log(dir_.path());
  ASSERT_GE(log.size(), 4u);
  log.erase(log.begin(), log.end() - 2);  // the newest sealed segment and the tail
  const std::uint64_t base = log.front().header.base_sequence;
  log.front().records.erase(log.front().records.begin(), log.front().records.begin() + 3);
  write_log(dir_.path(), std::move(log), base + 3);
  expect_found(verify(), "chain breaks at " + segment_file_name(base + 3));
}

// Retention that removes segments sealed while the chain was off (so never chained) leaves
// a gap between CHAIN's entries of removed segments and those of the segments kept. That is no
// edit: the store must verify sound once an open with the chain on has chained what is left.
TEST_F(ChainTest, RetentionOfSegmentsNeverChainedIsNoBreak) {
  ASSERT_NO_FATAL_FAILURE(append(kRecords));
  Options unchained = kSmallSegments;
  unchained.hash_chain = false;
  ASSERT_NO_FATAL_FAILURE(append(kRecords, unchained));
  {
    auto journal = open(unchained);
    ASSERT_TRUE(journal.ok()) << journal.status().to_string();
    ASSERT_TRUE(journal.value()->remove_segments_before(kRecords + kRecords / 2).ok());
    ASSERT_TRUE(journal.value()->close().ok());
  }
  ASSERT_NO_FATAL_FAILURE(append(1));  // the chain on again: the open chains the sealed segments kept
  const ChainReport report = verify();
  EXPECT_TRUE(report.sound()) << joined(report.problems);
  EXPECT_EQ(report.checked, segment_files(dir_.path()).size() - 1);
}

// Verify beside a running writer. Between verify's scan of the segments and its read of
// CHAIN, the writer fills and seals the tail and the chain thread chains it: CHAIN then holds an
// entry for more records than the scan saw. That is no edit.
TEST_F(ChainTest, VerifyBesideAWriterThatSealsTheTailMeanwhileFindsNoBreak) {
  ASSERT_NO_FATAL_FAILURE(append(kRecords));
  auto journal = open(kSmallSegments);
  ASSERT_TRUE(journal.ok()) << journal.status().to_string();
  const std::size_t segments = segment_files(dir_.path()).size();
  HookedBackend io(std::make_shared<PosixBackend>());
  bool sealed = false;
  io.on_open = [&](const std::string& path, OpenMode) {
    if (sealed || !path.ends_with("/CHAIN")) return;
    sealed = true;
    for (std::uint64_t i = 0; i < kRecords / 3; ++i) {
      const auto payload = payload_for(7, kRecords + 1 + i);
      const RecordInput record{.stream_id = 7, .stream_version = kRecords + 1 + i, .payload = payload};
      ASSERT_TRUE(journal.value()->append(std::span(&record, 1)).ok());
    }
    ASSERT_TRUE(journal.value()->wait_durable(kRecords + kRecords / 3, soon()).ok());
    ASSERT_TRUE(journal.value()->close().ok());  // chains what was sealed
    ASSERT_GT(segment_files(dir_.path()).size(), segments) << "the tail was sealed";
  };
  const auto report = verify_chain(io, dir_.path(), {});
  ASSERT_TRUE(sealed);
  ASSERT_TRUE(report.ok()) << report.status().to_string();
  EXPECT_TRUE(report.value().sound()) << joined(report.value().problems);
}

// The chain thread may be more than one segment behind the writer (it hashes each sealed
// segment whole; a fast writer seals the next meanwhile). Verify beside it must not call the
// sealed segments still queued "missing from CHAIN".
TEST_F(ChainTest, VerifyBesideAChainThreadTwoSegmentsBehindFindsNoBreak) {
  ASSERT_NO_FATAL_FAILURE(append(kRecords));
  auto io = std::make_shared<HookedBackend>(std::make_shared<PosixBackend>());
  std::mutex mutex;
  std::condition_variable changed;
  bool held = false;
  bool waiting = false;
  io->on_open = [&](const std::string& path, OpenMode mode) {
    // The chain thread reads a sealed segment read-only; nothing else of the writer does.
    if (mode != OpenMode::read_only || !parse_segment_file_name(fs::path(path).filename().string())) return;
    std::unique_lock lock(mutex);
    if (!held) return;
    waiting = true;
    changed.notify_all();
    changed.wait(lock, [&] { return !held; });
  };
  auto journal = Journal::open(dir_.path(), kSmallSegments, io);
  ASSERT_TRUE(journal.ok()) << journal.status().to_string();
  struct Release {
    std::mutex& mutex;
    std::condition_variable& changed;
    bool& held;
    ~Release() {
      std::lock_guard lock(mutex);
      held = false;
      changed.notify_all();
    }
  } release{mutex, changed, held};
  {
    std::lock_guard lock(mutex);
    held = true;
  }
  const std::size_t segments = segment_files(dir_.path()).size();
  const std::uint64_t records = 2 * kRecords / 3;  // two segments and more
  for (std::uint64_t i = 0; i < records; ++i) {
    const auto payload = payload_for(7, kRecords + 1 + i);
    const RecordInput record{.stream_id = 7, .stream_version = kRecords + 1 + i, .payload = payload};
    ASSERT_TRUE(journal.value()->append(std::span(&record, 1)).ok());
  }
  ASSERT_TRUE(journal.value()->wait_durable(kRecords + records, soon()).ok());
  ASSERT_GE(segment_files(dir_.path()).size(), segments + 2) << "two more segments sealed";
  {
    std::unique_lock lock(mutex);
    changed.wait(lock, [&] { return waiting; });  // the chain thread is stopped at the first of them
  }
  const ChainReport report = verify();
  EXPECT_TRUE(report.sound()) << joined(report.problems);
}

}  // namespace
}  // namespace annal::journal::test
