// SegmentIndex: a sparse, in-memory map from sequence to file offset within one segment, so a
// reader starting at sequence S reads from the nearest indexed record at or before S instead of
// from the start of the segment.
//
// Which records get an entry. Boundaries lie every `interval` bytes from the end of the segment
// header (the first boundary is the first record's offset); a record gets an entry when its bytes
// [offset, offset + padded size) contain a boundary. So the first record of a segment always has
// one, consecutive entries are about `interval` bytes apart, and a record larger than the interval
// takes one entry however many boundaries it covers. The rule depends only on the record's place,
// so the writer (as it encodes) and recovery (as it scans) produce the same entries.
//
// Built by the writer as it encodes and by recovery as it scans. A sealed segment's index (and its
// end) is also persisted beside it, as <base>.idx, when the writer moves on to the next segment, so
// that open() need not read sealed segments at all: it scans only the segments without a valid
// index file, which after a crash is the tail. The file is advisory: one that is missing, torn,
// stale (another salt, base, end or interval) is ignored and the segment scanned as before. Every
// record is still verified when read.
//
// Memory: 16 bytes per entry, at most segment_bytes_max / interval + 1 entries per segment (each
// boundary lies in one record): 16 KiB per segment with the defaults (64 MiB segments, 64 KiB
// interval), for every segment retention keeps.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "annal/base/assert.h"
#include "annal/journal/format.h"
#include "annal/journal/io_backend.h"

namespace annal::journal {

struct IndexEntry {
  std::uint64_t sequence = 0;
  std::uint64_t offset = 0;  // file offset of that record's header
};
static_assert(sizeof(IndexEntry) == 16, "the memory bound in the header comment assumes 16 B");

// The most entries a run of `bytes` of records can produce: one per boundary inside, plus one.
[[nodiscard]] constexpr std::uint64_t index_entries_max(std::uint64_t bytes,
                                                        std::uint64_t interval) noexcept {
  return bytes / interval + 1;
}

// Decides, record by record, which records of a contiguous run get an entry. Costs one compare per
// record; a division only when an entry is due.
class IndexMarker {
 public:
  // `offset`: where the run starts (a record boundary at or after the segment header).
  IndexMarker(std::uint64_t offset, std::uint64_t interval) noexcept
      : interval_(interval), next_(boundary_at_or_after(offset)) {
    ANNAL_ASSERT(interval > 0 && offset >= kSegmentHeaderBytes);
  }

  // True if the record at [offset, offset + bytes) takes an entry. Call for every record, in order.
  [[nodiscard]] bool due(std::uint64_t offset, std::uint64_t bytes) noexcept {
    ANNAL_ASSERT(offset <= next_);  // no record was skipped
    if (offset + bytes <= next_) return false;
    next_ = boundary_at_or_after(offset + bytes);
    return true;
  }

 private:
  [[nodiscard]] std::uint64_t boundary_at_or_after(std::uint64_t offset) const noexcept {
    const std::uint64_t past = offset - kSegmentHeaderBytes;
    return kSegmentHeaderBytes + (past + interval_ - 1) / interval_ * interval_;
  }

  std::uint64_t interval_;
  std::uint64_t next_;  // the first boundary not yet covered by an entry
};

class SegmentIndex {
 public:
  // Entries come in log order: strictly increasing sequences and offsets.
  void add(IndexEntry entry) {
    ANNAL_ASSERT(entries_.empty() || (entry.sequence > entries_.back().sequence &&
                                      entry.offset > entries_.back().offset));
    ANNAL_ASSERT(entry.offset >= kSegmentHeaderBytes);
    entries_.push_back(entry);
  }
  void add(std::span<const IndexEntry> entries) {
    for (const IndexEntry& entry : entries) add(entry);
  }
  // Drops the entries of records at or past `sequence`: recovery cut them off with a torn tail.
  void drop_from(std::uint64_t sequence);
  void reserve(std::size_t entries) { entries_.reserve(entries); }

  // The entry with the greatest sequence <= `sequence`, if any.
  [[nodiscard]] std::optional<IndexEntry> floor(std::uint64_t sequence) const noexcept;
  [[nodiscard]] std::span<const IndexEntry> entries() const noexcept { return entries_; }

 private:
  std::vector<IndexEntry> entries_;
};

// A sealed segment's summary as persisted in its index file:
//
//  +0   magic "ANNALIDX"    +8  version u32 (1)    +12 salt u32 (the segment header's)
//  +16  base u64            +24 end_sequence u64   +32 end_offset u64   +40 interval u64
//  +48  count u64           +56 count x (sequence u64, offset u64)      then CRC32C u32 of all before
struct SealedSegment {
  std::uint64_t base = kFirstSequence;
  std::uint64_t end_sequence = kFirstSequence;
  std::uint64_t end_offset = kSegmentHeaderBytes;
  std::uint64_t interval = 0;
  std::uint32_t salt = 0;
  SegmentIndex index;
};

// "…/00000000000000000001.log" -> "…/00000000000000000001.idx".
[[nodiscard]] std::string sealed_index_path(const std::string& segment_path);
// Written to a .tmp file and renamed; not synced (a lost or torn one only costs a scan).
Status write_sealed_index(IoBackend& io, const std::string& segment_path, const SealedSegment& sealed);
// not_found if there is none; corruption if it fails its checks.
Result<SealedSegment> read_sealed_index(IoBackend& io, const std::string& segment_path);

}  // namespace annal::journal
