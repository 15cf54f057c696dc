// Reader: see reader.h. The cursor walks records from an index entry to the position, then on;
// the buffer is refilled from the cursor whenever the record there is not whole in it.
#include "annal/journal/reader.h"

#include <string.h>  // explicit_bzero

#include <algorithm>

namespace annal::journal {

Reader::Reader(Journal& journal, std::shared_ptr<IoBackend> io, const Options& options,
               std::uint64_t from)
    : journal_(journal),
      io_(std::move(io)),
      chunk_bytes_(options.read_chunk_bytes),
      opener_(options.cipher ? options.cipher->opener() : nullptr),
      overhead_(options.cipher ? options.cipher->overhead() : 0),
      position_(std::max(from, kFirstSequence)) {
  ANNAL_ASSERT(chunk_bytes_ >= kSegmentHeaderBytes);  // the segment header is read into it
}

Reader::~Reader() {
  if (file_ >= 0) (void)io_->close(file_);
  // The last payloads opened: plaintext that should not outlive the reader in freed memory.
  if (!opened_.empty()) explicit_bzero(opened_.data(), opened_.size());
}

Result<std::optional<RecordView>> Reader::next() {
  // durable_sequence() loads with acquire, and the writer publishes it after the bytes are written
  // and the segment list (ends, index) updated: everything up to it can be located and read.
  if (position_ > journal_.durable_sequence()) return std::optional<RecordView>();
  // Each pass steps over one record between an index entry and the position (fewer than one index
  // interval's worth), or returns.
  for (;;) {
    if (file_ < 0 || relocate_ || cursor_sequence_ >= segment_.end_sequence) {
      if (Status entered = enter_segment(); !entered.ok()) return entered;
      relocate_ = false;
    }
    const auto record = decode_at_cursor();
    if (!record.ok()) return record.status();
    const bool wanted = record.value().header.type != kTypePadding && cursor_sequence_ >= position_;
    std::span<const std::byte> payload = record.value().payload;
    erased_ = false;
    if (wanted && (record.value().header.flags & kFlagSealed) != 0) {
      // Opened only when returned: records stepped over after a seek stay sealed.
      auto opened = open_sealed(record.value());
      if (!opened.ok()) return opened.status();
      payload = opened.value();
    } else if (wanted && opener_) {
      if (Status plain = opener_->check_plain(record.value().header); !plain.ok()) {
        return at_cursor(plain.code(), "a record in clear where the store seals everything: " + plain.message());
      }
    }
    cursor_offset_ += record.value().padded_bytes;
    if (record.value().header.type == kTypePadding) continue;  // it takes no sequence
    if (cursor_sequence_++ < position_) continue;
    ++position_;
    return std::optional<RecordView>(RecordView{record.value().header, payload, erased_});
  }
}

void Reader::seek(std::uint64_t sequence) noexcept {
  position_ = std::max(sequence, kFirstSequence);
  relocate_ = position_ != cursor_sequence_;
}

Result<RecordView> Reader::next(Journal::Clock::time_point deadline) {
  for (;;) {
    auto record = next();
    if (!record.ok()) return record.status();
    if (record.value()) return *record.value();
    // Caught up. wait_durable returns at once if position_ became durable meanwhile.
    if (Status waited = journal_.wait_durable(position_, deadline); !waited.ok()) return waited;
  }
}

// Locates position_ and moves there: in the open segment if it still holds it (the writer only
// moved its end), else in the segment that does, seeking through its index.
Status Reader::enter_segment() {
  auto located = journal_.locate(position_);
  if (!located.ok()) return located.status();
  SegmentLocation& where = located.value();
  // position_ is durable, hence written, hence inside a listed segment's written part.
  ANNAL_ASSERT(where.start_sequence <= position_ && position_ < where.end_sequence);
  if (file_ >= 0 && where.base == segment_.base) {
    ANNAL_ASSERT(where.end_offset >= segment_.end_offset);
    segment_ = std::move(where);
    // After a seek, walk from the index entry unless the cursor is already between it and the
    // position (then it is nearer). The buffer stays: fill() reuses it if it covers the bytes.
    if (cursor_sequence_ > position_ || cursor_sequence_ < segment_.start_sequence) {
      cursor_sequence_ = segment_.start_sequence;
      cursor_offset_ = segment_.start_offset;
    }
    return {};
  }
  if (file_ >= 0) (void)io_->close(file_);
  file_ = -1;  // until the new segment's header checks out
  buffer_used_ = 0;
  const auto file = io_->open(where.path, OpenMode::read_only);
  if (!file.ok()) return file.status();
  const auto salt = read_segment_header(file.value(), where);
  if (!salt.ok()) {
    (void)io_->close(file.value());
    return salt.status();
  }
  file_ = file.value();
  salt_ = salt.value();
  segment_ = std::move(where);
  read_begin_ = 0;  // the header's read
  read_end_ = kSegmentHeaderBytes;
  read_ahead_end_ = 0;
  cursor_sequence_ = segment_.start_sequence;
  cursor_offset_ = segment_.start_offset;
  return {};
}

// Reads and checks the header of segment `where`, open as `file`; returns its salt.
Result<std::uint32_t> Reader::read_segment_header(FileId file, const SegmentLocation& where) {
  if (buffer_.size() < chunk_bytes_) buffer_.resize(chunk_bytes_);  // once, on first use
  const auto n = io_->read(file, 0, std::span(buffer_).first(kSegmentHeaderBytes));
  if (!n.ok()) return n.status();
  const auto header = decode_segment_header(std::span(buffer_).first(n.value()), where.path);
  if (!header.ok()) return header.status();
  if (header.value().base_sequence != where.base) {
    return Status(ErrorCode::corruption, where.path + ": header says base sequence " +
                                             std::to_string(header.value().base_sequence));
  }
  return header.value().salt;
}

// Makes the buffer hold [cursor_offset_, cursor_offset_ + bytes), or as much of it as the segment
// has written: one read of a whole chunk from the cursor on.
Status Reader::fill(std::size_t bytes) {
  if (cursor_offset_ >= buffer_offset_ && cursor_offset_ + bytes <= buffer_offset_ + buffer_used_) {
    return {};
  }
  // A record larger than the chunk grows the buffer to fit it; callers never ask for more than
  // one record, and none past what the segment has written.
  ANNAL_ASSERT(cursor_offset_ <= segment_.end_offset && bytes <= segment_.end_offset - cursor_offset_);
  if (buffer_.size() < bytes) buffer_.resize(bytes);
  const std::uint64_t written = segment_.end_offset - cursor_offset_;
  const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(buffer_.size(), written));
  // A record the last chunk cut is read again from its start: still a scan.
  const bool scanning = chunk_bytes_ >= kReadAheadChunkBytesMin && read_begin_ <= cursor_offset_ &&
                        cursor_offset_ <= read_end_ && want == buffer_.size();
  const auto n = io_->read(file_, cursor_offset_, std::span(buffer_).first(want));
  buffer_used_ = 0;
  if (!n.ok()) return n.status();
  buffer_offset_ = cursor_offset_;
  buffer_used_ = n.value();
  read_begin_ = buffer_offset_;
  read_end_ = buffer_offset_ + buffer_used_;
  // A scan (whole chunks, one after the other): the disk reads the next ones while this one is
  // decoded and opened, instead of after. Asked a chunk at a time, so each hint is one large read.
  if (scanning) {
    const std::uint64_t until = std::min(segment_.end_offset, read_end_ + kReadAheadChunks * chunk_bytes_);
    for (std::uint64_t from = std::max(read_ahead_end_, read_end_); from < until; from += chunk_bytes_) {
      io_->read_ahead(file_, from, std::min<std::uint64_t>(chunk_bytes_, until - from));
      read_ahead_end_ = std::min<std::uint64_t>(from + chunk_bytes_, until);
    }
  }
  return {};
}

