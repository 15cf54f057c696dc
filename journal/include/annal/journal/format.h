// The journal's on-disk format. docs/format.md walks through a worked example.
//
// A journal is a directory of segment files, each named by the sequence of its first record,
// zero-padded so that names sort in log order: 00000000000000000001.log, 00000000000001048577.log.
//
//  segment file                          record (all integers little-endian)
//  +-------------------------------+     +0  checksum        u32  CRC32C of [+4, +size), seeded
//  | header: 64 B of fields, zero  |                              with the segment's salt
//  | padded to 4 KiB               |     +4  size            u32  header + payload bytes, unpadded;
//  +-------------------------------+                              0 = nothing here (end of log)
//  | record                        |     +8  sequence        u64  global, contiguous from 1
//  | record        (8-byte aligned)|     +16 stream_id       u64
//  | ...                           |     +24 stream_version  u64  position in its stream, from 0
//  +-------------------------------+     +32 timestamp_ns    u64  set by the engine at append
//  | zeros: preallocated, unused   |     +40 type            u16  0 = padding, else the engine's
//  +-------------------------------+     +42 flags           u16  kFlag* below
//                                        +44 commit_lag      u32  see below
//                                        +48 payload, then zeros up to a multiple of 8
//
//  segment header: +0 magic "ANNALSEG", +8 version u32, +12 salt u32, +16 base_sequence u64,
//                  +24 created_ns u64, +32..59 zero, +60 checksum u32 (CRC32C of [0, 60))
//
// Why each record field earns its bytes (a trading event is ~64 B, so the header is 43% of it):
// - checksum: torn writes, bit rot and misdirected writes must be caught before anyone reads a
//   record. The salt (random per segment file) makes records left in a reused or preallocated
//   file fail the check even if their bytes are otherwise intact.
// - size: records vary in length; u32 because an event is capped far below 4 GiB.
// - sequence: the global order, and the proof a record belongs where it is found: recovery
//   requires base, base + 1, ... so a stale or misplaced record cannot pass as the next one.
// - stream_id, stream_version: optimistic concurrency and stream reads are rebuilt from these
//   without opening payloads; u64 because busy streams (an order book) outlive 2^32 events.
// - timestamp_ns: point-in-time recovery by time, and latency measurement.
// - type, flags: u16 each; 65,535 event types is plenty, and flags mark atomic batches.
// - commit_lag: how far this record's sequence was ahead of the durable sequence when it was
//   written (saturating at 2^32 - 1). A valid record with sequence S and lag L proves every
//   record up to S - L was acknowledged durable. That is how recovery tells a torn tail (a crash
//   can leave garbage only past the durable point) from corruption of acknowledged data, which
//   it must refuse to hide. Under Durability::none, where acknowledged means only written, the
//   lag counts from what an fdatasync covered (the segments before this one).
//
// The segment header gets a whole 4 KiB block so that no later write (O_DIRECT writes whole
// blocks) ever rewrites the block holding it: a torn header would lose the whole segment.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "annal/base/status.h"

