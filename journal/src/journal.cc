// The journal's writer. Appenders encode records into staging buffers under one mutex; the writer
// thread takes whole buffers, writes them (several in flight), syncs per the durability mode, and
// then publishes the durable sequence. See journal.h for the contract.
#include "annal/journal/journal.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <random>
#include <thread>

#include "annal/base/thread_role.h"
#include "annal/base/wall_clock.h"
#include "annal/journal/reader.h"
#include "annal/journal/reseal.h"
#include "data_loss.h"
#include "directory_scan.h"
#include "posix_backend.h"
#include "recovery.h"
#include "segment_chainer.h"
#include "segment_preparer.h"
#include "segment_index.h"
#include "uring_backend.h"

namespace annal::journal {
namespace {

// How many times the writer, woken from idle by an append, yields to let the appends behind it
// join the round (take_round). Eight: journal_durable_8w's appenders, which it measured best with
// (docs/journal.md); each yield costs well under a microsecond when nothing else is runnable.
constexpr int kSettleYieldsMax = 8;

// Writes `durable` into the LOCK file for readers in other processes (format.h).
Status tell_readers_durable(IoBackend& io, FileId lock, std::uint64_t durable, bool synced) {
  std::array<std::byte, kDurableNoticeBytes> notice{};
  encode_durable_notice(durable, synced, notice);
  return io.write(lock, 0, notice);
}

// Room a buffer keeps for the padding record that ends a direct-I/O write on a block boundary.
std::size_t padding_reserve(const Options& options) { return options.direct_io ? kPaddingBytesMax : 0; }

// Bytes of padding that take `end` to a block boundary: none if it is on one, else at least a
// record header's worth.
std::size_t padding_to_block(std::uint64_t end) {
  std::size_t pad = static_cast<std::size_t>((kDirectBlockBytes - end % kDirectBlockBytes) % kDirectBlockBytes);
  if (pad != 0 && pad < kRecordHeaderBytes) pad += kDirectBlockBytes;
  return pad;
}

Status check_options(const Options& options) {
  const auto bad = [](const std::string& what) {
    return Status(ErrorCode::invalid_argument, "journal options: " + what);
  };
  if (Status mode = check_file_mode(options.file_mode); !mode.ok()) return bad(mode.message());
  if (options.record_bytes_max < kRecordHeaderBytes || options.record_bytes_max > kRecordBytesMax) {
    return bad("record_bytes_max must be between 48 bytes and 1 GiB");
  }
  if (options.commit_bytes_max < padded_record_bytes(options.record_bytes_max - kRecordHeaderBytes)) {
    return bad("commit_bytes_max must hold at least one record of record_bytes_max");
  }
  if (options.segment_bytes_max < kSegmentHeaderBytes + options.commit_bytes_max + padding_reserve(options)) {
    return bad("segment_bytes_max must hold the segment header and one commit_bytes_max write");
  }
  if (options.writes_in_flight_max < 1 || options.writes_in_flight_max > 64) {
    return bad("writes_in_flight_max must be between 1 and 64");
  }
  if (options.durability == Durability::interval && options.sync_interval.count() <= 0) {
    return bad("sync_interval must be positive");
  }
  if (options.index_interval_bytes < 1024) {
    // Below 1 KiB the index (16 B per entry) would cost over 1.5% of the log in memory. (Above
    // segment_bytes_max it is harmless: each segment indexes its first record only.)
    return bad("index_interval_bytes must be at least 1 KiB (16 bytes of memory per entry)");
  }
  if (options.read_chunk_bytes < kSegmentHeaderBytes || options.read_chunk_bytes > kRecordBytesMax) {
    return bad("read_chunk_bytes must be between 4 KiB (a segment header) and 1 GiB");
  }
  return {};
}

struct AlignedFree {
  void operator()(std::byte* bytes) const noexcept { std::free(bytes); }
};

// A run of encoded records bound for one place in one segment.
struct Buffer {
  // commit_bytes_max plus the padding reserve, rounded up to whole blocks; allocated once, aligned
  // to a block so that direct I/O can write from it.
  std::unique_ptr<std::byte[], AlignedFree> storage;
  std::span<std::byte> bytes;
  std::size_t used = 0;
  std::uint64_t segment_base = 0;
  std::uint32_t segment_salt = 0;  // the salt its records were encoded under
  std::uint64_t offset = 0;  // file offset of bytes[0]
  std::uint64_t last_sequence = 0;
  // Sparse index entries of its records (segment_index.h), added to the segment's index once
  // written. Capacity reserved once for the most a full buffer can need.
  std::vector<IndexEntry> marks;
};

class JournalImpl final : public Journal {
 public:
  JournalImpl(std::string directory, const Options& options, std::shared_ptr<IoBackend> io,
              FileId lock, Recovered recovered, FileId tail_writes, std::unique_ptr<SegmentChainer> chainer)
      : directory_(std::move(directory)), options_(options), io_(std::move(io)), lock_(lock),
        preparer_(std::make_unique<SegmentPreparer>(*io_, directory_, options_.segment_bytes_max,
                                                    options_.preparation)),
        chainer_(std::move(chainer)),
        segments_(std::move(recovered.segments)), report_(std::move(recovered.report)),
        random_(std::random_device{}()) {
    buffers_.resize(options_.writes_in_flight_max + 1);
    round_of_buffer_.resize(buffers_.size());
    rounds_.resize(options_.writes_in_flight_max);
    for (Round& round : rounds_) round.buffers.reserve(options_.writes_in_flight_max);
    for (std::size_t i = 0; i < buffers_.size(); ++i) {
      const std::size_t capacity = options_.commit_bytes_max + padding_reserve(options_);
      const std::size_t rounded = (capacity + kDirectBlockBytes - 1) / kDirectBlockBytes * kDirectBlockBytes;
      auto* bytes = static_cast<std::byte*>(std::aligned_alloc(kDirectBlockBytes, rounded));
      ANNAL_ASSERT(bytes != nullptr);  // a few MiB at open; nothing sensible to do without them
      buffers_[i].storage.reset(bytes);
      buffers_[i].bytes = std::span(bytes, capacity);
      buffers_[i].marks.reserve(
          index_entries_max(options_.commit_bytes_max, options_.index_interval_bytes));
      free_.push_back(i);
    }
    std::vector<std::span<std::byte>> staging;
    for (const Buffer& buffer : buffers_) staging.push_back(buffer.bytes);
    // Registered once, io_uring pins them once instead of on every write. An optimisation only: if
    // the kernel refuses (a memlock limit), the writes go unregistered.
    (void)io_->register_buffers(staging);
    next_sequence_ = report_.next_sequence;
    durable_.store(next_sequence_ - 1, std::memory_order_release);
    last_made_durable_ = next_sequence_ - 1;
    sync_started_.reserve(kSyncsTimedMax);
    if (recovered.tail_file >= 0) {
      tail_.file = recovered.tail_file;
      tail_.writes = tail_writes >= 0 ? tail_writes : tail_.file;
      tail_.salt = recovered.tail_salt;
      tail_.base = segments_.back().base;
      write_offset_ = segments_.back().end_offset;
      segments_.back().index.reserve(index_entries_max_per_segment());
      staged_salt_ = tail_.salt;
      staged_base_ = tail_.base;
    } else {
      // A new journal: its first segment is wanted at the first write, so start on it now.
      preparer_->request();
      staged_base_ = next_sequence_;  // the first segment is created by the first write
      staged_salt_ = new_salt();
      write_offset_ = kSegmentHeaderBytes;
    }
    writer_ = std::thread([this] { write_loop(); });
    name_thread(writer_, "annal-writer");
  }