Result<DecodedRecord> Reader::decode_at_cursor() {
  const auto available = [this] {
    const auto skip = static_cast<std::size_t>(cursor_offset_ - buffer_offset_);
    return std::span<const std::byte>(buffer_).subspan(skip, buffer_used_ - skip);
  };
  if (segment_.end_offset - cursor_offset_ < kRecordHeaderBytes) return corruption("truncated record");
  if (Status filled = fill(kRecordHeaderBytes); !filled.ok()) return filled;
  // An impossible size (0) is left for decode_record to report. Stored records are judged by the
  // format's limit, not by this open's record_bytes_max: an earlier open may have allowed more.
  const std::size_t claimed = claimed_record_bytes(available());
  if (claimed > segment_.end_offset - cursor_offset_) {
    return corruption("a record of " + std::to_string(claimed) + " bytes runs past the end of what was written");
  }
  if (claimed != 0) {
    if (Status filled = fill(claimed); !filled.ok()) return filled;
  }
  // Checksummed once: a record wholly inside what the journal's open verified is not again.
  const bool verified = claimed != 0 && cursor_offset_ + claimed <= segment_.verified_end_offset;
  const DecodedRecord record =
      decode_record(available(), salt_, verified ? Checksum::trusted : Checksum::verify);
  if (record.status != RecordStatus::ok) return corruption(to_string(record.status));
  if (record.header.sequence != cursor_sequence_) {
    return corruption("a record of sequence " + std::to_string(record.header.sequence) +
                      " is out of sequence");
  }
  return record;
}

Result<std::span<const std::byte>> Reader::open_sealed(const DecodedRecord& record) {
  if (!opener_) {
    return at_cursor(ErrorCode::invalid_argument,
                     "the record is encrypted (sealed), and the journal was opened without its key: "
                     "open it with the key it was written with");
  }
  if (record.payload.size() < overhead_) return corruption("a sealed payload shorter than its seal");
  opened_.resize(std::max(opened_.size(), record.payload.size() - overhead_));
  const std::span<std::byte> out = std::span<std::byte>(opened_).first(record.payload.size() - overhead_);
  if (Status opened = opener_->open(record.header, associated_data(record.header), record.payload, out); !opened.ok()) {
    if (const auto clear = opener_->erased(record.header, record.payload, out)) {
      ANNAL_ASSERT(*clear <= out.size());
      erased_ = true;
      return std::span<const std::byte>(out.first(*clear));
    }
    return at_cursor(opened.code(), "cannot open the sealed record: " + opened.message());
  }
  return std::span<const std::byte>(out);
}

Status Reader::at_cursor(ErrorCode code, const std::string& what) const {
  return Status(code, segment_.path + " offset " + std::to_string(cursor_offset_) + " sequence " +
                          std::to_string(cursor_sequence_) + ": " + what);
}

Status Reader::corruption(const std::string& what) const { return at_cursor(ErrorCode::corruption, what); }

}  // namespace annal::journal
