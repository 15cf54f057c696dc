#include "segment_scan.h"

#include "fault_backend.h"
#include "forwarding_backend.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace annal::journal {
namespace {

// Reads succeed `good_reads` times, then fail.
class ReadsThatFail final : public test::ForwardingBackend {
 public:
  ReadsThatFail(std::shared_ptr<IoBackend> inner, int good_reads)
      : ForwardingBackend(std::move(inner)), good_reads_(good_reads) {}
  Result<std::size_t> read(FileId file, std::uint64_t offset, std::span<std::byte> out) override {
    if (good_reads_-- > 0) return ForwardingBackend::read(file, offset, out);
    return Status(ErrorCode::io_error, "injected read failure at offset " + std::to_string(offset));
  }

 private:
  int good_reads_;
};

TEST(SegmentBytes, AFailedDirectReadGivesNothingRatherThanTheBlockBeforeTheOffsetAndSaysWhy) {
  const auto disk = std::make_shared<FaultBackend>(3);
  const std::vector<std::byte> contents(3 * kDirectBlockBytes, std::byte{0x42});
  const auto made = disk->open("/journal/segment", OpenMode::create_exclusive);
  ASSERT_TRUE(made.ok());
  ASSERT_TRUE(disk->write(made.value(), 0, contents).ok());
  ASSERT_TRUE(disk->close(made.value()).ok());
  ReadsThatFail io(disk, 1);
  const auto file = io.open("/journal/segment", OpenMode::read_write_direct);
  ASSERT_TRUE(file.ok()) << file.status().to_string();
  SegmentBytes bytes(io, file.value(), contents.size(), kDirectBlockBytes, /*direct=*/true);
  EXPECT_EQ(bytes.from(100, 48).size(), kDirectBlockBytes - 100);  // the first block, read whole
  // The next block's read, from its start, fails: nothing of it, and no bytes before 2 * 4096 + 100.
  EXPECT_TRUE(bytes.from(2 * kDirectBlockBytes + 100, 48).empty());
  EXPECT_EQ(bytes.status().code(), ErrorCode::io_error);
  EXPECT_TRUE(bytes.record_at(2 * kDirectBlockBytes + 200).empty());
  ASSERT_TRUE(io.close(file.value()).ok());
}

// The test backend holds direct reads to O_DIRECT's grid, so that every test reading a direct
// segment through it would fail on a read the kernel refuses.
TEST(SegmentBytes, TheFaultBackendRefusesADirectReadOffTheBlockGridAsTheKernelDoes) {
  FaultBackend io(4);
  const std::vector<std::byte> contents(2 * kDirectBlockBytes, std::byte{0x42});
  const auto made = io.open("/journal/segment", OpenMode::create_exclusive);
  ASSERT_TRUE(made.ok());
  ASSERT_TRUE(io.write(made.value(), 0, contents).ok());
  ASSERT_TRUE(io.close(made.value()).ok());
  const auto file = io.open("/journal/segment", OpenMode::read_write_direct);
  ASSERT_TRUE(file.ok()) << file.status().to_string();
  alignas(kDirectBlockBytes) static std::byte block[2 * kDirectBlockBytes];
  EXPECT_EQ(io.read(file.value(), kDirectBlockBytes, std::span(block).first(kDirectBlockBytes)).value(), kDirectBlockBytes);
  EXPECT_FALSE(io.read(file.value(), 100, std::span(block).first(kDirectBlockBytes)).ok());  // offset
  EXPECT_FALSE(io.read(file.value(), 0, std::span(block).first(100)).ok());                  // length
  EXPECT_FALSE(io.read(file.value(), 0, std::span(block).subspan(8, kDirectBlockBytes)).ok());  // address
  ASSERT_TRUE(io.close(file.value()).ok());
}

constexpr std::uint32_t kSalt = 0xC0FFEE11;
constexpr std::size_t kSegmentBytes = 64 * 1024;
constexpr std::size_t kPayload = 64;
constexpr std::size_t kRecordBytes = padded_record_bytes(kPayload);

// Builds a segment image the way the writer lays one out: header, records, preallocated zeros.
class SegmentImage {
 public:
  explicit SegmentImage(std::uint64_t base = 1) : bytes_(kSegmentBytes) {
    header_ = {.base_sequence = base, .created_ns = 1, .salt = kSalt};
    encode_segment_header(header_, std::span(bytes_).first<kSegmentHeaderBytes>());
    next_ = base;
  }