  ~JournalImpl() override { (void)close(); }

  // A record's payload as stored: as given, or sealed (cipher_), which adds the cipher's overhead.
  [[nodiscard]] std::size_t stored_payload_bytes(const RecordInput& record) const noexcept {
    return record.payload_bytes() + (cipher_ ? cipher_->overhead() : 0);
  }

  Result<Receipt> append(std::span<const RecordInput> records) override {
    if (records.empty()) return Status(ErrorCode::invalid_argument, "append of no records");
    std::size_t bytes = 0;
    for (const RecordInput& record : records) {
      if (kRecordHeaderBytes + stored_payload_bytes(record) > options_.record_bytes_max) {
        return Status(ErrorCode::invalid_argument,
                      "record of " + std::to_string(record.payload_bytes()) +
                          " payload bytes exceeds record_bytes_max (" +
                          std::to_string(options_.record_bytes_max) + " with the 48-byte header" +
                          (cipher_ ? " and the " + std::to_string(cipher_->overhead()) + " bytes sealing adds)" : ")"));
      }
      if (record.type == kTypePadding) return Status(ErrorCode::invalid_argument, "record type 0 is reserved");
      bytes += padded_record_bytes(stored_payload_bytes(record));
    }
    if (bytes > options_.commit_bytes_max) {
      return Status(ErrorCode::invalid_argument, "append of " + std::to_string(bytes) +
                                                     " bytes exceeds commit_bytes_max");
    }
    std::unique_lock lock(mutex_);
    Buffer* buffer = nullptr;
    for (;;) {
      if (!error_.ok()) return error_;
      if (closing_) return Status(ErrorCode::failed, "journal " + directory_ + " is closed");
      // Batches never straddle two segments: one that does not fit starts the next.
      const bool rolls_over = write_offset_ + bytes + padding_reserve(options_) > options_.segment_bytes_max;
      buffer = filling_ && !rolls_over ? &buffers_[*filling_] : nullptr;
      if (buffer != nullptr && buffer->used + bytes + padding_reserve(options_) <= buffer->bytes.size()) break;
      seal_filling();
      if (free_.empty()) {
        buffer_freed_.wait(lock);  // back-pressure: every buffer is staged or in flight
        continue;
      }
      if (rolls_over) {
        // Only now that a buffer takes the batch: an append that gives up waiting (close, an I/O
        // error) leaves write_offset_ where the log really ends, which close() marks.
        staged_base_ = next_sequence_;
        staged_salt_ = new_salt();
        write_offset_ = kSegmentHeaderBytes;
      }
      filling_ = free_.front();
      free_.pop_front();
      Buffer& fresh = buffers_[*filling_];
      fresh.used = 0;
      fresh.segment_base = staged_base_;
      fresh.segment_salt = staged_salt_;
      fresh.offset = write_offset_;
      fresh.marks.clear();
    }
    const Receipt receipt{next_sequence_, next_sequence_ + records.size() - 1};
    // What each record's commit_lag says was acknowledged. Under Durability::none acknowledged is
    // only written, which a power cut may take back: the lag then claims no more than an fdatasync
    // covered (the segments before this one, synced before it was written), or a power cut's
    // ordinary losses would read as damage.
    const std::uint64_t durable = durable_.load(std::memory_order_acquire);
    const std::uint64_t proven =
        options_.durability == Durability::none ? std::min(durable, buffer->segment_base - 1) : durable;
    ANNAL_ASSERT(buffer->offset + buffer->used == write_offset_);
    IndexMarker marker(write_offset_, options_.index_interval_bytes);
    for (std::size_t i = 0; i < records.size(); ++i) {
      const RecordInput& input = records[i];
      RecordHeader header;
      header.sequence = next_sequence_++;
      header.stream_id = input.stream_id;
      header.stream_version = input.stream_version;
      header.timestamp_ns = input.timestamp_ns != 0 ? input.timestamp_ns : wall_clock_ns();
      header.type = input.type;
      header.flags = i + 1 == records.size() ? kFlagBatchEnd : 0;
      header.commit_lag = static_cast<std::uint32_t>(
          std::min<std::uint64_t>(header.sequence - proven, kCommitLagMax));
      const std::size_t size = padded_record_bytes(stored_payload_bytes(input));
      const std::span<std::byte> out = buffer->bytes.subspan(buffer->used, size);
      if (cipher_) {
        // Sealed straight into the buffer: the plain payload is never written anywhere.
        header.flags |= kFlagSealed;
        cipher_->seal(header, associated_data(header), input.prefix, input.payload,
                      out.subspan(kRecordHeaderBytes, stored_payload_bytes(input)));
        encode_record_around(header, stored_payload_bytes(input), staged_salt_, out);
      } else {
        encode_record(header, input.prefix, input.payload, staged_salt_, out);
      }
      if (marker.due(buffer->offset + buffer->used, size)) {
        ANNAL_ASSERT(buffer->marks.size() < buffer->marks.capacity());  // no allocation here
        buffer->marks.push_back({header.sequence, buffer->offset + buffer->used});
      }
      buffer->used += size;
    }
    buffer->last_sequence = receipt.last;
    write_offset_ += bytes;
    appends_.fetch_add(1, std::memory_order_relaxed);
    records_.fetch_add(records.size(), std::memory_order_relaxed);
    bytes_.fetch_add(bytes, std::memory_order_relaxed);
    work_ready_.notify_one();
    if (reaping_ && !sealed_.empty()) {
      // A full buffer is waiting: worth writing while the disk syncs. Smaller appends wait for the
      // sync in flight to finish and then all go in one round; waking the writer for each would
      // cost a context switch apiece and buy nothing, since they need the next sync anyway.
      reaping_ = false;  // one wake-up per wait is enough
      io_->wake();
    }
    return receipt;
  }

