#include "segment_scan.h"

#include <algorithm>
#include <cstring>

namespace annal::journal {
namespace {

// Looks for valid records of this segment anywhere past `from`, at every aligned offset: counts
// them and returns the highest sequence their commit lags prove durable. Runs at open only: zero words
// (the preallocated rest of the file) cost one load each, other offsets a look at the sequence
// word and, where that is one a record here could have, a checksum. (Sizes cannot filter: any
// size up to the format's limit is a record some writer may have made.)
struct PastStop {
  std::uint64_t durable_proof = 0;
  std::uint64_t records = 0;
  std::uint64_t data_end = 0;
  std::uint64_t sequence_max = 0;
};
PastStop look_past_stop(SegmentBytes& file, std::uint64_t from, std::uint64_t stop_sequence,
                        std::uint32_t salt) {
  // A record here follows at most one record per header's worth of the file after the stop.
  const std::uint64_t sequence_max = stop_sequence + file.size() / kRecordHeaderBytes;
  PastStop past{.data_end = from};
  std::uint64_t at = from;
  while (at + kRecordHeaderBytes <= file.size()) {
    // Runs of zero words are skipped inside the bytes at hand, without asking the file for each.
    const std::span<const std::byte> ahead = file.from(at, kRecordHeaderBytes);
    if (ahead.size() < kRecordHeaderBytes) break;  // a read failed
    std::size_t zeros = 0;
    for (std::uint64_t word = 0; zeros + kRecordHeaderBytes <= ahead.size(); zeros += kRecordAlign) {
      std::memcpy(&word, ahead.data() + zeros, sizeof(word));
      if (word != 0) break;
    }
    if (zeros > 0) {
      at += zeros;
      continue;
    }
    past.data_end = std::max(past.data_end, at + kRecordAlign);
    const std::uint64_t sequence = claimed_record_sequence(ahead);
    if (sequence < stop_sequence || sequence > sequence_max) {
      at += kRecordAlign;
      continue;
    }
    const DecodedRecord record = decode_record(file.record_at(at), salt);
    const std::uint64_t start = at;
    at += kRecordAlign;
    if (record.status != RecordStatus::ok || record.header.sequence < stop_sequence) continue;
    ++past.records;
    past.data_end = std::max(past.data_end, start + record.padded_bytes);
    past.sequence_max = std::max(past.sequence_max, record.header.sequence);
    const std::uint64_t lag = record.header.commit_lag;
    if (record.header.sequence > lag) {
      past.durable_proof = std::max(past.durable_proof, record.header.sequence - lag);
    }
  }
  return past;
}

}  // namespace

void SegmentBytes::refill(std::uint64_t offset, std::size_t bytes) {
  ANNAL_ASSERT(io_ != nullptr);  // a file wholly in memory never needs reading
  const std::uint64_t begin = offset / align_ * align_;
  start_ = offset;  // until a read succeeds: from() then gives nothing, not bytes before `offset`
  window_ = {};
  if (!status_.ok()) return;
  bytes = static_cast<std::size_t>(std::min<std::uint64_t>(bytes, size_ - offset));  // no more than the file has
  const auto round_up = [&](std::uint64_t n) { return (n + align_ - 1) / align_ * align_; };
  const auto needed = static_cast<std::size_t>(round_up(std::max<std::uint64_t>(chunk_bytes_, offset - begin + bytes)));
  if (capacity_ < needed) {
    // aligned_alloc wants a size that is a multiple of the alignment.
    const std::size_t alignment = std::max(align_, alignof(std::max_align_t));
    const std::size_t allocated = (needed + alignment - 1) / alignment * alignment;
    buffer_.reset(static_cast<std::byte*>(std::aligned_alloc(alignment, allocated)));
    ANNAL_ASSERT(buffer_ != nullptr);
    capacity_ = needed;
  }
  const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(capacity_, round_up(size_ - begin)));
  const auto n = io_->read(file_, begin, std::span(buffer_.get(), want));
  if (!n.ok()) {
    status_ = n.status();
    return;
  }
  // Short of `offset` only where the file was shorter than its size said: nothing then, as above.
  if (n.value() < offset - begin) return;
  start_ = begin;
  window_ = std::span<const std::byte>(buffer_.get(), std::min<std::uint64_t>(n.value(), size_ - begin));
}