  // Appends one batch of `count` records; `durable` is the durable sequence the writer knew.
  SegmentImage& batch(std::uint64_t count, std::uint64_t durable) {
    for (std::uint64_t i = 0; i < count; ++i) {
      const bool last = i + 1 == count;
      record(next_, durable, last ? kFlagBatchEnd : 0);
    }
    return *this;
  }
  // One record with any sequence, as a stale or misplaced write would leave.
  SegmentImage& record(std::uint64_t sequence, std::uint64_t durable, std::uint16_t flags) {
    RecordHeader header;
    header.sequence = sequence;
    header.stream_id = sequence % 7;
    header.type = 1;  // 0 is padding
    header.flags = flags;
    header.commit_lag = static_cast<std::uint32_t>(sequence - durable);
    const std::vector<std::byte> payload(kPayload, std::byte{0xAB});
    encode_record(header, payload, kSalt, std::span(bytes_).subspan(end_, kRecordBytes));
    offsets_.push_back(end_);
    end_ += kRecordBytes;
    next_ = sequence + 1;
    return *this;
  }

  // Padding up to the next block boundary (at least a header's worth), as a direct-I/O write
  // ends; it stands before `next` (default: the next record).
  SegmentImage& pad(std::uint64_t durable, std::optional<std::uint64_t> next = std::nullopt) {
    std::size_t bytes = kDirectBlockBytes - end_ % kDirectBlockBytes;
    if (bytes < kRecordHeaderBytes) bytes += kDirectBlockBytes;
    const std::uint64_t sequence = next.value_or(next_);
    encode_padding(sequence, static_cast<std::uint32_t>(sequence - durable), kSalt,
                   std::span(bytes_).subspan(end_, bytes));
    end_ += bytes;
    return *this;
  }

  std::size_t offset_of(std::uint64_t sequence) const { return offsets_.at(sequence - header_.base_sequence); }
  std::size_t end() const { return end_; }
  std::vector<std::byte>& bytes() { return bytes_; }
  void zero(std::size_t from, std::size_t to) {
    std::fill(bytes_.begin() + static_cast<std::ptrdiff_t>(from), bytes_.begin() + static_cast<std::ptrdiff_t>(to), std::byte{0});
  }
  void flip(std::size_t at) { bytes_[at] ^= std::byte{0x40}; }
  SegmentScan scan() const { return scan_segment(bytes_, header_, 4096); }