  Status wait_durable(std::uint64_t sequence, Clock::time_point deadline) override {
    // Durable already (a late waiter, or one of a round that synced while it appended): no lock.
    if (durable_.load(std::memory_order_acquire) >= sequence) return {};
    std::unique_lock lock(mutex_);
    DurableWaiter me{sequence, {}};
    waiters_.push_back(&me);  // allocates only while the number of waiting threads grows
    const bool done = me.woken.wait_until(lock, deadline, [&] {
      return durable_.load(std::memory_order_acquire) >= sequence || !error_.ok() || closed_;
    });
    *std::find(waiters_.begin(), waiters_.end(), &me) = waiters_.back();
    waiters_.pop_back();
    if (durable_.load(std::memory_order_acquire) >= sequence) return {};
    if (!error_.ok()) return error_;
    // Closed: the writer has stopped, so what is not durable now never will be.
    if (closed_) {
      return Status(ErrorCode::failed, "journal " + directory_ + " is closed; sequence " +
                                           std::to_string(sequence) + " will never be durable");
    }
    ANNAL_ASSERT(!done);
    return Status(ErrorCode::timed_out, "timed out waiting for sequence " + std::to_string(sequence) +
                                            " to become durable (durable: " +
                                            std::to_string(durable_.load()) + ")");
  }

  std::uint64_t durable_sequence() const override { return durable_.load(std::memory_order_acquire); }

  Status writable() const override {
    std::lock_guard lock(mutex_);
    if (!error_.ok()) return error_;
    if (closing_) return Status(ErrorCode::failed, "journal " + directory_ + " is closed");
    return {};
  }

  Stats stats() const override {
    return {.appends = appends_.load(std::memory_order_relaxed),
            .records = records_.load(std::memory_order_relaxed),
            .bytes = bytes_.load(std::memory_order_relaxed),
            .syncs = syncs_.load(std::memory_order_relaxed),
            .sync_ns = sync_ns_.snapshot(),
            .group_records = group_records_.snapshot(),
            .segments_zero_filled = segments_zero_filled_.load(std::memory_order_relaxed),
            .segments_allocated = segments_allocated_.load(std::memory_order_relaxed),
            .segments_unprepared = segments_unprepared_.load(std::memory_order_relaxed)};
  }
  std::uint64_t last_sequence() const override {
    std::lock_guard lock(mutex_);
    return next_sequence_ - 1;
  }

  Result<std::unique_ptr<Reader>> reader(std::uint64_t from, std::size_t chunk_bytes) override;
  using Journal::reader;
  Result<SegmentLocation> locate(std::uint64_t sequence) const override;
  Status remove_segments_before(std::uint64_t sequence) override;
  const RecoveryReport& recovery() const override { return report_; }

  Status close() override {
    {
      std::lock_guard lock(mutex_);
      if (closed_) return error_;
      closing_ = true;
    }
    work_ready_.notify_one();
    writer_.join();
    io_->unregister_buffers();  // the writer is done with them; the backend may outlive them
    preparer_.reset();  // removes a prepared file that was never used
    chainer_.reset();   // chains the segments sealed last
    std::lock_guard lock(mutex_);
    closed_ = true;
    wake_waiters(UINT64_MAX);  // waiters for what will never be durable give up now
    if (error_.ok()) (void)mark_durable_end();  // best effort: without it, only a rescan is lost
    close_tail();
    (void)io_->close(lock_);
    return error_;
  }

 private:
  // Async fdatasyncs timed at once (more are only counted): more than ever overlap in practice.
  static constexpr std::size_t kSyncsTimedMax = 64;

  // Completion tags: a buffer's index for its write; for an fdatasync, kSyncTagBit plus the number
  // of rounds submitted when it was queued (it covers those).
  static constexpr std::uint64_t kSyncTagBit = std::uint64_t{1} << 63;

  // A round in flight: its buffers' writes and, in group_commit mode, one fdatasync.
  struct Round {
    std::vector<std::size_t> buffers;  // capacity writes_in_flight_max, reserved once
    std::uint64_t id = 0;              // rounds submitted before it
    std::size_t outstanding = 0;       // writes not yet complete
  };

  struct Tail {
    FileId file = -1;
    FileId writes = -1;  // what the rounds write through: an O_DIRECT descriptor, or `file`
    std::uint64_t base = 0;
    std::uint32_t salt = 0;
  };

  std::uint32_t new_salt() { return static_cast<std::uint32_t>(random_()); }

  // After a clean close every record is durable. A padding record that says so (it stands before
  // the next sequence, with a lag of 1) lets a later open tell damage to the last records from a
  // torn tail: otherwise a record proves only what was durable when it was staged, and the last
  // rounds of a log, often staged before any of them was synced, have nothing after them to prove
  // them. It is overwritten by the next session's first append. Under mutex_, writer stopped.
  // It goes where the writer's last round ended (what the segment list says it wrote), never
  // where appends were staging: a marker there would overwrite an acknowledged record.
  Status mark_durable_end() {
    if (tail_.file < 0 || next_sequence_ == kFirstSequence) return {};
    const SegmentInfo& last = segments_.back();
    ANNAL_ASSERT(last.base == tail_.base && last.end_sequence == next_sequence_);  // every append written
    std::array<std::byte, kRecordHeaderBytes> marker{};
    // Within the file as it is (an earlier open may have made it larger than this one's segments).
    const auto size = io_->size(tail_.file);
    if (!size.ok()) return size.status();
    if (last.end_offset + marker.size() > size.value()) return {};
    encode_padding(next_sequence_, 1, tail_.salt, marker);
    if (Status written = io_->write(tail_.file, last.end_offset, marker); !written.ok()) return written;
    return io_->sync(tail_.file);
  }