SegmentScan scan_segment(std::span<const std::byte> file, const SegmentHeader& header,
                         std::uint64_t index_interval_bytes) {
  SegmentBytes bytes(file);
  return scan_segment(bytes, header, index_interval_bytes);
}

SegmentScan scan_segment(SegmentBytes& file, const SegmentHeader& header, std::uint64_t index_interval_bytes) {
  SegmentScan scan;
  scan.next_sequence = header.base_sequence;
  scan.valid_bytes = kSegmentHeaderBytes;
  std::uint64_t at = kSegmentHeaderBytes;
  std::uint64_t expected = header.base_sequence;
  std::uint64_t batch_records = 0;
  IndexMarker marker(at, index_interval_bytes);
  for (;;) {
    if (at >= file.size()) {
      scan.stop = ScanStop::file_end;
      break;
    }
    const DecodedRecord record = decode_record(file.record_at(at), header.salt);
    if (record.status == RecordStatus::end_of_log) {
      scan.stop = ScanStop::end_of_log;
      break;
    }
    if (record.status != RecordStatus::ok) {
      scan.stop = ScanStop::bad_record;
      scan.bad_status = record.status;
      break;
    }
    if (record.header.sequence != expected) {
      scan.stop = ScanStop::wrong_sequence;
      break;
    }
    const bool indexed = marker.due(at, record.padded_bytes);  // padding too: it moves the marker
    at += record.padded_bytes;
    if (record.header.type == kTypePadding) {
      // Padding ends a direct-I/O write, so it follows a batch end; a writer resumes after it.
      if (batch_records == 0) scan.valid_bytes = std::min<std::uint64_t>(at, file.size());
      continue;
    }
    if (indexed) scan.index.add({expected, at - record.padded_bytes});
    ++expected;
    ++batch_records;
    if ((record.header.flags & kFlagBatchEnd) != 0) {
      scan.next_sequence = expected;
      scan.valid_bytes = std::min<std::uint64_t>(at, file.size());
      scan.records += batch_records;
      batch_records = 0;
    }
  }
  scan.stop_offset = std::min<std::uint64_t>(at, file.size());
  scan.stop_sequence = expected;
  scan.batch_open = batch_records > 0;
  scan.index.drop_from(scan.next_sequence);  // records past the last complete batch do not count
  // Zeros where a record should be are also suspect: a zeroed sector of acknowledged records
  // would otherwise pass for the end of the log.
  scan.data_end = scan.stop_offset;
  if (scan.stop != ScanStop::file_end) {
    const PastStop past =
        look_past_stop(file, scan.stop_offset, scan.stop_sequence, header.salt);
    scan.durable_proof = past.durable_proof;
    scan.records_past_stop = past.records;
    scan.data_end = std::min(past.data_end, file.size());
    scan.sequence_past_stop_max = past.sequence_max;
  }
  return scan;
}

Verdict judge(const SegmentScan& scan, bool last_segment) noexcept {
  const bool damaged = scan.stop == ScanStop::bad_record || scan.stop == ScanStop::wrong_sequence;
  const bool leftovers = damaged || scan.batch_open || scan.records_past_stop > 0;
  if (!last_segment) return leftovers ? Verdict::corruption : Verdict::intact;
  // Records up to durable_proof were acknowledged; losing any of them is not a crash's doing.
  if (scan.durable_proof >= scan.next_sequence) return Verdict::corruption;
  return leftovers ? Verdict::torn_tail : Verdict::intact;
}

}  // namespace annal::journal
