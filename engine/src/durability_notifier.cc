#include "durability_notifier.h"

#include <chrono>
#include <utility>

namespace annal::engine {

DurabilityNotifier::DurabilityNotifier(journal::Journal& journal, std::function<void(std::uint64_t)> on_advance)
    : journal_(journal), on_advance_(std::move(on_advance)) {
  thread_ = std::thread([this] { run(); });
}

void DurabilityNotifier::add(std::uint64_t sequence, Callback done) {
  {
    std::lock_guard lock(mutex_);
    if (error_.ok() && sequence > journal_.durable_sequence()) {
      pending_.push({sequence, std::move(done)});
      if (pending_.size() == 1) needed_.notify_one();
      return;
    }
  }
  // Settled already. A sequence the journal made durable before it failed is still durable.
  if (sequence <= journal_.durable_sequence()) return done(Status());
  std::unique_lock lock(mutex_);
  const Status error = error_;
  lock.unlock();
  done(error);
}

void DurabilityNotifier::follow(int change) {
  std::lock_guard lock(mutex_);
  followers_ += change;
  ANNAL_ASSERT(followers_ >= 0);
  needed_.notify_one();
}

std::vector<DurabilityNotifier::Pending> DurabilityNotifier::settled(std::uint64_t durable) {
  std::vector<Pending> out;
  while (!pending_.empty() && (pending_.top().sequence <= durable || !error_.ok())) {
    out.push_back(std::move(const_cast<Pending&>(pending_.top())));  // popped at once
    pending_.pop();
  }
  return out;
}

void DurabilityNotifier::run() {
  std::uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      needed_.wait(lock, [&] { return stopping_ || !pending_.empty() || followers_ > 0; });
      if (stopping_) return;
    }
    // The wait returns as soon as anything new is durable; the timeout only bounds how late a
    // stop is noticed while the journal is idle.
    const Status waited =
        journal_.wait_durable(seen + 1, journal::Journal::Clock::now() + std::chrono::milliseconds(50));
    const std::uint64_t durable = journal_.durable_sequence();
    if (durable > seen) {
      seen = durable;
      on_advance_(durable);
    }
    const bool journal_done = !waited.ok() && waited.code() != ErrorCode::timed_out;
    std::unique_lock lock(mutex_);
    std::vector<Pending> ready = settled(seen);
    if (journal_done && error_.ok()) {
      // Failed, or closed: what is not durable now never will be.
      error_ = waited;
      for (Pending& pending : settled(seen)) ready.push_back(std::move(pending));
    }
    const Status error = error_;
    lock.unlock();
    for (Pending& pending : ready) pending.done(pending.sequence <= seen ? Status() : error);
    lock.lock();
    if (stopping_) return;
    if (journal_done) needed_.wait(lock, [&] { return stopping_; });
  }
}

void DurabilityNotifier::stop() {
  // From a callback (Engine::close in on_durable's callback) the thread would join itself.
  ANNAL_ASSERT(std::this_thread::get_id() != thread_.get_id());
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  needed_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::unique_lock lock(mutex_);
  if (error_.ok()) error_ = Status(ErrorCode::failed, "the engine closed");
  const std::uint64_t durable = journal_.durable_sequence();
  std::vector<Pending> ready = settled(durable);
  const Status error = error_;
  lock.unlock();
  for (Pending& pending : ready) pending.done(pending.sequence <= durable ? Status() : error);
}

}  // namespace annal::engine