  void close_tail() {
    if (tail_.writes >= 0 && tail_.writes != tail_.file) (void)io_->close(tail_.writes);
    if (tail_.file >= 0) (void)io_->close(tail_.file);
    tail_.file = tail_.writes = -1;
  }

  std::size_t index_entries_max_per_segment() const {
    return index_entries_max(options_.segment_bytes_max, options_.index_interval_bytes);
  }

  // Under mutex_: the filling buffer goes to the writer's queue (with direct I/O, padded to a
  // block boundary: the next buffer starts there).
  void seal_filling() {
    if (!filling_) return;
    Buffer& buffer = buffers_[*filling_];
    if (buffer.used == 0) {
      free_.push_back(*filling_);
    } else {
      if (options_.direct_io) {
        ANNAL_ASSERT(buffer.offset % kDirectBlockBytes == 0);
        const std::size_t pad = padding_to_block(buffer.offset + buffer.used);
        if (pad > 0) {
          ANNAL_ASSERT(buffer.used + pad <= buffer.bytes.size());  // the reserve
          const std::uint64_t lag = next_sequence_ - durable_.load(std::memory_order_acquire);
          encode_padding(next_sequence_, static_cast<std::uint32_t>(std::min<std::uint64_t>(lag, kCommitLagMax)),
                         buffer.segment_salt, buffer.bytes.subspan(buffer.used, pad));
          buffer.used += pad;
          write_offset_ += pad;
        }
      }
      sealed_.push_back(*filling_);
    }
    filling_.reset();
  }

  void fail(Status status) {
    std::lock_guard lock(mutex_);
    if (error_.ok()) error_ = std::move(status);
    wake_waiters(UINT64_MAX);
    buffer_freed_.notify_all();
  }

  // Takes the buffers of the next round into `round`: what is staged for the segment being written,
  // as many as writes_in_flight_max leaves room for. Waits for work only when nothing is in flight
  // (otherwise the writer waits in reap() for the disk, and an append that fills a buffer wakes
  // it). Returns true when the journal is closing and nothing is left to take.
  bool take_round(std::vector<std::size_t>& round) {
    round.clear();
    std::unique_lock lock(mutex_);
    const auto has_work = [&] { return !sealed_.empty() || (filling_ && buffers_[*filling_].used > 0); };
    if (rounds_count_ == 0 && syncs_in_flight_ == 0) {
      if (options_.durability == Durability::interval && unsynced_) {
        work_ready_.wait_until(lock, next_interval_sync_, [&] { return has_work() || closing_; });
      } else {
        work_ready_.wait(lock, [&] { return has_work() || closing_; });
      }
      // The appenders the last durable point woke append again one after another (on 2 cores,
      // in turn), and the first one woke this thread: a round taken now would hold that one
      // append and leave the others a whole fdatasync more to wait. So it yields while appends
      // keep coming, a few times at most; with nothing else runnable a yield returns at once.
      // Not once a buffer is full (that one goes out now), nor where appends wait for no sync.
      const auto settling = [&] {
        return options_.durability == Durability::group_commit && sealed_.empty() && has_work() && !closing_;
      };
      for (int i = 0; i < kSettleYieldsMax && settling(); ++i) {
        const std::uint64_t seen = next_sequence_;
        lock.unlock();
        std::this_thread::yield();
        lock.lock();
        if (next_sequence_ == seen) break;
      }
    }
    // Seal the filling buffer only if it can go out now: otherwise it keeps collecting appends.
    if (buffers_in_flight_ + sealed_.size() < options_.writes_in_flight_max) seal_filling();
    while (!sealed_.empty() && buffers_in_flight_ + round.size() < options_.writes_in_flight_max) {
      const std::size_t next = sealed_.front();
      // Rounds and syncs in flight pin the segment: a new one is entered (and the old file closed)
      // only after they completed. A sync can still be in flight when every round has retired: a
      // later sync covering them all completed first (reap returns early when an append wakes
      // it). A backend may run the fdatasync later than it was queued (io_uring's fsync did, on a
      // worker that looked the file up only then: closing it before failed it with EBADF).
      const std::uint64_t segment = rounds_count_ > 0 || syncs_in_flight_ > 0 ? tail_.base
                                    : round.empty()   ? buffers_[next].segment_base
                                                      : buffers_[round.front()].segment_base;
      if (buffers_[next].segment_base != segment) break;
      round.push_back(next);
      sealed_.pop_front();
    }
    // About to wait in reap(): an append that fills a buffer from now on wakes the writer.
    if (round.empty() && (rounds_count_ > 0 || syncs_in_flight_ > 0)) reaping_ = true;
    return closing_ && sealed_.empty() && !filling_;
  }

  // Makes the segment the round writes into current, installing the prepared file as it (after
  // syncing the previous one completely: recovery relies on older segments never being torn).
  Status enter_segment(const Buffer& first) {
    if (!preparation_requested_) {
      preparer_->request();  // the first write: from now on a segment is always being readied
      preparation_requested_ = true;
    }
    if (tail_.file >= 0 && tail_.base == first.segment_base) return {};
    const bool first_segment = tail_.file < 0;
    if (!first_segment) {
      if (Status synced = io_->sync(tail_.file); !synced.ok()) return synced;
      const std::uint32_t sealed_salt = tail_.salt;
      close_tail();
      seal_segment(sealed_salt);
    }
    // The first segment of a new journal waits for its preparation (started at open) rather than
    // spend its whole life on slower syncs; at a rollover the writer does not wait for the disk.
    std::optional<SegmentPreparer::Prepared> prepared = preparer_->take(/*wait_if_under_way=*/first_segment);
    const auto file =
        prepared ? install_segment(*io_, directory_, prepared->file, prepared->path,
                                   first.segment_base, first.segment_salt)
                 : create_segment(*io_, directory_, first.segment_base, first.segment_salt,
                                  options_.segment_bytes_max);
    if (!file.ok()) return file.status();
    std::atomic<std::uint64_t>& made = !prepared ? segments_unprepared_
                                       : prepared->zero_filled ? segments_zero_filled_
                                                               : segments_allocated_;
    made.fetch_add(1, std::memory_order_relaxed);
    tail_ = {file.value(), file.value(), first.segment_base, first.segment_salt};
    SegmentInfo info{first.segment_base, first.segment_base, kSegmentHeaderBytes,
                     join_path(directory_, segment_file_name(first.segment_base)), {}, kSegmentHeaderBytes};
    if (options_.direct_io) {
      const auto direct = io_->open(info.path, OpenMode::read_write_direct);
      if (!direct.ok()) return direct.status();
      tail_.writes = direct.value();
    }
    info.index.reserve(index_entries_max_per_segment());  // allocated once, outside the lock
    std::lock_guard lock(mutex_);
    segments_.push_back(std::move(info));
    return {};
  }

