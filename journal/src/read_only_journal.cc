// Journal::open_read_only: the journal of a directory as its files show it, for tools. See journal.h.
#include <algorithm>
#include <array>
#include <mutex>
#include <thread>

#include "annal/journal/journal.h"
#include "annal/journal/reader.h"
#include "data_loss.h"
#include "directory_scan.h"

namespace annal::journal {
namespace {

// How often a tailing reader looks at the files again.
constexpr auto kPollInterval = std::chrono::milliseconds(20);
// Reads of a durable notice torn by a write before the poll gives up on it until the next.
constexpr int kNoticeReadsMax = 3;
// Scans of a directory whose segments retention removes meanwhile, before open_read_only gives up.
constexpr int kScanAttemptsMax = 5;

class ReadOnlyJournal final : public Journal {
 public:
  ReadOnlyJournal(std::string directory, const Options& options, std::shared_ptr<IoBackend> io, ScannedDirectory scanned)
      : directory_(std::move(directory)), options_(options), io_(std::move(io)), segments_(std::move(scanned.segments)),
        tail_salt_(scanned.tail_salt), damaged_(!scanned.report.sound()) {
    report_.segments = segments_.size();
    report_.segments_scanned = static_cast<std::size_t>(std::count_if(
        scanned.report.segments.begin(), scanned.report.segments.end(), [](const SegmentReport& s) { return s.verified; }));
    report_.next_sequence = end();
    if (damaged_) report_.message = "journal " + directory_ + ": " + scanned.report.problems.front() + "; read up to there";
  }

  void report_data_loss(const DataLoss& loss) {
    report_.data_loss = loss.what;
    report_.lost_first = loss.first;
    report_.lost_last = loss.last;
  }

  // Settles the durable sequence of what open() scanned.
  Status start() {
    std::lock_guard lock(mutex_);
    return settle_durable();
  }
  ~ReadOnlyJournal() override { (void)close(); }

  Result<Receipt> append(std::span<const RecordInput>) override { return read_only(); }
  [[nodiscard]] Stats stats() const override { return {}; }
  [[nodiscard]] Status writable() const override { return read_only(); }
  Status remove_segments_before(std::uint64_t) override { return read_only(); }

  Status wait_durable(std::uint64_t sequence, Clock::time_point deadline) override {
    for (;;) {
      {
        std::lock_guard lock(mutex_);
        if (Status refreshed = refresh(); !refreshed.ok()) return refreshed;
        if (durable_ >= sequence) return {};
      }
      const auto now = Clock::now();
      if (now >= deadline) {
        return Status(ErrorCode::timed_out, "sequence " + std::to_string(sequence) + " is not in " + directory_ + " yet");
      }
      std::this_thread::sleep_for(std::min<Clock::duration>(kPollInterval, deadline - now));
    }
  }

  [[nodiscard]] std::uint64_t durable_sequence() const override {
    std::lock_guard lock(mutex_);
    return durable_;
  }
  [[nodiscard]] std::uint64_t last_sequence() const override {
    std::lock_guard lock(mutex_);
    return end() - 1;
  }

  Result<std::unique_ptr<Reader>> reader(std::uint64_t from, std::size_t chunk_bytes) override {
    from = std::max(from, kFirstSequence);
    {
      std::lock_guard lock(mutex_);
      if (Status retained = check_retained(segments_, from); !retained.ok()) return retained;
    }
    Options options = options_;
    if (chunk_bytes != 0) options.read_chunk_bytes = std::max(chunk_bytes, kSegmentHeaderBytes);
    return std::make_unique<Reader>(*this, io_, options, from);
  }

  Result<SegmentLocation> locate(std::uint64_t sequence) const override {
    std::lock_guard lock(mutex_);
    return locate_in(segments_, sequence);
  }

  [[nodiscard]] const RecoveryReport& recovery() const override { return report_; }

  Status close() override {
    std::lock_guard lock(mutex_);
    if (tail_file_ >= 0) (void)io_->close(tail_file_);
    if (lock_file_ >= 0) (void)io_->close(lock_file_);
    tail_file_ = lock_file_ = -1;
    return {};
  }

