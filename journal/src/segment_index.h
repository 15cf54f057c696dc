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
// Derived data, never persisted. Recovery verifies every segment at open by design (segment_scan),
// and that walk fills the index as it goes at no extra I/O; the writer extends the index of the
// segment it writes. A persisted index would save nothing while the open-time scan stays, and would
// be one more file to keep consistent through crashes; it earns its place only once open stops
// scanning sealed segments.
//
// Memory: 16 bytes per entry, at most segment_bytes_max / interval + 1 entries per segment (each
// boundary lies in one record): 16 KiB per segment with the defaults (64 MiB segments, 64 KiB
// interval), for every segment retention keeps.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "annal/base/assert.h"
#include "annal/journal/format.h"

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

}  // namespace annal::journal