  // The segment just left is complete (rounds in flight pin the segment, so all of its rounds have
  // retired): its index goes into an index file, so that open() need not read it. Best effort: if
  // the write fails, recovery scans the segment as it always could.
  void seal_segment(std::uint32_t salt) {
    SealedSegment sealed;
    std::string path;
    {
      std::lock_guard lock(mutex_);
      const SegmentInfo& done = segments_.back();
      sealed = {done.base, done.end_sequence, done.end_offset, options_.index_interval_bytes, salt, done.index};
      path = done.path;
    }
    (void)write_sealed_index(*io_, path, sealed);
    if (chainer_) chainer_->sealed({path, sealed.base, sealed.end_sequence - 1});
  }

  // Group commit, pipelined: writes go out as soon as buffers are taken, several in flight, each
  // round followed by an fdatasync covering it. While the disk works, small appends collect in the
  // staging buffers (a full one is written at once); when everything in flight has completed, the
  // writer retires it, writes everything staged, and syncs again. Rounds are acknowledged in order.
  void write_loop() {
    std::vector<std::size_t> round;
    round.reserve(options_.writes_in_flight_max);
    for (;;) {
      const bool closing = take_round(round);
      if (!round.empty()) {
        if (Status submitted = submit_round(round); !submitted.ok()) return stop(std::move(submitted));
        continue;  // take what else is staged before the sync that covers it
      }
      if (Status synced = sync_written_rounds(); !synced.ok()) return stop(std::move(synced));
      if (options_.durability == Durability::interval && unsynced_ &&
          (closing || Clock::now() >= next_interval_sync_)) {
        if (Status synced = sync_interval(); !synced.ok()) return stop(std::move(synced));
      }
      if (rounds_count_ > 0 || syncs_in_flight_ > 0) {
        if (Status reaped = reap_rounds(); !reaped.ok()) return stop(std::move(reaped));
        continue;
      }
      if (closing) {
        if (options_.durability == Durability::none && tail_.file >= 0) {
          // Leave nothing unsynced behind a clean close, whatever the mode.
          if (Status synced = io_->sync(tail_.file); !synced.ok()) fail(std::move(synced));
        }
        return;
      }
    }
  }

  Status submit_round(const std::vector<std::size_t>& buffers) {
    if (Status entered = enter_segment(buffers_[buffers.front()]); !entered.ok()) return entered;
    const std::size_t slot = (rounds_head_ + rounds_count_) % rounds_.size();
    Round& round = rounds_[slot];
    round.buffers.assign(buffers.begin(), buffers.end());  // capacity reserved: no allocation
    round.id = rounds_submitted_++;
    round.outstanding = buffers.size();
    for (const std::size_t index : buffers) {
      const Buffer& buffer = buffers_[index];
      round_of_buffer_[index] = slot;
      ANNAL_ASSERT(!options_.direct_io ||
                   (buffer.offset % kDirectBlockBytes == 0 && buffer.used % kDirectBlockBytes == 0));
      io_->queue_write(tail_.writes, buffer.offset, buffer.bytes.first(buffer.used), index);
    }
    ++rounds_count_;
    buffers_in_flight_ += buffers.size();
    return io_->submit();
  }

  // Group commit: an fdatasync covering every round submitted so far, queued once the writer has
  // taken everything staged (the backend holds it until those writes completed, then runs it on
  // this thread). While it runs, appends collect in the staging buffers, and one sync follows for
  // the lot: the device flushes once per group, not per round.
  Status sync_written_rounds() {
    if (options_.durability != Durability::group_commit || rounds_submitted_ == sync_queued_rounds_) {
      return {};
    }
    // Noted first: a backend may run the sync inside queue_sync (the io_uring one does, when the
    // writes it covers have completed).
    if (sync_started_.size() < sync_started_.capacity()) {  // more in flight go unmeasured: no allocation here
      sync_started_.push_back({kSyncTagBit | rounds_submitted_, Clock::now()});
    }
    io_->queue_sync(tail_.file, kSyncTagBit | rounds_submitted_);
    sync_queued_rounds_ = rounds_submitted_;
    ++syncs_in_flight_;
    return io_->submit();
  }

  // Waits for everything in flight to complete (or for a wake-up from an append: a full buffer is
  // waiting), then retires the rounds that are done. Waiting for all, not the first, saves the
  // writer a wake-up per write completion: the sync behind the writes completes last anyway.
  Status reap_rounds() {
    std::array<Completion, 16> done{};
    const auto reaped = io_->reap(done, std::min(done.size(), operations_in_flight()));
    {
      std::lock_guard lock(mutex_);
      reaping_ = false;
    }
    if (!reaped.ok()) return reaped.status();
    const Completion* failed = nullptr;
    for (std::size_t i = 0; i < reaped.value(); ++i) {
      const Completion& completion = done[i];
      if (completion.result < 0 && failed == nullptr) failed = &completion;
      if ((completion.tag & kSyncTagBit) != 0) {
        // Syncs may complete out of order; each one covers every round submitted before it.
        ANNAL_ASSERT(syncs_in_flight_ > 0);
        --syncs_in_flight_;
        synced_rounds_ = std::max(synced_rounds_, completion.tag & ~kSyncTagBit);
        sync_completed(completion.tag);
        continue;
      }
      Round& round = rounds_[round_of_buffer_[completion.tag]];
      ANNAL_ASSERT(round.outstanding > 0);
      --round.outstanding;
    }
    if (failed != nullptr) return completion_error(*failed);
    // In order, each once its writes are done and (group commit) a sync queued after them is.
    const bool syncs = options_.durability == Durability::group_commit;
    std::uint64_t retired = 0;
    while (rounds_count_ > 0 && rounds_[rounds_head_].outstanding == 0 &&
           (!syncs || rounds_[rounds_head_].id < synced_rounds_)) {
      retired = retire(rounds_[rounds_head_]);
      rounds_head_ = (rounds_head_ + 1) % rounds_.size();
      --rounds_count_;
    }
    if (retired != 0 && options_.durability != Durability::interval) make_durable(retired);
    return {};
  }

