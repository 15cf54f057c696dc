#include "annal/journal/format.h"

#include <algorithm>
#include <charconv>
#include <cstring>

#include "annal/base/little_endian.h"
#include "annal/journal/crc32c.h"

namespace annal::journal {
namespace {

// Segment header field offsets (see the picture in format.h).
constexpr std::size_t kMagicAt = 0, kVersionAt = 8, kSaltAt = 12, kBaseAt = 16, kCreatedAt = 24,
                      kHeaderChecksumAt = 60;
// Record field offsets.
constexpr std::size_t kChecksumAt = 0, kSizeAt = 4, kSequenceAt = 8, kStreamAt = 16,
                      kVersionInStreamAt = 24, kTimestampAt = 32, kTypeAt = 40, kFlagsAt = 42,
                      kCommitLagAt = 44;
static_assert(kHeaderChecksumAt + 4 == kSegmentHeaderFieldsBytes);
static_assert(kCommitLagAt + 4 == kRecordHeaderBytes);
static_assert(kCommitLagAt - kSequenceAt == kAssociatedBytes);

constexpr std::size_t kSegmentNameDigits = 20;  // UINT64_MAX has 20 decimal digits
constexpr std::string_view kSegmentSuffix = ".log";

// The words in the LOCK file.
constexpr std::size_t kLockMagicAt = 8, kLockChecksumAt = 12;
constexpr std::uint32_t kNoticeMagic = 0x41525544;    // "DURA" little-endian
constexpr std::uint32_t kUnsyncedMagic = 0x54495257;  // "WRIT" little-endian
constexpr std::uint32_t kFloorMagic = 0x5045454B;   // "KEEP" little-endian
static_assert(kLockChecksumAt + 4 == kLockWordBytes);

void encode_lock_word(std::uint64_t value, std::uint32_t magic, std::span<std::byte, kLockWordBytes> out) noexcept {
  store_le<std::uint64_t>(out, 0, value);
  store_le<std::uint32_t>(out, kLockMagicAt, magic);
  store_le<std::uint32_t>(out, kLockChecksumAt, crc32c_extend(0, std::span<const std::byte>(out).first(kLockChecksumAt)));
}

std::optional<std::uint64_t> decode_lock_word(std::span<const std::byte> in, std::uint32_t magic) noexcept {
  if (in.size() < kLockWordBytes || load_le<std::uint32_t>(in, kLockMagicAt) != magic ||
      load_le<std::uint32_t>(in, kLockChecksumAt) != crc32c_extend(0, in.first(kLockChecksumAt))) {
    return std::nullopt;
  }
  return load_le<std::uint64_t>(in, 0);
}


}  // namespace

std::string segment_file_name(std::uint64_t base_sequence) {
  std::string digits = std::to_string(base_sequence);
  return std::string(kSegmentNameDigits - digits.size(), '0') + digits + std::string(kSegmentSuffix);
}

std::optional<std::uint64_t> parse_segment_file_name(std::string_view name) {
  if (name.size() != kSegmentNameDigits + kSegmentSuffix.size() ||
      !name.ends_with(kSegmentSuffix)) {
    return std::nullopt;
  }
  std::uint64_t base = 0;
  const char* end = name.data() + kSegmentNameDigits;
  const auto [ptr, error] = std::from_chars(name.data(), end, base);
  if (error != std::errc() || ptr != end || base < kFirstSequence) return std::nullopt;
  return base;
}

void encode_segment_header(const SegmentHeader& header,
                           std::span<std::byte, kSegmentHeaderBytes> out) noexcept {
  std::fill(out.begin(), out.end(), std::byte{0});
  std::memcpy(out.data() + kMagicAt, kSegmentMagic.data(), kSegmentMagic.size());
  store_le<std::uint32_t>(out, kVersionAt, kFormatVersion);
  store_le<std::uint32_t>(out, kSaltAt, header.salt);
  store_le<std::uint64_t>(out, kBaseAt, header.base_sequence);
  store_le<std::uint64_t>(out, kCreatedAt, header.created_ns);
  store_le<std::uint32_t>(out, kHeaderChecksumAt,
                     crc32c_extend(0, std::span<const std::byte>(out.data(), kHeaderChecksumAt)));
}

Result<SegmentHeader> decode_segment_header(std::span<const std::byte> in, std::string_view where) {
  const auto fail = [&](const std::string& what) {
    return Status(ErrorCode::corruption, std::string(where) + ": segment header: " + what);
  };
  if (in.size() < kSegmentHeaderFieldsBytes) {
    return fail("file is " + std::to_string(in.size()) + " bytes, shorter than its header");
  }
  if (std::memcmp(in.data() + kMagicAt, kSegmentMagic.data(), kSegmentMagic.size()) != 0) {
    return fail("bad magic (not an annal segment)");
  }
  const auto stored = load_le<std::uint32_t>(in, kHeaderChecksumAt);
  if (stored != crc32c_extend(0, in.first(kHeaderChecksumAt))) return fail("checksum mismatch");
  const auto version = load_le<std::uint32_t>(in, kVersionAt);
  if (version != kFormatVersion) {
    return fail("format version " + std::to_string(version) + ", this build reads version " +
                std::to_string(kFormatVersion));
  }
  SegmentHeader header;
  header.salt = load_le<std::uint32_t>(in, kSaltAt);
  header.base_sequence = load_le<std::uint64_t>(in, kBaseAt);
  header.created_ns = load_le<std::uint64_t>(in, kCreatedAt);
  if (header.base_sequence < kFirstSequence) return fail("base sequence 0");
  return header;
}

namespace {

// Puts the header of a `size`-byte record whose payload already stands in `out`, zeroes the
// alignment padding after it and seals it with the checksum.
void seal_record(const RecordHeader& header, std::size_t size, std::uint32_t salt,
                 std::span<std::byte> out) noexcept {
  ANNAL_ASSERT(header.sequence >= kFirstSequence);
  store_le<std::uint32_t>(out, kSizeAt, static_cast<std::uint32_t>(size));
  store_le<std::uint64_t>(out, kSequenceAt, header.sequence);
  store_le<std::uint64_t>(out, kStreamAt, header.stream_id);
  store_le<std::uint64_t>(out, kVersionInStreamAt, header.stream_version);
  store_le<std::uint64_t>(out, kTimestampAt, header.timestamp_ns);
  store_le<std::uint16_t>(out, kTypeAt, header.type);
  store_le<std::uint16_t>(out, kFlagsAt, header.flags);
  store_le<std::uint32_t>(out, kCommitLagAt, header.commit_lag);
  std::fill(out.begin() + static_cast<std::ptrdiff_t>(size), out.end(), std::byte{0});
  store_le<std::uint32_t>(out, kChecksumAt,
                     crc32c_extend(salt, std::span<const std::byte>(out.data() + kSizeAt, size - kSizeAt)));
}

}  // namespace

void encode_record(const RecordHeader& header, std::span<const std::byte> payload,
                   std::uint32_t salt, std::span<std::byte> out) noexcept {
  encode_record(header, {}, payload, salt, out);
}

void encode_record(const RecordHeader& header, std::span<const std::byte> prefix,
                   std::span<const std::byte> payload, std::uint32_t salt,
                   std::span<std::byte> out) noexcept {
  const std::size_t size = kRecordHeaderBytes + prefix.size() + payload.size();
  ANNAL_ASSERT(size <= kRecordBytesMax);
  ANNAL_ASSERT(out.size() == padded_record_bytes(prefix.size() + payload.size()));
  std::byte* at = out.data() + kRecordHeaderBytes;
  if (!prefix.empty()) std::memcpy(at, prefix.data(), prefix.size());
  if (!payload.empty()) std::memcpy(at + prefix.size(), payload.data(), payload.size());
  seal_record(header, size, salt, out);
}

std::array<std::byte, kAssociatedBytes> associated_data(const RecordHeader& header) noexcept {
  std::array<std::byte, kAssociatedBytes> out{};
  const std::span<std::byte> at(out);
  store_le<std::uint64_t>(at, kSequenceAt - kSequenceAt, header.sequence);
  store_le<std::uint64_t>(at, kStreamAt - kSequenceAt, header.stream_id);
  store_le<std::uint64_t>(at, kVersionInStreamAt - kSequenceAt, header.stream_version);
  store_le<std::uint64_t>(at, kTimestampAt - kSequenceAt, header.timestamp_ns);
  store_le<std::uint16_t>(at, kTypeAt - kSequenceAt, header.type);
  store_le<std::uint16_t>(at, kFlagsAt - kSequenceAt, header.flags);
  return out;
}

void encode_record_around(const RecordHeader& header, std::size_t payload_bytes, std::uint32_t salt,
                          std::span<std::byte> out) noexcept {
  const std::size_t size = kRecordHeaderBytes + payload_bytes;
  ANNAL_ASSERT(size <= kRecordBytesMax);
  ANNAL_ASSERT(out.size() == padded_record_bytes(payload_bytes));
  seal_record(header, size, salt, out);
}

void encode_padding(std::uint64_t next_sequence, std::uint32_t commit_lag, std::uint32_t salt,
                    std::span<std::byte> out) noexcept {
  ANNAL_ASSERT(out.size() >= kRecordHeaderBytes && out.size() <= kPaddingBytesMax);
  ANNAL_ASSERT(out.size() % kRecordAlign == 0);
  std::fill(out.begin() + kRecordHeaderBytes, out.end(), std::byte{0});
  seal_record({.sequence = next_sequence, .type = kTypePadding, .commit_lag = commit_lag}, out.size(),
              salt, out);
}

void encode_durable_notice(std::uint64_t durable, bool synced, std::span<std::byte, kLockWordBytes> out) noexcept {
  encode_lock_word(durable, synced ? kNoticeMagic : kUnsyncedMagic, out);
}

std::optional<DurableNotice> decode_durable_notice(std::span<const std::byte> in) noexcept {
  if (const auto synced = decode_lock_word(in, kNoticeMagic)) return DurableNotice{*synced, true};
  if (const auto written = decode_lock_word(in, kUnsyncedMagic)) return DurableNotice{*written, false};
  return std::nullopt;
}

void encode_retention_floor(std::uint64_t first_kept, std::span<std::byte, kLockWordBytes> out) noexcept {
  encode_lock_word(first_kept, kFloorMagic, out);
}

std::optional<std::uint64_t> decode_retention_floor(std::span<const std::byte> in) noexcept {
  return decode_lock_word(in, kFloorMagic);
}

const char* to_string(RecordStatus status) noexcept {
  switch (status) {
    case RecordStatus::ok: return "ok";
    case RecordStatus::end_of_log: return "end of log";
    case RecordStatus::truncated: return "truncated record";
    case RecordStatus::bad_size: return "impossible record size";
    case RecordStatus::bad_checksum: return "checksum mismatch";
  }
  return "unknown";
}

DecodedRecord decode_record(std::span<const std::byte> in, std::uint32_t salt, Checksum checksum) noexcept {
  DecodedRecord decoded;
  if (in.size() < kSizeAt + sizeof(std::uint32_t)) {
    decoded.status = RecordStatus::truncated;
    return decoded;
  }
  const auto size = std::size_t{load_le<std::uint32_t>(in, kSizeAt)};
  if (size == 0) {
    // Preallocated space is zero. A zero size under a non-zero checksum is damage, not the end.
    decoded.status = load_le<std::uint32_t>(in, kChecksumAt) == 0 ? RecordStatus::end_of_log
                                                              : RecordStatus::bad_size;
    return decoded;
  }
  if (size < kRecordHeaderBytes || size > kRecordBytesMax) {
    decoded.status = RecordStatus::bad_size;
    return decoded;
  }
  if (in.size() < size) {
    decoded.status = RecordStatus::truncated;
    return decoded;
  }
  // The fields before the checksum: callers copy the result as soon as it returns, and copying
  // fields still on their way to memory stalls (a wide load cannot take its bytes from several
  // narrower stores in flight; in a replay, most of the reader's 13% of the time sat on two such
  // loads). Computing the checksum after them gives the stores time to land.
  decoded.header.sequence = load_le<std::uint64_t>(in, kSequenceAt);
  decoded.header.stream_id = load_le<std::uint64_t>(in, kStreamAt);
  decoded.header.stream_version = load_le<std::uint64_t>(in, kVersionInStreamAt);
  decoded.header.timestamp_ns = load_le<std::uint64_t>(in, kTimestampAt);
  decoded.header.type = load_le<std::uint16_t>(in, kTypeAt);
  decoded.header.flags = load_le<std::uint16_t>(in, kFlagsAt);
  decoded.header.commit_lag = load_le<std::uint32_t>(in, kCommitLagAt);
  decoded.payload = in.subspan(kRecordHeaderBytes, size - kRecordHeaderBytes);
  decoded.padded_bytes = padded_record_bytes(size - kRecordHeaderBytes);
  if (checksum == Checksum::verify &&
      load_le<std::uint32_t>(in, kChecksumAt) != crc32c_extend(salt, in.subspan(kSizeAt, size - kSizeAt))) {
    decoded.status = RecordStatus::bad_checksum;
    return decoded;
  }
  decoded.status = RecordStatus::ok;
  return decoded;
}

std::size_t claimed_record_bytes(std::span<const std::byte> in) noexcept {
  if (in.size() < kRecordHeaderBytes) return 0;
  const auto size = std::size_t{load_le<std::uint32_t>(in, kSizeAt)};
  if (size < kRecordHeaderBytes || size > kRecordBytesMax) return 0;
  return padded_record_bytes(size - kRecordHeaderBytes);
}

std::uint64_t claimed_record_sequence(std::span<const std::byte> in) noexcept {
  ANNAL_ASSERT(in.size() >= kRecordHeaderBytes);
  return load_le<std::uint64_t>(in, kSequenceAt);
}

}  // namespace annal::journal
