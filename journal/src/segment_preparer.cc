#include "segment_preparer.h"

#include <algorithm>
#include <vector>

namespace annal::journal {
namespace {

// Zeros go out in writes of this size: large enough to stream, small enough not to hold the disk
// for long against the writer's own writes.
constexpr std::uint64_t kZeroChunkBytes = 1u << 20;

}  // namespace

SegmentPreparer::SegmentPreparer(IoBackend& io, std::string directory, std::uint64_t bytes,
                                 bool zero_fill)
    : io_(io), directory_(std::move(directory)), bytes_(bytes), zero_fill_(zero_fill),
      thread_([this] { run(); }) {}

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

std::optional<SegmentPreparer::Prepared> SegmentPreparer::take(bool wait_if_under_way) {
  std::optional<Prepared> taken;
  {
    std::unique_lock lock(mutex_);
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
    lock.unlock();
    std::optional<Prepared> prepared = prepare(number);
    lock.lock();
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

std::optional<SegmentPreparer::Prepared> SegmentPreparer::prepare(std::uint64_t number) {
  const std::string path = directory_ + "/prepared-" + std::to_string(number) + ".tmp";
  const auto file = io_.open(path, OpenMode::create_exclusive);
  if (!file.ok()) return std::nullopt;
  // Reserve first, so a full disk shows here and not halfway through the zeros.
  Status status = io_.allocate(file.value(), bytes_);
  if (status.ok() && zero_fill_) {
    const std::vector<std::byte> zeros(std::min(bytes_, kZeroChunkBytes));
    for (std::uint64_t at = 0; at < bytes_ && status.ok(); at += zeros.size()) {
      const std::uint64_t n = std::min<std::uint64_t>(zeros.size(), bytes_ - at);
      status = io_.write(file.value(), at, std::span(zeros).first(n));
      std::lock_guard lock(mutex_);
      if (stopping_) status = Status(ErrorCode::failed, "journal closing");
    }
  }
  if (status.ok()) status = io_.sync(file.value());
  if (!status.ok()) {
    (void)io_.close(file.value());
    (void)io_.remove(path);
    return std::nullopt;
  }
  return Prepared{file.value(), path};
}

}  // namespace annal::journal