  // Returns the round's last sequence.
  std::uint64_t retire(const Round& round) {
    const Buffer& last = buffers_[round.buffers.back()];
    std::lock_guard lock(mutex_);
    // Readers locate through these, and only once durable_ covers the records.
    for (const std::size_t index : round.buffers) segments_.back().index.add(buffers_[index].marks);
    segments_.back().end_sequence = last.last_sequence + 1;
    segments_.back().end_offset = last.offset + last.used;
    if (options_.durability == Durability::interval) {
      if (!unsynced_) next_interval_sync_ = Clock::now() + options_.sync_interval;
      unsynced_ = true;
      written_ = last.last_sequence;
    }
    for (const std::size_t index : round.buffers) free_.push_back(index);
    buffers_in_flight_ -= round.buffers.size();
    buffer_freed_.notify_all();
    return last.last_sequence;
  }

  Status completion_error(const Completion& completion) const {
    const int error = static_cast<int>(-completion.result);
    const std::string what = (completion.tag & kSyncTagBit) != 0 ? "fdatasync" : "write";
    const ErrorCode code = error == ENOSPC ? ErrorCode::no_space : ErrorCode::failed;
    return Status(code, "journal " + directory_ + ": " + what + " of segment " +
                            segment_file_name(tail_.base) + " failed (" + std::strerror(error) +
                            "); nothing after sequence " + std::to_string(durable_.load()) +
                            " is acknowledged. " +
                            (code == ErrorCode::no_space ? "Free space, then reopen."
                                                         : "Reopen the journal to recover."));
  }

  // Writes and syncs queued and not yet reaped.
  [[nodiscard]] std::size_t operations_in_flight() const {
    std::size_t outstanding = syncs_in_flight_;
    for (std::size_t i = 0; i < rounds_count_; ++i) {
      outstanding += rounds_[(rounds_head_ + i) % rounds_.size()].outstanding;
    }
    return outstanding;
  }

  // The writer's end after a fatal error: report it, then wait out what is still with the kernel,
  // whose buffers must stay valid until it is done with them. Nothing of it is acknowledged.
  void stop(Status error) {
    fail(std::move(error));
    std::size_t outstanding = operations_in_flight();
    std::array<Completion, 16> done{};
    while (outstanding > 0) {
      const auto reaped = io_->reap(done, 1);
      if (!reaped.ok()) break;
      outstanding -= std::min(outstanding, reaped.value());
    }
  }

