#include "annal/journal/format.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "annal/journal/crc32c.h"

namespace annal::journal {
namespace {

std::vector<std::byte> bytes_of(std::string_view text) {
  std::vector<std::byte> out(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) out[i] = static_cast<std::byte>(text[i]);
  return out;
}

constexpr std::uint32_t kSalt = 0x5A17C0DE;

RecordHeader sample_header() {
  RecordHeader header;
  header.sequence = 42;
  header.stream_id = 0x1122334455667788ULL;
  header.stream_version = 7;
  header.timestamp_ns = 1'700'000'000'123'456'789ULL;
  header.type = 0x1234;
  header.flags = kFlagBatchEnd;
  header.commit_lag = 3;
  return header;
}

std::vector<std::byte> encoded(const RecordHeader& header, std::string_view payload,
                               std::uint32_t salt = kSalt) {
  std::vector<std::byte> out(padded_record_bytes(payload.size()));
  encode_record(header, bytes_of(payload), salt, out);
  return out;
}

TEST(Crc32c, MatchesTheStandardCheckValue) {
  EXPECT_EQ(crc32c_extend(0, bytes_of("123456789")), 0xE3069283u);
  EXPECT_EQ(crc32c_extend(0, {}), 0u);
}

TEST(Crc32c, ExtendingPieceByPieceEqualsOneCall) {
  const auto all = bytes_of("the quick brown fox jumps over the lazy dog");
  const std::span<const std::byte> span(all);
  EXPECT_EQ(crc32c_extend(crc32c_extend(0, span.first(10)), span.subspan(10)), crc32c_extend(0, span));
}

TEST(SegmentFileName, IsZeroPaddedSoNamesSortInLogOrder) {
  EXPECT_EQ(segment_file_name(1), "00000000000000000001.log");
  EXPECT_LT(segment_file_name(999), segment_file_name(1000));
  EXPECT_EQ(segment_file_name(UINT64_MAX), "18446744073709551615.log");
}

TEST(SegmentFileName, ParsesBackAndRejectsOtherFiles) {
  EXPECT_EQ(parse_segment_file_name("00000000000001048577.log"), 1048577u);
  EXPECT_EQ(parse_segment_file_name(segment_file_name(UINT64_MAX)), UINT64_MAX);
  EXPECT_FALSE(parse_segment_file_name("00000000000000000000.log"));  // sequences start at 1
  EXPECT_FALSE(parse_segment_file_name("0000000000000000001.log"));   // 19 digits
  EXPECT_FALSE(parse_segment_file_name("0000000000000000000x.log"));
  EXPECT_FALSE(parse_segment_file_name("00000000000000000001.idx"));
  EXPECT_FALSE(parse_segment_file_name("LOCK"));
}

class SegmentHeaderTest : public ::testing::Test {
 protected:
  SegmentHeaderTest() { encode_segment_header({.base_sequence = 1001, .created_ns = 99, .salt = kSalt}, block_); }
  Result<SegmentHeader> decode() { return decode_segment_header(block_, "00000000000000001001.log"); }
  std::array<std::byte, kSegmentHeaderBytes> block_{};
};

TEST_F(SegmentHeaderTest, RoundTripsEveryField) {
  const auto header = decode();
  ASSERT_TRUE(header.ok()) << header.status().to_string();
  EXPECT_EQ(header.value().base_sequence, 1001u);
  EXPECT_EQ(header.value().created_ns, 99u);
  EXPECT_EQ(header.value().salt, kSalt);
}

TEST_F(SegmentHeaderTest, BadMagicIsNamedInTheError) {
  block_[0] = std::byte{'X'};
  const auto header = decode();
  ASSERT_FALSE(header.ok());
  EXPECT_EQ(header.status().code(), ErrorCode::corruption);
  EXPECT_NE(header.status().message().find("00000000000000001001.log: segment header: bad magic"),
            std::string::npos);
}

TEST_F(SegmentHeaderTest, AnyFlippedBitFailsTheChecksum) {
  for (std::size_t i = sizeof(kSegmentMagic); i < kSegmentHeaderFieldsBytes; ++i) {
    block_[i] ^= std::byte{0x10};
    EXPECT_FALSE(decode().ok()) << "byte " << i;
    block_[i] ^= std::byte{0x10};
  }
  EXPECT_TRUE(decode().ok());
}

TEST_F(SegmentHeaderTest, ShortFileIsReported) {
  const auto header = decode_segment_header(std::span(block_).first(10), "f.log");
  ASSERT_FALSE(header.ok());
  EXPECT_NE(header.status().message().find("shorter than its header"), std::string::npos);
}

TEST(Record, RoundTripsEveryFieldAndThePayload) {
  const auto bytes = encoded(sample_header(), "OrderCreated {\"id\": 123456}");
  const DecodedRecord record = decode_record(bytes, kSalt);
  ASSERT_EQ(record.status, RecordStatus::ok);
  const RecordHeader expected = sample_header();
  EXPECT_EQ(record.header.sequence, expected.sequence);
  EXPECT_EQ(record.header.stream_id, expected.stream_id);
  EXPECT_EQ(record.header.stream_version, expected.stream_version);
  EXPECT_EQ(record.header.timestamp_ns, expected.timestamp_ns);
  EXPECT_EQ(record.header.type, expected.type);
  EXPECT_EQ(record.header.flags, expected.flags);
  EXPECT_EQ(record.header.commit_lag, expected.commit_lag);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(record.payload.data()), record.payload.size()),
            "OrderCreated {\"id\": 123456}");
  EXPECT_EQ(record.padded_bytes, bytes.size());
}