namespace annal::journal {

static_assert(std::endian::native == std::endian::little,
              "the format is little-endian; a big-endian port must byte-swap in format.cc");

inline constexpr std::uint32_t kFormatVersion = 1;
inline constexpr std::array<char, 8> kSegmentMagic = {'A', 'N', 'N', 'A', 'L', 'S', 'E', 'G'};
inline constexpr std::size_t kSegmentHeaderFieldsBytes = 64;
inline constexpr std::size_t kSegmentHeaderBytes = 4096;
inline constexpr std::size_t kRecordHeaderBytes = 48;
inline constexpr std::size_t kRecordAlign = 8;
// Sequences start at 1: 0 is never a valid record, so "nothing durable yet" needs no flag.
inline constexpr std::uint64_t kFirstSequence = 1;
inline constexpr std::uint32_t kCommitLagMax = UINT32_MAX;
// The largest record the format allows (sizes are u32; this leaves room for the padding without
// overflow). Stored records are judged by this, never by a writer's option: Options::
// record_bytes_max limits what an open may append, and a later open with a smaller one must still
// read everything an earlier one wrote.
inline constexpr std::size_t kRecordBytesMax = std::size_t{1} << 30;

// With direct I/O (Options::direct_io) every write covers whole blocks of this size at offsets
// that are multiples of it, so each write ends with a padding record up to a block boundary.
inline constexpr std::size_t kDirectBlockBytes = 4096;
// A padding record fills the rest of a block; when less than a record header is left, it runs to
// the end of the next block instead.
inline constexpr std::size_t kPaddingBytesMax = kDirectBlockBytes + kRecordHeaderBytes;

static_assert(kSegmentHeaderBytes % kRecordAlign == 0 && kRecordHeaderBytes % kRecordAlign == 0);
static_assert(kSegmentHeaderBytes % kDirectBlockBytes == 0 && kDirectBlockBytes % kRecordAlign == 0);
static_assert(kSegmentHeaderFieldsBytes <= kSegmentHeaderBytes);

// Record type 0 fills space a writer must skip (to end an O_DIRECT write on a block boundary);
// readers step over it. It carries the sequence the next real record will have, without taking
// it, so a stale or misplaced one still fails the sequence check. All other types are the engine's.
inline constexpr std::uint16_t kTypePadding = 0;
// The last record of one append: a crash may cut a multi-record append, and recovery drops a
// batch whose end did not survive, so appends are all or nothing.
inline constexpr std::uint16_t kFlagBatchEnd = 1u << 0;
// The payload is sealed: encrypted at rest by the RecordCipher the journal was opened with
// (record_cipher.h), which a reader needs to open it. The checksum covers the sealed bytes, so
// recovery, verify and the checksum itself need no key.
inline constexpr std::uint16_t kFlagSealed = 1u << 1;

// What a sealed record's seal authenticates beside its payload: the record's bytes +8..+44
// (sequence, stream_id, stream_version, timestamp_ns, type, flags) as stored. A record moved to
// another sequence or stream, or retyped, then fails to open even with its checksum redone.
inline constexpr std::size_t kAssociatedBytes = 36;

struct SegmentHeader {
  std::uint64_t base_sequence = kFirstSequence;
  std::uint64_t created_ns = 0;
  std::uint32_t salt = 0;
};

struct RecordHeader {
  std::uint64_t sequence = 0;
  std::uint64_t stream_id = 0;
  std::uint64_t stream_version = 0;
  std::uint64_t timestamp_ns = 0;
  std::uint16_t type = 0;
  std::uint16_t flags = 0;
  std::uint32_t commit_lag = 0;
};

[[nodiscard]] constexpr std::size_t padded_record_bytes(std::size_t payload_bytes) noexcept {
  return (kRecordHeaderBytes + payload_bytes + kRecordAlign - 1) & ~(kRecordAlign - 1);
}

// "00000000000000000001.log" for base sequence 1, and back. Names that do not parse are not
// segments (the directory may hold other files: the lock, indexes, snapshots).
[[nodiscard]] std::string segment_file_name(std::uint64_t base_sequence);
[[nodiscard]] std::optional<std::uint64_t> parse_segment_file_name(std::string_view name);

void encode_segment_header(const SegmentHeader& header,
                           std::span<std::byte, kSegmentHeaderBytes> out) noexcept;
// Checks magic, version and checksum; the message says which failed. `where` names the file.
[[nodiscard]] Result<SegmentHeader> decode_segment_header(std::span<const std::byte> in,
                                                          std::string_view where);

// Writes header + payload + zero padding into `out` (exactly padded_record_bytes(payload) long)
// with the checksum computed under `salt`.
void encode_record(const RecordHeader& header, std::span<const std::byte> payload,
                   std::uint32_t salt, std::span<std::byte> out) noexcept;
// The same with the payload given in two parts, `prefix` then `payload` (RecordInput::prefix);
// `out` is padded_record_bytes(prefix.size() + payload.size()) long.
void encode_record(const RecordHeader& header, std::span<const std::byte> prefix,
                   std::span<const std::byte> payload, std::uint32_t salt,
                   std::span<std::byte> out) noexcept;

// The bytes a seal authenticates for a record with `header` (kAssociatedBytes above).
[[nodiscard]] std::array<std::byte, kAssociatedBytes> associated_data(const RecordHeader& header) noexcept;
// Finishes a record whose `payload_bytes` of payload the caller wrote at out[kRecordHeaderBytes]
// (a cipher sealing in place): the header, the zero padding and the checksum. `out` is
// padded_record_bytes(payload_bytes) long.
void encode_record_around(const RecordHeader& header, std::size_t payload_bytes, std::uint32_t salt,
                          std::span<std::byte> out) noexcept;

// Writes a padding record filling all of `out` (a multiple of kRecordAlign, from a record header
// to kPaddingBytesMax bytes) that stands before record `next_sequence`.
void encode_padding(std::uint64_t next_sequence, std::uint32_t commit_lag, std::uint32_t salt,
                    std::span<std::byte> out) noexcept;

// The directory's LOCK file. The writer holds an exclusive lock on it (an open file description
// lock, so tools can ask whether it is held without taking it) for as long as the journal is open,
// and keeps two words in it, each a u64, a magic u32 and a checksum u32 (CRC32C of the 12 before):
//
//   +0  durable notice   the sequence just acknowledged durable, "DURA" ("WRIT" under
//                        Durability::none); written after each round's sync
//   +16 retention floor  the first sequence the log keeps, "KEEP"; synced before retention removes
//                        a segment, and at the first open
//
// Readers in other processes (annal tail) cap what they show at the notice: the segments may
// already hold records of a round whose fdatasync has not completed, which a power cut could still
// take back. The notice itself is never synced, so after a crash it can only be older than what
// the log durably holds, never newer. That makes both words witnesses for open() and the tools: a
// log that ends before the notice, or starts after the floor, lost acknowledged events
// (Options::accept_data_loss in journal.h).
inline constexpr std::string_view kLockFileName = "LOCK";
inline constexpr std::size_t kLockWordBytes = 16;
inline constexpr std::size_t kDurableNoticeBytes = kLockWordBytes;
inline constexpr std::uint64_t kRetentionFloorOffset = kLockWordBytes;
// `synced`: an fdatasync covered the sequence (every mode but Durability::none, whose notice says
// "WRIT" instead of "DURA"). Both kinds cap what readers show; only a synced one is a witness.
struct DurableNotice {
  std::uint64_t sequence = 0;
  bool synced = false;
};
void encode_durable_notice(std::uint64_t durable, bool synced, std::span<std::byte, kLockWordBytes> out) noexcept;
// nullopt for anything else: a short file, an older writer's empty LOCK, a read torn by a write.
[[nodiscard]] std::optional<DurableNotice> decode_durable_notice(std::span<const std::byte> in) noexcept;
void encode_retention_floor(std::uint64_t first_kept, std::span<std::byte, kLockWordBytes> out) noexcept;
[[nodiscard]] std::optional<std::uint64_t> decode_retention_floor(std::span<const std::byte> in) noexcept;

enum class RecordStatus {
  ok,
  end_of_log,    // a zero size word: preallocated space, nothing was written here
  truncated,     // the bytes end inside the record (a short file or a short read)
  bad_size,      // size smaller than a header or larger than kRecordBytesMax
  bad_checksum,  // torn, corrupted, or left over from an older file
};
[[nodiscard]] const char* to_string(RecordStatus status) noexcept;

struct DecodedRecord {
  RecordStatus status = RecordStatus::end_of_log;
  RecordHeader header;                   // valid when status == ok
  std::span<const std::byte> payload;    // points into the input
  std::size_t padded_bytes = 0;          // distance to the next record when status == ok
};

// Whether decode_record computes the checksum. `trusted` is for bytes this process has verified
// already and nobody has written since (Journal: what recovery's scan read at open); everything
// else, the size included, is still checked.
enum class Checksum { verify, trusted };

// Decodes the record at the start of `in`. Checks only what the bytes can tell; whether the
// sequence is the expected one is the reader's business.
[[nodiscard]] DecodedRecord decode_record(std::span<const std::byte> in, std::uint32_t salt,
                                          Checksum checksum = Checksum::verify) noexcept;

// The bytes, padding included, that the record at the start of `in` says it spans: what a reader
// must hold to decode it. 0 when `in` is shorter than a header or the size is impossible
// (decode_record says which).
[[nodiscard]] std::size_t claimed_record_bytes(std::span<const std::byte> in) noexcept;
// The sequence the record at the start of `in` (a header's worth at least) says it has, unchecked:
// a cheap filter before a checksum, for scans that try every offset.
[[nodiscard]] std::uint64_t claimed_record_sequence(std::span<const std::byte> in) noexcept;

}  // namespace annal::journal
