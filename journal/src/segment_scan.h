// Reading a segment's records back at open, and judging what a damaged tail means.
//
// The scan walks records from the end of the header while each one decodes and carries the next
// sequence (padding records carry it too, without taking it, and are stepped over). It remembers the end of the last complete batch (a record flagged kFlagBatchEnd):
// that is where a recovered log ends, since an append is all or nothing. Unless the walk reached
// the end of the file, the rest of the file is searched for valid records whose commit_lag proves
// acknowledged data lies beyond the stop (see format.h).
//
// The verdict, one row per case (segment_scan_test enumerates them all). "Leftovers" are a
// damaged record where the walk stopped, a batch left open (records after the last batch end), or
// valid records anywhere past the stop. "Proof" is a record past the stop whose commit_lag says a
// sequence at or beyond the stop was acknowledged.
//
//   | segment | leftovers | proof | verdict    |
//   |---------|-----------|-------|------------|
//   | last    | no        | no    | intact     |
//   | last    | yes       | no    | torn_tail  |
//   | last    | any       | yes   | corruption |
//   | older   | no        | -     | intact     |
//   | older   | yes       | -     | corruption |
//
// Older segments are never torn by a crash: the writer syncs a segment completely before it
// writes the first record of the next one, and never lets a batch straddle two segments. So any
// damage there is corruption, and so is an open batch at the end of an older segment.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>
#include <vector>

#include "annal/journal/format.h"
#include "annal/journal/io_backend.h"
#include "segment_index.h"

namespace annal::journal {

enum class ScanStop {
  end_of_log,      // zeros where the next record would start
  file_end,        // the file ends exactly after a record
  bad_record,      // truncated, impossible size, or checksum mismatch
  wrong_sequence,  // a valid record, but not the next sequence: stale or misplaced
};

struct SegmentScan {
  std::uint64_t next_sequence = 0;  // one past the last record of the last complete batch
  std::uint64_t valid_bytes = 0;    // file offset just past that record: where a writer resumes
  std::uint64_t records = 0;        // records up to valid_bytes
  ScanStop stop = ScanStop::end_of_log;
  RecordStatus bad_status = RecordStatus::ok;  // with stop == bad_record
  std::uint64_t stop_offset = 0;    // where the walk stopped
  std::uint64_t stop_sequence = 0;  // the sequence expected there
  bool batch_open = false;          // records after the last batch end were dropped
  // Valid records found past the stop, and the highest sequence their commit lags prove was
  // acknowledged (0: none). Unacknowledged ones must still be erased before the log grows again:
  // a later crash could otherwise make them look like the continuation of the new log.
  std::uint64_t records_past_stop = 0;
  std::uint64_t durable_proof = 0;
  // What a cut at valid_bytes removes: up to data_end (past the last non-zero byte the search
  // met; the stop offset if it searched nothing), and the highest sequence of a valid record past
  // the stop (0: none).
  std::uint64_t data_end = 0;
  std::uint64_t sequence_past_stop_max = 0;
  // The sparse index of the records up to valid_bytes, built by the walk itself.
  SegmentIndex index;
};

// A segment file's bytes as the scan walks them: the whole file in memory, or the file read a chunk
// at a time into one buffer. Recovery reads that way: a fresh buffer the size of a segment (64 MiB)
// cost more in page faults than reading the file did, and is a lot of memory to take at open.
class SegmentBytes {
 public:
  explicit SegmentBytes(std::span<const std::byte> file) noexcept : size_(file.size()), window_(file) {}
  // `file`, `size` bytes long, read through `io` in reads of `chunk_bytes`; the buffer grows past
  // that only for a record that does not fit. The file must stay open while this is used.
  // `direct`: the file was opened for O_DIRECT (OpenMode::read_write_direct), so every read starts
  // on a block boundary, is whole blocks long and lands in a block-aligned buffer.
  SegmentBytes(IoBackend& io, FileId file, std::uint64_t size, std::size_t chunk_bytes, bool direct = false) noexcept
      : io_(&io), file_(file), size_(size), chunk_bytes_(chunk_bytes), align_(direct ? kDirectBlockBytes : 1) {}

  [[nodiscard]] std::uint64_t size() const noexcept { return size_; }
  // The file from `offset` (at most size()) on: at least `bytes` of it, fewer only where the file
  // ends, or where a read failed (status() then says so for good). Valid until the next call.
  [[nodiscard]] std::span<const std::byte> from(std::uint64_t offset, std::size_t bytes) {
    ANNAL_ASSERT(offset <= size_);
    const std::uint64_t end = std::min<std::uint64_t>(offset + bytes, size_);
    if (offset < start_ || end > start_ + window_.size()) refill(offset, bytes);  // starts it at offset
    return window_.subspan(static_cast<std::size_t>(offset - start_));
  }
  // The record at `offset`: a header's worth, or the whole record if its size is possible (as far
  // as the file goes: from() reads no further, so a size past the end, torn or damaged, costs no
  // more than reading the rest).
  [[nodiscard]] std::span<const std::byte> record_at(std::uint64_t offset) {
    const std::size_t claimed = claimed_record_bytes(from(offset, kRecordHeaderBytes));
    return from(offset, std::max(claimed, kRecordHeaderBytes));
  }
  [[nodiscard]] const Status& status() const noexcept { return status_; }

 private:
  void refill(std::uint64_t offset, std::size_t bytes);

  IoBackend* io_ = nullptr;  // null: the whole file is in window_
  FileId file_ = -1;
  std::uint64_t size_ = 0;
  std::size_t chunk_bytes_ = 0;
  std::size_t align_ = 1;  // of reads' offsets, lengths and buffer
  struct Free {
    void operator()(std::byte* bytes) const noexcept { std::free(bytes); }
  };
  std::unique_ptr<std::byte[], Free> buffer_;
  std::size_t capacity_ = 0;
  std::uint64_t start_ = 0;  // the file offset of window_[0]
  std::span<const std::byte> window_;
  Status status_;
};

// `file` is the whole segment file, header included; `header` is its decoded header. The index
// gets an entry every `index_interval_bytes` (segment_index.h). A read that fails stops the walk as
// a truncated record would: the caller must check file.status() before judging the scan.
[[nodiscard]] SegmentScan scan_segment(SegmentBytes& file, const SegmentHeader& header,
                                       std::uint64_t index_interval_bytes);
// The same over a file wholly in memory (tests enumerate the verdicts this way).
[[nodiscard]] SegmentScan scan_segment(std::span<const std::byte> file, const SegmentHeader& header,
                                       std::uint64_t index_interval_bytes);

// intact: append at valid_bytes. torn_tail: zero the file from valid_bytes on and sync it (log what
// was dropped), then append. corruption: refuse to open, naming file, stop_offset, stop_sequence
// (or, in point-in-time recovery, treat as torn_tail and drop every later segment).
enum class Verdict { intact, torn_tail, corruption };
[[nodiscard]] Verdict judge(const SegmentScan& scan, bool last_segment) noexcept;

}  // namespace annal::journal