 private:
  Status read_only() const {
    return Status(ErrorCode::invalid_argument, "journal " + directory_ + " is open read-only");
  }
  // Under mutex_: one past the last record.
  [[nodiscard]] std::uint64_t end() const { return segments_.empty() ? kFirstSequence : segments_.back().end_sequence; }

  // What readers may read up to: the whole batches in the files, but beside a live writer (one
  // holds the lock) no further than the durable sequence it last told readers (format.h: the LOCK
  // file), so that a round written but not yet synced is not shown. Never goes back. Under mutex_.
  Status settle_durable() {
    const std::uint64_t written = end() - 1;
    const auto locked = io_->directory_locked(directory_);
    if (!locked.ok()) return locked.status();
    std::uint64_t durable = written;
    if (locked.value()) {
      const auto told = writer_told();
      if (!told.ok()) return told.status();
      durable = std::min(written, told.value().value_or(durable_));
    }
    durable_ = std::max(durable_, durable);
    return {};
  }

  // The durable notice in the LOCK file; nullopt when there is none to believe (not written yet,
  // or the read was torn by a write). Under mutex_.
  Result<std::optional<std::uint64_t>> writer_told() {
    if (lock_file_ < 0) {
      const auto file = io_->open(directory_ + "/" + std::string(kLockFileName), OpenMode::read_only);
      if (!file.ok()) return file.status();
      lock_file_ = file.value();
    }
    std::array<std::byte, kDurableNoticeBytes> notice{};
    for (int attempt = 0;; ++attempt) {
      const auto got = io_->read(lock_file_, 0, notice);
      if (!got.ok()) return got.status();
      const auto told = decode_durable_notice(std::span(notice).first(got.value()));
      if (told) return std::optional<std::uint64_t>(told->sequence);
      // A whole notice that does not check was torn by the writer's next one: read it again.
      if (got.value() < notice.size() || attempt == kNoticeReadsMax) return std::optional<std::uint64_t>();
    }
  }

  // Picks up what the writer added since (refresh_files), then settles the durable sequence.
  Status refresh() {
    if (Status files = refresh_files(); !files.ok()) return files;
    return settle_durable();
  }

  // Whole batches at the end of the last segment, then the segments after it (a batch never
  // straddles two, so the next segment's file existing means the last one is sealed). Stops for
  // good at damage. Under mutex_.
  Status refresh_files() {
    if (damaged_) return {};
    for (;;) {
      if (!segments_.empty()) {
        if (Status extended = extend_tail(); !extended.ok()) return extended;
      }
      const std::uint64_t base = end();
      const std::string path = directory_ + "/" + segment_file_name(base);
      const auto file = io_->open(path, OpenMode::read_only);
      if (!file.ok()) return {};  // not there (yet)
      std::vector<std::byte> head(kSegmentHeaderBytes);
      const auto got = io_->read(file.value(), 0, head);
      const auto header = got.ok() ? decode_segment_header(std::span(head).first(got.value()), path)
                                   : Result<SegmentHeader>(got.status());
      if (!header.ok() || header.value().base_sequence != base) {
        (void)io_->close(file.value());
        damaged_ = true;  // a writer installs a segment whole (header synced, then renamed)
        return {};
      }
      if (tail_file_ >= 0) (void)io_->close(tail_file_);
      tail_file_ = file.value();
      tail_salt_ = header.value().salt;
      segments_.push_back({base, base, kSegmentHeaderBytes, path, {}});
    }
  }

