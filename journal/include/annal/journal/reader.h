// Reader: iterates the journal's durable records in order, from any sequence, at disk speed.
//
//   auto reader = journal->reader(checkpoint);                  // not_found: removed by retention
//   for (;;) {
//     auto record = reader.value()->next(Journal::Clock::now() + 1s);  // tailing
//     if (!record.ok()) break;                                   // timed_out, corruption, ...
//     apply(record.value().header, record.value().payload);
//   }
//   checkpoint = reader.value()->position();
//
// How it reads. It asks the journal where its position lies (Journal::locate: the segment and the
// nearest sparse index entry at or before it), opens that segment file, and reads it in chunks of
// Options::read_chunk_bytes into one buffer it owns: one read call per chunk, not per record. Each
// record is checked (checksum under the segment's salt, and its sequence is the expected one) before
// it is returned, including the few it steps over between the index entry and the position. The
// checksum is computed once per process: records the journal's open verified already
// (SegmentLocation::verified_end_offset) get every other check but that one. At the end of a
// segment it follows the log into the next one.
//
// It returns only durable records: never one past durable_sequence() at the time of the call, even
// if its bytes are already in the file.
//
// Lifetime and threads: the Journal must outlive its readers. A reader is not thread-safe; use one
// per thread (any number of readers may run beside the writer and each other). It holds one segment
// file open.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "annal/base/status.h"
#include "annal/journal/format.h"
#include "annal/journal/io_backend.h"
#include "annal/journal/journal.h"

namespace annal::journal {

// A record as read. The payload points into the reader's buffer (or, for a sealed record, its
// buffer of opened payloads) and stays valid until the next call on that reader.
struct RecordView {
  RecordHeader header;
  std::span<const std::byte> payload;
  // Sealed under a key destroyed on purpose (RecordOpener::erased): `payload` is only the part the
  // cipher leaves in clear.
  bool erased = false;
};

class Reader {
 public:
  // Made by Journal::reader(); `io` is the journal's backend, `options` its options.
  Reader(Journal& journal, std::shared_ptr<IoBackend> io, const Options& options,
         std::uint64_t from);
  ~Reader();
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;

  // The next durable record, or std::nullopt when the reader has caught up with
  // durable_sequence(). Errors: not_found if retention removed the segment it needs, corruption
  // (naming file, offset and sequence) if a record fails its checks, the backend's error if a read
  // fails. After an error the position stays where it was.
  Result<std::optional<RecordView>> next();
  // Tailing: like next(), but when caught up it blocks until more is durable. ErrorCode::timed_out
  // once `deadline` passes; the journal's error if it fails, failed if it closes.
  Result<RecordView> next(Journal::Clock::time_point deadline);

  // The sequence next() returns: a checkpoint to resume from with Journal::reader().
  [[nodiscard]] std::uint64_t position() const noexcept { return position_; }
  // Moves the position to `sequence`, forwards or backwards, for reads that jump from record to
  // record (the engine follows a stream's back-pointers this way). Costs a locate(); reads nothing
  // until next(), which reuses the buffer when it already holds the bytes.
  void seek(std::uint64_t sequence) noexcept;

 private:
  Status enter_segment();
  Result<std::uint32_t> read_segment_header(FileId file, const SegmentLocation& where);
  Status fill(std::size_t bytes);
  Result<DecodedRecord> decode_at_cursor();
  // `what`, naming the record at the cursor: file, offset and sequence.
  [[nodiscard]] Status at_cursor(ErrorCode code, const std::string& what) const;
  [[nodiscard]] Status corruption(const std::string& what) const;
  // The plain payload of the sealed record at the cursor, in opened_.
  Result<std::span<const std::byte>> open_sealed(const DecodedRecord& record);

  Journal& journal_;
  std::shared_ptr<IoBackend> io_;
  const std::size_t chunk_bytes_;
  // Encryption at rest (Options::cipher): this reader's opener, and what sealing adds to a payload.
  const std::unique_ptr<RecordOpener> opener_;
  const std::size_t overhead_;
  std::vector<std::byte> opened_;  // the last sealed payload returned, opened; grows only
  bool erased_ = false;            // open_sealed's last record was erased (RecordView::erased)

  std::uint64_t position_;  // the next sequence to return

  // The open segment (file_ < 0: none yet), as of the last locate().
  FileId file_ = -1;
  SegmentLocation segment_;
  std::uint32_t salt_ = 0;
  // The record the cursor is at: position_, or an earlier one still to step over after a seek.
  std::uint64_t cursor_sequence_ = 0;
  std::uint64_t cursor_offset_ = 0;
  bool relocate_ = false;  // seek() moved the position away from the cursor

  // File bytes [buffer_offset_, buffer_offset_ + buffer_used_) of the open segment. Allocated at
  // the first read (read_chunk_bytes), grown only for a record larger than that.
  std::vector<std::byte> buffer_;
  std::uint64_t buffer_offset_ = 0;
  std::size_t buffer_used_ = 0;
  // The last read of the open segment, and how far the backend was asked to read ahead of it
  // (IoBackend::read_ahead): up to kReadAheadChunks chunks while reads follow on, for a reader
  // whose chunks are sized to scan (a small one jumps from record to record: a hint per chunk would
  // double its system calls for nothing).
  static constexpr std::uint64_t kReadAheadChunks = 4;
  static constexpr std::size_t kReadAheadChunkBytesMin = 64u << 10;
  std::uint64_t read_begin_ = 0;
  std::uint64_t read_end_ = 0;
  std::uint64_t read_ahead_end_ = 0;
};

}  // namespace annal::journal