  // Counts a completed fdatasync and, if its start was noted, how long it took. Writer thread.
  void sync_completed(std::uint64_t tag) {
    const auto started = std::find_if(sync_started_.begin(), sync_started_.end(), [&](const auto& s) { return s.first == tag; });
    if (started == sync_started_.end()) {
      syncs_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    sync_done(started->second);
    sync_started_.erase(started);
  }
  void sync_done(Clock::time_point started) {
    syncs_.fetch_add(1, std::memory_order_relaxed);
    sync_ns_.observe(static_cast<std::uint64_t>(std::chrono::nanoseconds(Clock::now() - started).count()));
  }

  Status sync_interval() {
    const Clock::time_point started = Clock::now();
    if (Status synced = io_->sync(tail_.file); !synced.ok()) return synced;
    sync_done(started);
    {
      std::lock_guard lock(mutex_);
      unsynced_ = false;
    }
    make_durable(written_);
    return {};
  }

  // The records up to `sequence` are written and synced as the mode asks. Readers in other
  // processes are told first (the LOCK file), so anyone woken here who then starts a tool finds
  // the notice there already: one small pwrite per group commit, outside the lock appenders take.
  // Best effort: if it fails, those readers only fall behind (open() wrote the first notice, or
  // failed). Writer thread.
  void make_durable(std::uint64_t sequence) {
    if (sequence > last_made_durable_) group_records_.observe(sequence - last_made_durable_);
    last_made_durable_ = sequence;
    (void)tell_readers_durable(*io_, lock_, sequence, options_.durability != Durability::none);
    std::lock_guard lock(mutex_);
    publish_durable(sequence);
  }

  // Under mutex_.
  void publish_durable(std::uint64_t sequence) {
    ANNAL_ASSERT(sequence >= durable_.load(std::memory_order_relaxed));
    durable_.store(sequence, std::memory_order_release);
    wake_waiters(sequence);
  }

  // Wakes the threads waiting for a sequence at or below `sequence`, and no other: a waiter woken
  // for an advance that does not cover its record (it was staged for the next round) would only
  // switch in and out again, and on 2 cores it would delay the appends that round is waiting for.
  // Under mutex_.
  void wake_waiters(std::uint64_t sequence) {
    for (DurableWaiter* waiter : waiters_) {
      if (waiter->sequence <= sequence) waiter->woken.notify_one();
    }
  }

  const std::string directory_;
  const Options options_;
  RecordCipher* const cipher_ = options_.cipher.get();  // null: payloads stored as given
  std::shared_ptr<IoBackend> io_;
  const FileId lock_;
  std::thread writer_;
  std::unique_ptr<SegmentPreparer> preparer_;  // reset at close, before the lock is released
  std::unique_ptr<SegmentChainer> chainer_;    // likewise; null without Options::hash_chain
  bool preparation_requested_ = false;  // writer thread only

  mutable std::mutex mutex_;
  std::condition_variable work_ready_, buffer_freed_;
  // A thread in wait_durable, on its own stack, listed in waiters_ while it waits.
  struct DurableWaiter {
    std::uint64_t sequence;
    std::condition_variable woken;
  };
  std::vector<DurableWaiter*> waiters_;  // under mutex_
  std::vector<SegmentInfo> segments_;  // under mutex_
  RecoveryReport report_;
  std::mt19937 random_;
  std::vector<Buffer> buffers_;
  std::deque<std::size_t> free_, sealed_;
  std::optional<std::size_t> filling_;
  std::uint64_t next_sequence_ = kFirstSequence;
  std::uint64_t staged_base_ = 0;   // the segment appenders are encoding for
  std::uint32_t staged_salt_ = 0;
  std::uint64_t write_offset_ = 0;  // where the next staged byte lands in that segment
  Status error_;
  bool closing_ = false, closed_ = false;
  std::atomic<std::uint64_t> durable_{0};
  // Interval mode: what is written but not yet synced.
  bool unsynced_ = false;
  std::uint64_t written_ = 0;
  Clock::time_point next_interval_sync_{};
  Tail tail_;  // writer thread only
  // Rounds submitted and not yet retired, oldest at rounds_head_, in a ring of
  // writes_in_flight_max slots (each round holds at least one buffer, so that bounds them).
  // All writer thread only.
  std::vector<Round> rounds_;
  std::size_t rounds_head_ = 0;
  std::size_t rounds_count_ = 0;
  std::uint64_t rounds_submitted_ = 0;  // ever; Round::id counts these
  std::size_t syncs_in_flight_ = 0;
  std::uint64_t sync_queued_rounds_ = 0;  // a queued sync covers the rounds with id below this
  std::uint64_t synced_rounds_ = 0;       // rounds with id below this are synced
  std::vector<std::size_t> round_of_buffer_;
  std::size_t buffers_in_flight_ = 0;
  bool reaping_ = false;  // under mutex_: the writer waits in reap() and wants waking for work
  // Stats: appenders count under mutex_ (relaxed atomics, so stats() takes no lock); the rest is
  // the writer thread's. sync_started_ notes when each async fdatasync was queued (capacity
  // reserved at open; syncs beyond it are counted, not timed).
  std::atomic<std::uint64_t> appends_{0}, records_{0}, bytes_{0}, syncs_{0};
  std::atomic<std::uint64_t> segments_zero_filled_{0}, segments_allocated_{0}, segments_unprepared_{0};
  Histogram sync_ns_{1'000, 24};     // 1 us to 4.2 s, doubling
  Histogram group_records_{1, 21};   // 1 to 1M records
  std::vector<std::pair<std::uint64_t, Clock::time_point>> sync_started_;
  std::uint64_t last_made_durable_ = 0;
};

Result<std::unique_ptr<Reader>> JournalImpl::reader(std::uint64_t from, std::size_t chunk_bytes) {
  from = std::max(from, kFirstSequence);
  {
    std::lock_guard lock(mutex_);
    if (Status retained = check_retained(segments_, from); !retained.ok()) return retained;
  }
  Options options = options_;
  if (chunk_bytes != 0) options.read_chunk_bytes = std::max(chunk_bytes, kSegmentHeaderBytes);
  return std::make_unique<Reader>(*this, io_, options, from);
}

Result<SegmentLocation> JournalImpl::locate(std::uint64_t sequence) const {
  std::lock_guard lock(mutex_);
  return locate_in(segments_, sequence);
}

Status JournalImpl::remove_segments_before(std::uint64_t sequence) {
  std::uint64_t keep_from = 0;
  {
    std::lock_guard lock(mutex_);
    // Never the last segment: appends continue there.
    for (std::size_t i = 0; i + 1 < segments_.size() && segments_[i].end_sequence <= sequence; ++i) {
      keep_from = segments_[i + 1].base;
    }
  }
  if (keep_from == 0) return {};
  // Chained before they go: a segment removed before its entry was written would stop the chain
  // thread (it cannot read it) and leave the chain without it.
  if (chainer_) chainer_->wait_idle();
  // The floor moves first: a segment gone below it would read as one deleted by hand at the next open.
  if (Status kept = write_retention_floor(*io_, lock_, keep_from); !kept.ok()) return kept;
  std::vector<std::string> doomed;
  {
    std::lock_guard lock(mutex_);
    while (!segments_.empty() && segments_.front().base < keep_from) {
      doomed.push_back(segments_.front().path);
      segments_.erase(segments_.begin());
    }
  }
  for (const std::string& path : doomed) {
    if (Status removed = io_->remove(path); !removed.ok()) return removed;
    (void)io_->remove(sealed_index_path(path));  // may never have been written
  }
  return io_->sync_directory(directory_);
}

// Direct I/O writes start on a block boundary. A tail that ends inside a block (written without
// direct I/O, or cut there by recovery) gets a padding record up to the boundary first, written
// through the ordinary descriptor (synced by the caller).
Status align_tail(IoBackend& io, Recovered& recovered) {
  SegmentInfo& tail = recovered.segments.back();
  const std::size_t pad = padding_to_block(tail.end_offset);
  if (pad == 0) return {};
  std::array<std::byte, kPaddingBytesMax> padding{};
  // Everything before it is durable (recovery syncs the tail), so the lag is 1.
  encode_padding(tail.end_sequence, 1, recovered.tail_salt, std::span(padding).first(pad));
  if (Status written = io.write(recovered.tail_file, tail.end_offset, std::span(padding).first(pad));
      !written.ok()) {
    return written;
  }
  tail.end_offset += pad;
  return {};
}

// Refuses a log that lost acknowledged events (before recovery repairs anything), unless the
// options accept the loss: point-in-time recovery is such consent for what follows the damage.
BeforeRepair judge_data_loss(const std::string& directory, const Options& options, const LockWords& words,
                             std::optional<DataLoss>& accepted) {
  return [&directory, &options, &words, &accepted](std::uint64_t first_base, std::uint64_t last) {
    const auto witness = options.durable_witness ? options.durable_witness(last) : std::nullopt;
    auto loss = find_data_loss(directory, first_base, last, words, witness);
    if (!loss) return Status();
    if (options.accept_data_loss || options.recovery == RecoveryMode::truncate_at_first_corruption) {
      accepted = std::move(loss);
      return Status();
    }
    return Status(ErrorCode::corruption,
                  loss->what + ". Refusing to open, and nothing was changed: put the missing segment files back, "
                               "or open with accept_data_loss (annal: --accept-data-loss) to continue without them.");
  };
}

// After an accepted loss: said on stderr and in the report, and in a note in the directory. A log
// left with no segment continues after the lost sequences, so none is given away.
Status record_data_loss(IoBackend& io, const std::string& directory, const DataLoss& loss, Recovered& recovered) {
  RecoveryReport& report = recovered.report;
  if (recovered.segments.empty()) report.next_sequence = std::max(report.next_sequence, loss.last + 1);
  report.data_loss = loss.what;
  report.lost_first = loss.first;
  report.lost_last = loss.last;
  std::fprintf(stderr, "annal: %s; accepted (accept_data_loss): the log continues at %llu\n", loss.what.c_str(),
               static_cast<unsigned long long>(report.next_sequence));
  return leave_data_loss_note(io, directory, loss, report.next_sequence);
}

}  // namespace

Result<std::unique_ptr<Journal>> Journal::open(const std::string& directory, const Options& options) {
  if (options.io == IoKind::posix) return open(directory, options, std::make_unique<PosixBackend>(options.file_mode));
  auto uring = UringBackend::create(256, options.file_mode);
  if (!uring.ok()) return uring.status();
  return open(directory, options, std::move(uring).value());
}

Result<std::unique_ptr<Journal>> Journal::open(const std::string& directory, const Options& options,
                                               std::shared_ptr<IoBackend> io) {
  if (Status valid = check_options(options); !valid.ok()) return valid;
  const auto lock = io->lock_directory(directory);
  if (!lock.ok()) return lock.status();
  if (options.direct_io) {
    // Say now, not at the first write, if this file system cannot do direct I/O.
    const auto probe = io->open(join_path(directory, std::string(kLockFileName)), OpenMode::read_write_direct);
    if (!probe.ok()) {
      (void)io->close(lock.value());
      return Status(probe.status().code(), "journal option direct_io: " + probe.status().message());
    }
    (void)io->close(probe.value());
  }
  // Before anything below writes over the durable notice.
  const auto words = read_lock_words(*io, lock.value());
  if (!words.ok()) {
    (void)io->close(lock.value());
    return words.status();
  }
  std::optional<DataLoss> loss;
  auto recovered = recover(*io, directory, options, judge_data_loss(directory, options, words.value(), loss));
  if (!recovered.ok()) {
    (void)io->close(lock.value());
    return recovered.status();
  }
  if (!recovered.value().report.message.empty()) {
    std::fprintf(stderr, "annal: %s\n", recovered.value().report.message.c_str());
  }
  Status kept = loss ? record_data_loss(*io, directory, *loss, recovered.value()) : Status();
  // The floor, the first time (a directory from before it had none: what is there is trusted).
  if (kept.ok() && (!words.value().kept_from || loss)) {
    const std::uint64_t first = recovered.value().segments.empty() ? recovered.value().report.next_sequence
                                                                   : recovered.value().segments.front().base;
    kept = write_retention_floor(*io, lock.value(), first);
  }
  if (!kept.ok()) {
    if (recovered.value().tail_file >= 0) (void)io->close(recovered.value().tail_file);
    (void)io->close(lock.value());
    return kept;
  }
  FileId tail_writes = -1;
  if (recovered.value().tail_file >= 0) {
    Status status = options.direct_io ? align_tail(*io, recovered.value()) : Status();
    // What a crashed process left in the page cache is recovered as durable: make it so.
    if (status.ok()) status = io->sync(recovered.value().tail_file);
    if (status.ok() && options.direct_io) {
      const auto direct = io->open(recovered.value().segments.back().path, OpenMode::read_write_direct);
      if (direct.ok()) tail_writes = direct.value();
      status = direct.status();
    }
    if (!status.ok()) {
      (void)io->close(recovered.value().tail_file);
      (void)io->close(lock.value());
      return status;
    }
  }
  // Readers in other processes believe the notice while the lock is held, and the previous
  // writer's may stand past what recovery kept (damage cut the log): it is replaced before
  // anything is appended, or the open fails.
  // From here on, a failure closes all three.
  const auto give_up = [&](Status status) {
    if (tail_writes >= 0) (void)io->close(tail_writes);
    if (recovered.value().tail_file >= 0) (void)io->close(recovered.value().tail_file);
    (void)io->close(lock.value());
    return status;
  };
  if (Status told = tell_readers_durable(*io, lock.value(), recovered.value().report.next_sequence - 1, true);
      !told.ok()) {
    return give_up(
        Status(told.code(), "journal " + directory + ": writing the durable sequence into LOCK: " + told.message()));
  }
  if (rekey_cut_short(*io, directory)) {
    std::fprintf(stderr, "annal: journal %s: a rekey (annal rekey) was cut short here (%s): CHAIN does not match the "
                 "segments it rewrote until annal rekey is run again, which finishes it\n",
                 directory.c_str(), std::string(kRekeyFileName).c_str());
  }
  // Last: it starts chaining what a crash left unchained at once.
  auto chainer = options.hash_chain ? SegmentChainer::open(*io, directory, recovered.value().segments, options.chain_key,
                                                                options.tag_untagged_chain, options.direct_io)
                                    : Result<std::unique_ptr<SegmentChainer>>(std::unique_ptr<SegmentChainer>());
  if (!chainer.ok()) return give_up(chainer.status());
  return std::unique_ptr<Journal>(new JournalImpl(directory, options, std::move(io), lock.value(),
                                                  std::move(recovered).value(), tail_writes,
                                                  std::move(chainer).value()));
}

Result<std::unique_ptr<Reader>> Journal::reader(std::uint64_t from) { return reader(from, 0); }

Result<std::vector<Record>> Journal::read(std::uint64_t from, std::size_t max_records) {
  auto opened = reader(from);
  if (!opened.ok()) return opened.status();
  std::vector<Record> out;
  while (out.size() < max_records) {
    const auto record = opened.value()->next();
    if (!record.ok()) return record.status();
    if (!record.value()) break;  // caught up with durable
    const RecordView& view = *record.value();
    out.push_back({view.header, {view.payload.begin(), view.payload.end()}, view.erased});
  }
  return out;
}


}  // namespace annal::journal