  // Reads on from the last segment's end while whole batches follow. The new records get no index
  // entries: readers step to them from the last entry, which tailing readers never need to.
  Status extend_tail() {
    SegmentInfo& tail = segments_.back();
    if (tail_file_ < 0) {
      const auto file = io_->open(tail.path, OpenMode::read_only);
      if (!file.ok()) return file.status();
      tail_file_ = file.value();
    }
    std::size_t want = options_.read_chunk_bytes;
    for (;;) {
      buffer_.resize(want);
      const auto got = io_->read(tail_file_, tail.end_offset, buffer_);
      if (!got.ok()) return got.status();
      const std::span<const std::byte> bytes = std::span(buffer_).first(got.value());
      std::size_t at = 0, committed = 0;
      std::uint64_t expected = tail.end_sequence, committed_sequence = tail.end_sequence;
      bool cut_short = false;  // a record runs past what was read
      for (;;) {
        const DecodedRecord record = decode_record(bytes.subspan(at), tail_salt_);
        cut_short = record.status == RecordStatus::truncated;
        if (record.status != RecordStatus::ok || record.header.sequence != expected) break;
        at += record.padded_bytes;
        if (record.header.type == kTypePadding) continue;
        ++expected;
        if ((record.header.flags & kFlagBatchEnd) != 0) {
          committed = at;
          committed_sequence = expected;
        }
      }
      tail.end_sequence = committed_sequence;
      tail.end_offset += committed;
      if (committed != 0) continue;  // read on past it
      // Nothing whole in the buffer: more to come, unless a batch is larger than the buffer.
      if (!cut_short || bytes.size() < want || want >= kRecordBytesMax + options_.commit_bytes_max) return {};
      want *= 2;
    }
  }

  const std::string directory_;
  const Options options_;
  const std::shared_ptr<IoBackend> io_;
  mutable std::mutex mutex_;
  std::vector<SegmentInfo> segments_;  // under mutex_
  FileId tail_file_ = -1;              // under mutex_: the last segment, once refresh opened it
  FileId lock_file_ = -1;              // under mutex_: LOCK, once a writer was seen holding it
  std::uint64_t durable_ = 0;          // under mutex_: see settle_durable
  std::uint32_t tail_salt_ = 0;        // under mutex_
  bool damaged_ = false;               // under mutex_: the log ends at damage; nothing after it is read
  std::vector<std::byte> buffer_;      // under mutex_
  RecoveryReport report_;
};

}  // namespace

Result<std::unique_ptr<Journal>> Journal::open_read_only(const std::string& directory, const Options& options) {
  return open_read_only(directory, options, make_posix_backend());
}

Result<std::unique_ptr<Journal>> Journal::open_read_only(const std::string& directory, const Options& options,
                                                         std::shared_ptr<IoBackend> io) {
  // A live writer may append, snapshot and remove segments while this looks. The durable notice is
  // read before the scan (one read after it could count records the scan did not see), the
  // retention floor after it (retention raises it before it removes a segment), and the caller's
  // witness is asked only when no writer held the directory through the scan (it is read after).
  auto before = read_lock_words(*io, directory);
  if (!before.ok()) return before.status();
  const auto locked_before = io->directory_locked(directory);
  if (!locked_before.ok()) return locked_before.status();
  auto scanned = scan_directory(*io, directory, options, false);
  // A segment listed and then removed by retention before the scan opened it: look again.
  for (int attempt = 1; attempt < kScanAttemptsMax && scanned.code() == ErrorCode::not_found; ++attempt) {
    scanned = scan_directory(*io, directory, options, false);
  }
  if (!scanned.ok()) return scanned.status();
  const auto after = read_lock_words(*io, directory);
  if (!after.ok()) return after.status();
  const LockWords words{.durable = before.value().durable, .kept_from = after.value().kept_from};
  const auto locked_after = io->directory_locked(directory);
  if (!locked_after.ok()) return locked_after.status();
  const std::vector<SegmentInfo>& segments = scanned.value().segments;
  const std::uint64_t first_base = segments.empty() ? 0 : segments.front().base;
  const std::uint64_t last = segments.empty() ? 0 : segments.back().end_sequence - 1;
  const bool idle = !locked_before.value() && !locked_after.value();
  const auto witness = idle && options.durable_witness ? options.durable_witness(last) : std::nullopt;
  // Damage cuts the readable log short; the damage report says so, not a loss report.
  const auto loss = scanned.value().report.sound() ? find_data_loss(directory, first_base, last, words, witness)
                                                   : std::nullopt;
  auto journal = std::make_unique<ReadOnlyJournal>(directory, options, std::move(io), std::move(scanned.value()));
  if (loss) journal->report_data_loss(*loss);
  if (Status started = journal->start(); !started.ok()) return started;
  return std::unique_ptr<Journal>(std::move(journal));
}

}  // namespace annal::journal
