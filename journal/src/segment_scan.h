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

#include <cstddef>
#include <cstdint>
#include <span>

#include "annal/journal/format.h"
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
  // The sparse index of the records up to valid_bytes, built by the walk itself.
  SegmentIndex index;
};

// `file` is the whole segment file, header included; `header` is its decoded header. The index
// gets an entry every `index_interval_bytes` (segment_index.h).
[[nodiscard]] SegmentScan scan_segment(std::span<const std::byte> file, const SegmentHeader& header,
                                       std::size_t record_bytes_max,
                                       std::uint64_t index_interval_bytes);

// intact: append at valid_bytes. torn_tail: zero the file from valid_bytes on and sync it (log what
// was dropped), then append. corruption: refuse to open, naming file, stop_offset, stop_sequence
// (or, in point-in-time recovery, treat as torn_tail and drop every later segment).
enum class Verdict { intact, torn_tail, corruption };
[[nodiscard]] Verdict judge(const SegmentScan& scan, bool last_segment) noexcept;

}  // namespace annal::journal
