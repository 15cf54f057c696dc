#include "segment_preparer.h"

#include <algorithm>
#include <vector>

#include "annal/base/thread_role.h"

namespace annal::journal {
namespace {

// Zeros go out in writes of this size, each written back before the next: large enough to
// stream, small enough that a journal sync queued behind one waits little.
constexpr std::uint64_t kZeroChunkBytes = 256u << 10;

}  // namespace

SegmentPreparer::SegmentPreparer(IoBackend& io, std::string directory, std::uint64_t bytes,
                                 SegmentPreparation preparation)
    : io_(io), directory_(std::move(directory)), bytes_(bytes), preparation_(preparation),
      zero_fill_next_(preparation != SegmentPreparation::allocate), thread_([this] { run(); }) {
  name_thread(thread_, "annal-prepare");
}

SegmentPreparer::~SegmentPreparer() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wanted_.notify_one();
  thread_.join();
  if (ready_) {
    (void)io_.close(ready_->file);
    (void)io_.remove(ready_->path);
  }
}

void SegmentPreparer::request() {
  {
    std::lock_guard lock(mutex_);
    if (requested_ || ready_ || gave_up_) return;
    requested_ = true;
  }
  wanted_.notify_one();
}

bool SegmentPreparer::zero_fill_next(std::optional<Clock::duration> filled_in,
                                     std::optional<Clock::duration> zero_fill_took) {
  if (!filled_in || !zero_fill_took) return true;
  return *filled_in >= kFillToZeroFillMin * *zero_fill_took;
}

void SegmentPreparer::choose_next(bool fell_behind) {
  const Clock::time_point now = Clock::now();
  if (preparation_ == SegmentPreparation::adaptive) {
    if (fell_behind) {
      // The writer has a segment to fill and no file: it makes one itself, and the zeros still
      // being written would only compete with its writes for the disk. The file after this one
      // is only allocated, whatever the times say.
      hurry_ = true;
      fell_behind_ = true;
      zero_fill_next_ = false;
    } else {
      zero_fill_next_ = !fell_behind_ && zero_fill_next(last_take_ ? std::optional(now - *last_take_) : std::nullopt,
                                                        zero_fill_took_);
      fell_behind_ = false;
    }
  }
  last_take_ = now;
}

std::optional<SegmentPreparer::Prepared> SegmentPreparer::take(bool wait_if_under_way) {
  std::optional<Prepared> taken;
  {
    std::unique_lock lock(mutex_);
    choose_next(/*fell_behind=*/!wait_if_under_way && requested_ && !ready_ && !gave_up_);
    if (wait_if_under_way) finished_.wait(lock, [&] { return !requested_ || ready_ || stopping_; });
    taken.swap(ready_);
    if (!taken) return std::nullopt;  // still under way (it stays requested) or given up
    if (!gave_up_) requested_ = true;
  }
  wanted_.notify_one();
  return taken;
}

void SegmentPreparer::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    wanted_.wait(lock, [&] { return stopping_ || (requested_ && !ready_); });
    if (stopping_) {
      finished_.notify_all();
      return;
    }
    const std::uint64_t number = prepared_count_++;
    const bool zero_fill = zero_fill_next_ && !hurry_;  // a take may have found it wanted already
    hurry_ = false;
    lock.unlock();
    const Clock::time_point started = Clock::now();
    std::uint64_t zeroed = 0;
    Clock::duration zeroing{};
    std::optional<Prepared> prepared = prepare(number, zero_fill, zeroed, zeroing);
    lock.lock();
    if (prepared && zeroed > 0) {
      // A zero fill cut short counts for what the whole one would have taken at its pace: its
      // writes scaled up to the whole file, the rest (open, allocate, sync) as it was.
      const auto whole = std::chrono::duration<double>(zeroing) * (static_cast<double>(bytes_) / static_cast<double>(zeroed));
      zero_fill_took_ = (Clock::now() - started - zeroing) + std::chrono::duration_cast<Clock::duration>(whole);
    }
    requested_ = false;
    if (prepared && stopping_) {
      (void)io_.close(prepared->file);
      (void)io_.remove(prepared->path);
      prepared.reset();
    }
    gave_up_ = gave_up_ || !prepared;
    ready_ = std::move(prepared);
    finished_.notify_all();
  }
}

std::optional<SegmentPreparer::Prepared> SegmentPreparer::prepare(std::uint64_t number, bool zero_fill,
                                                                  std::uint64_t& zeroed, Clock::duration& zeroing) {
  const std::string path = directory_ + "/prepared-" + std::to_string(number) + ".tmp";
  const auto file = io_.open(path, OpenMode::create_exclusive);
  if (!file.ok()) return std::nullopt;
  // Reserve first, so a full disk shows here and not halfway through the zeros.
  Status status = io_.allocate(file.value(), bytes_);
  bool zero_filled = zero_fill;
  if (status.ok() && zero_fill) {
    const Clock::time_point started = Clock::now();
    const std::vector<std::byte> zeros(std::min(bytes_, kZeroChunkBytes));
    for (std::uint64_t at = 0; at < bytes_ && status.ok(); at += zeros.size()) {
      const std::uint64_t n = std::min<std::uint64_t>(zeros.size(), bytes_ - at);
      status = io_.write(file.value(), at, std::span(zeros).first(n));
      // Out to the disk before the next piece: the journal's syncs queue behind one piece at most.
      if (status.ok()) status = io_.write_back(file.value(), at, n);
      zeroed += n;
      std::lock_guard lock(mutex_);
      if (stopping_) status = Status(ErrorCode::failed, "journal closing");
      if (hurry_ && at + n < bytes_) {  // the rest stays allocated only
        zero_filled = false;
        break;
      }
    }
    zeroing = Clock::now() - started;
  }
  if (status.ok()) status = io_.sync(file.value());
  if (!status.ok()) {
    (void)io_.close(file.value());
    (void)io_.remove(path);
    return std::nullopt;
  }
  return Prepared{file.value(), path, zero_filled};
}

}  // namespace annal::journal