TEST(Record, IsPaddedToEightBytesWithZeros) {
  for (std::size_t payload = 0; payload <= 17; ++payload) {
    const auto bytes = encoded(sample_header(), std::string(payload, 'x'));
    EXPECT_EQ(bytes.size() % kRecordAlign, 0u);
    EXPECT_EQ(bytes.size(), padded_record_bytes(payload));
    for (std::size_t i = kRecordHeaderBytes + payload; i < bytes.size(); ++i) EXPECT_EQ(bytes[i], std::byte{0});
    EXPECT_EQ(decode_record(bytes, kSalt).status, RecordStatus::ok);
  }
}

TEST(Record, AFlippedBitAnywhereIsCaught) {
  auto bytes = encoded(sample_header(), "payload of a trading event, about sixty-four bytes long....");
  const std::size_t size = kRecordHeaderBytes + 59;
  for (std::size_t i = 0; i < size; ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      bytes[i] ^= std::byte(1u << bit);
      EXPECT_NE(decode_record(bytes, kSalt).status, RecordStatus::ok)
          << "byte " << i << " bit " << bit;
      bytes[i] ^= std::byte(1u << bit);
    }
  }
}

TEST(Record, ARecordLeftByAnotherSegmentFailsTheChecksum) {
  const auto bytes = encoded(sample_header(), "stale", kSalt);
  EXPECT_EQ(decode_record(bytes, kSalt + 1).status, RecordStatus::bad_checksum);
}

TEST(Record, ZerosAreTheEndOfTheLog) {
  const std::vector<std::byte> zeros(64);
  EXPECT_EQ(decode_record(zeros, kSalt).status, RecordStatus::end_of_log);
}

TEST(Record, ZeroSizeUnderANonZeroChecksumIsDamageNotTheEnd) {
  std::vector<std::byte> bytes(64);
  bytes[0] = std::byte{1};
  EXPECT_EQ(decode_record(bytes, kSalt).status, RecordStatus::bad_size);
}

TEST(Record, EveryShorterPrefixIsTruncated) {
  const auto bytes = encoded(sample_header(), "0123456789");
  const std::size_t size = kRecordHeaderBytes + 10;
  for (std::size_t length = 0; length < size; ++length) {
    EXPECT_EQ(decode_record(std::span(bytes).first(length), kSalt).status,
              RecordStatus::truncated) << length;
  }
}

// Only the format's limit: what an open may append is an option, and a later open with a smaller
// one must still read what an earlier one wrote.
TEST(Record, OnlyASizeBeyondTheFormatsLimitIsImpossible) {
  auto bytes = encoded(sample_header(), std::string(100, 'x'));
  EXPECT_EQ(claimed_record_bytes(bytes), bytes.size());
  const auto size_word = [&](std::uint32_t size) {
    for (int i = 0; i < 4; ++i) bytes[4 + i] = static_cast<std::byte>(size >> (8 * i) & 0xFF);
  };
  size_word(static_cast<std::uint32_t>(kRecordBytesMax) + 8);
  EXPECT_EQ(claimed_record_bytes(bytes), 0u);
  EXPECT_EQ(decode_record(bytes, kSalt).status, RecordStatus::bad_size);
  size_word(static_cast<std::uint32_t>(kRecordBytesMax));
  EXPECT_EQ(claimed_record_bytes(bytes), kRecordBytesMax);
  EXPECT_EQ(decode_record(bytes, kSalt).status, RecordStatus::truncated);  // possible, not all here
  size_word(kRecordHeaderBytes - 8);
  EXPECT_EQ(decode_record(bytes, kSalt).status, RecordStatus::bad_size);
}

// A read torn by the writer's next notice, a short or empty LOCK file: nothing to believe.
TEST(DurableNotice, RoundTripsAndRefusesWhatAWriteCouldHaveTorn) {
  std::array<std::byte, kDurableNoticeBytes> older{}, newer{}, unsynced{};
  encode_durable_notice(0x00000000FFFFFFFFull, true, older);
  encode_durable_notice(0x0000000100000000ull, true, newer);
  encode_durable_notice(7, false, unsynced);
  EXPECT_EQ(decode_durable_notice(older)->sequence, 0x00000000FFFFFFFFull);
  EXPECT_EQ(decode_durable_notice(newer)->sequence, 0x0000000100000000ull);
  EXPECT_TRUE(decode_durable_notice(newer)->synced);
  EXPECT_EQ(decode_durable_notice(unsynced)->sequence, 7u);
  EXPECT_FALSE(decode_durable_notice(unsynced)->synced);  // Durability::none: no witness
  for (std::size_t cut = 1; cut < kDurableNoticeBytes; ++cut) {
    std::array<std::byte, kDurableNoticeBytes> torn = older;
    std::copy(newer.begin(), newer.begin() + static_cast<std::ptrdiff_t>(cut), torn.begin());
    const auto read = decode_durable_notice(torn);
    if (read) {
      EXPECT_TRUE(read->sequence == 0x00000000FFFFFFFFull || read->sequence == 0x0000000100000000ull) << "cut " << cut;
    }
    EXPECT_FALSE(decode_durable_notice(std::span(older).first(cut)).has_value());
  }
  EXPECT_FALSE(decode_durable_notice({}).has_value());
}

}  // namespace
}  // namespace annal::journal