 private:
  std::vector<std::byte> bytes_;
  SegmentHeader header_;
  std::vector<std::size_t> offsets_;
  std::size_t end_ = kSegmentHeaderBytes;
  std::uint64_t next_ = 1;
};

TEST(SegmentScan, IntactSegmentEndsAtTheZeros) {
  SegmentImage image;
  image.batch(3, 0).batch(2, 3);
  const SegmentScan scan = image.scan();
  EXPECT_EQ(scan.stop, ScanStop::end_of_log);
  EXPECT_EQ(scan.next_sequence, 6u);
  EXPECT_EQ(scan.records, 5u);
  EXPECT_EQ(scan.valid_bytes, image.end());
  EXPECT_EQ(judge(scan, true), Verdict::intact);
  EXPECT_EQ(judge(scan, false), Verdict::intact);
}

TEST(SegmentScan, PaddingIsSteppedOverAndAWriterResumesAfterIt) {
  SegmentImage image;
  image.batch(3, 0).pad(3).batch(2, 3).pad(5);
  const SegmentScan scan = image.scan();
  EXPECT_EQ(scan.stop, ScanStop::end_of_log);
  EXPECT_EQ(scan.next_sequence, 6u);
  EXPECT_EQ(scan.records, 5u);
  EXPECT_EQ(scan.valid_bytes, image.end());
  EXPECT_EQ(scan.valid_bytes % kDirectBlockBytes, 0u);
  EXPECT_EQ(judge(scan, false), Verdict::intact);
}

TEST(SegmentScan, PaddingWithTheWrongSequenceIsStale) {
  SegmentImage image;
  image.batch(3, 0).pad(3, /*next=*/9);
  const SegmentScan scan = image.scan();
  EXPECT_EQ(scan.stop, ScanStop::wrong_sequence);
  EXPECT_EQ(scan.next_sequence, 4u);
  EXPECT_EQ(judge(scan, false), Verdict::corruption);
}

TEST(SegmentScan, EmptySegmentIsIntact) {
  const SegmentScan scan = SegmentImage(1001).scan();
  EXPECT_EQ(scan.next_sequence, 1001u);
  EXPECT_EQ(scan.valid_bytes, kSegmentHeaderBytes);
  EXPECT_EQ(judge(scan, true), Verdict::intact);
}

TEST(SegmentScan, FileEndingRightAfterARecordIsIntact) {
  SegmentImage image;
  image.batch(2, 0);
  image.bytes().resize(image.end());
  const SegmentScan scan = image.scan();
  EXPECT_EQ(scan.stop, ScanStop::file_end);
  EXPECT_EQ(scan.next_sequence, 3u);
  EXPECT_EQ(judge(scan, true), Verdict::intact);
}

// A crash while the last record was being written leaves any prefix of it, then zeros (or the file
// ends). Every such tail recovers to the record before it.
TEST(SegmentScan, TornTailAtEveryByteOfTheLastRecordRecoversToThePreviousRecord) {
  for (std::size_t cut = 0; cut < kRecordBytes; ++cut) {
    for (const bool shrink : {false, true}) {
      SegmentImage image;
      image.batch(3, 0).batch(1, 3);
      const std::size_t start = image.offset_of(4);
      if (shrink) {
        image.bytes().resize(start + cut);
      } else {
        image.zero(start + cut, image.bytes().size());
      }
      const SegmentScan scan = image.scan();
      SCOPED_TRACE("cut " + std::to_string(cut) + (shrink ? " (file shrunk)" : " (zeroed)"));
      EXPECT_EQ(scan.next_sequence, 4u);
      EXPECT_EQ(scan.valid_bytes, start);
      EXPECT_NE(judge(scan, true), Verdict::corruption);
    }
  }
}

TEST(SegmentScan, GarbageAfterTheLastRecordIsATornTail) {
  SegmentImage image;
  image.batch(2, 0);
  for (std::size_t i = image.end(); i < image.end() + 300; ++i) image.bytes()[i] = std::byte(i * 37 + 11);
  const SegmentScan scan = image.scan();
  EXPECT_EQ(scan.stop, ScanStop::bad_record);
  EXPECT_EQ(scan.next_sequence, 3u);
  EXPECT_EQ(judge(scan, true), Verdict::torn_tail);
}

TEST(SegmentScan, AnAppendCutInHalfIsDroppedWhole) {
  SegmentImage image;
  image.batch(2, 0).record(3, 2, 0).record(4, 2, 0);  // the batch's end (5) never made it
  const SegmentScan scan = image.scan();
  EXPECT_TRUE(scan.batch_open);
  EXPECT_EQ(scan.next_sequence, 3u);
  EXPECT_EQ(scan.valid_bytes, image.offset_of(3));
  EXPECT_EQ(judge(scan, true), Verdict::torn_tail);
  EXPECT_EQ(judge(scan, false), Verdict::corruption);
}

TEST(SegmentScan, AStaleRecordWithTheWrongSequenceEndsTheLog) {
  SegmentImage image;
  image.batch(3, 0).record(17, 16, kFlagBatchEnd);
  const SegmentScan scan = image.scan();
  EXPECT_EQ(scan.stop, ScanStop::wrong_sequence);
  EXPECT_EQ(scan.next_sequence, 4u);
  // It carries this file's salt, so this journal wrote it, here or misdirected here, and its lag
  // says 16 was acknowledged: records 4..16 are missing, which no crash explains.
  EXPECT_EQ(scan.durable_proof, 16u);
  EXPECT_EQ(judge(scan, true), Verdict::corruption);
}

TEST(SegmentScan, AMisplacedRecordThatProvesNothingIsATornTail) {
  SegmentImage image;
  image.batch(3, 0).record(17, 3, kFlagBatchEnd);  // written when only 3 was durable
  const SegmentScan scan = image.scan();
  EXPECT_EQ(scan.stop, ScanStop::wrong_sequence);
  EXPECT_EQ(judge(scan, true), Verdict::torn_tail);
}

TEST(SegmentScan, CorruptionBeforeAcknowledgedRecordsRefusesToOpen) {
  SegmentImage image;
  for (std::uint64_t s = 1; s <= 10; ++s) image.batch(1, s - 1);  // each durable before the next
  image.flip(image.offset_of(5) + kRecordHeaderBytes + 3);
  const SegmentScan scan = image.scan();
  EXPECT_EQ(scan.stop, ScanStop::bad_record);
  EXPECT_EQ(scan.bad_status, RecordStatus::bad_checksum);
  EXPECT_EQ(scan.stop_sequence, 5u);
  EXPECT_EQ(scan.durable_proof, 9u);
  EXPECT_EQ(judge(scan, true), Verdict::corruption);
}

TEST(SegmentScan, ZeroedSectorOfAcknowledgedRecordsRefusesToOpen) {
  SegmentImage image;
  for (std::uint64_t s = 1; s <= 10; ++s) image.batch(1, s - 1);
  image.zero(image.offset_of(4), image.offset_of(6));
  const SegmentScan scan = image.scan();
  EXPECT_EQ(scan.stop, ScanStop::end_of_log);
  EXPECT_EQ(judge(scan, true), Verdict::corruption);
}

// Two writes in flight, neither synced: the later reached the disk, the earlier did not. Nothing in
// either was acknowledged, so this is a torn tail, not corruption.
TEST(SegmentScan, UnsyncedWritesPersistedOutOfOrderAreATornTail) {
  SegmentImage image;
  image.batch(4, 0).batch(4, 4).batch(4, 4);
  image.zero(image.offset_of(5), image.offset_of(9));
  const SegmentScan scan = image.scan();
  EXPECT_EQ(scan.next_sequence, 5u);
  EXPECT_EQ(scan.durable_proof, 4u);
  EXPECT_EQ(judge(scan, true), Verdict::torn_tail);
}

TEST(SegmentScan, DamageInAnOlderSegmentIsCorruptionEvenWithoutProof) {
  SegmentImage image;
  image.batch(3, 0).batch(3, 0);
  image.flip(image.offset_of(5) + 20);
  const SegmentScan scan = image.scan();
  EXPECT_EQ(judge(scan, true), Verdict::torn_tail);
  EXPECT_EQ(judge(scan, false), Verdict::corruption);
}

// The decision table in segment_scan.h, every row.
TEST(SegmentScan, VerdictTableEveryCase) {
  struct Row {
    bool last;
    ScanStop stop;
    bool proof;
    bool batch_open;
    Verdict expected;
    std::uint64_t records_past_stop = 0;
  };
  const Row rows[] = {
      {true, ScanStop::end_of_log, false, false, Verdict::intact},
      {true, ScanStop::file_end, false, false, Verdict::intact},
      {true, ScanStop::end_of_log, true, false, Verdict::corruption},
      {true, ScanStop::bad_record, false, false, Verdict::torn_tail},
      {true, ScanStop::wrong_sequence, false, false, Verdict::torn_tail},
      {true, ScanStop::bad_record, true, false, Verdict::corruption},
      {true, ScanStop::wrong_sequence, true, false, Verdict::corruption},
      {true, ScanStop::end_of_log, false, true, Verdict::torn_tail},
      {true, ScanStop::end_of_log, false, false, Verdict::torn_tail, 2},
      {false, ScanStop::end_of_log, false, false, Verdict::corruption, 2},
      {true, ScanStop::bad_record, true, true, Verdict::corruption},
      {false, ScanStop::end_of_log, false, false, Verdict::intact},
      {false, ScanStop::file_end, false, false, Verdict::intact},
      {false, ScanStop::bad_record, false, false, Verdict::corruption},
      {false, ScanStop::wrong_sequence, false, false, Verdict::corruption},
      {false, ScanStop::end_of_log, false, true, Verdict::corruption},
  };
  for (const Row& row : rows) {
    SegmentScan scan;
    scan.next_sequence = 100;
    scan.stop = row.stop;
    scan.batch_open = row.batch_open;
    scan.durable_proof = row.proof ? 100 : 99;
    scan.records_past_stop = row.records_past_stop;
    EXPECT_EQ(judge(scan, row.last), row.expected)
        << "last=" << row.last << " stop=" << static_cast<int>(row.stop) << " proof=" << row.proof
        << " batch_open=" << row.batch_open << " past=" << row.records_past_stop;
  }
}

}  // namespace
}  // namespace annal::journal
