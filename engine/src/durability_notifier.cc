#include "durability_notifier.h"

#include <chrono>
#include <cstdio>
#include <utility>

#include "annal/base/thread_role.h"
#include "annal/base/user_code.h"

namespace annal::engine {
namespace {

void run_callback(const DurabilityNotifier::Callback& done, const Status& status) {
  const Status called = call_user_code([&] { done(status); }, [] { return "a durability callback"; });
  if (!called.ok()) std::fprintf(stderr, "annal: %s\n", called.to_string().c_str());
}

}  // namespace

DurabilityNotifier::DurabilityNotifier(journal::Journal& journal, std::function<void(std::uint64_t)> on_advance)
    : journal_(journal), on_advance_(std::move(on_advance)) {
  caller_ = std::thread([this] { call_back(); });
  follower_ = std::thread([this] { follow_journal(); });
  name_thread(caller_, "annal-callback");
  name_thread(follower_, "annal-durable");
}

void DurabilityNotifier::add(std::uint64_t sequence, Callback done) { add(sequence, std::move(done), false); }

void DurabilityNotifier::add_internal(std::uint64_t sequence, Callback done) { add(sequence, std::move(done), true); }

void DurabilityNotifier::add(std::uint64_t sequence, Callback done, bool internal) {
  std::unique_lock lock(mutex_);
  if (error_.ok() && sequence > journal_.durable_sequence()) {
    pending_.push({sequence, std::move(done), internal});
    if (pending_.size() == 1) needed_.notify_one();
    return;
  }
  // Settled already. A sequence the journal made durable before it failed is still durable.
  Status status = sequence <= journal_.durable_sequence() ? Status() : error_;
  if (internal) return done(status);
  // Never run here: the caller may hold its own locks, or be the thread the callback waits for.
  if (!callers_stopping_) {
    ready_.push_back({std::move(done), std::move(status)});
    settled_.notify_one();
    return;
  }
  lock.unlock();
  run_callback(done, status);  // the callback thread has ended: the engine is closed
}

void DurabilityNotifier::follow(int change) {
  std::lock_guard lock(mutex_);
  followers_ += change;
  ANNAL_ASSERT(followers_ >= 0);
  needed_.notify_one();
}

void DurabilityNotifier::settle(std::uint64_t durable) {
  const bool any = !pending_.empty() && (pending_.top().sequence <= durable || !error_.ok());
  while (!pending_.empty() && (pending_.top().sequence <= durable || !error_.ok())) {
    Pending& top = const_cast<Pending&>(pending_.top());  // popped at once
    Status status = top.sequence <= durable ? Status() : error_;
    if (top.internal) {
      top.done(status);
    } else {
      ready_.push_back({std::move(top.done), std::move(status)});
    }
    pending_.pop();
  }
  if (any) settled_.notify_one();
}

void DurabilityNotifier::follow_journal() {
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
    // Failed, or closed: what is not durable now never will be.
    if (journal_done && error_.ok()) error_ = waited;
    settle(seen);
    if (stopping_) return;
    if (journal_done) needed_.wait(lock, [&] { return stopping_; });
  }
}

void DurabilityNotifier::call_back() {
  std::unique_lock lock(mutex_);
  for (;;) {
    settled_.wait(lock, [&] { return !ready_.empty() || callers_stopping_; });
    if (ready_.empty()) return;
    Settled next = std::move(ready_.front());
    ready_.pop_front();
    lock.unlock();
    run_callback(next.done, next.status);
    lock.lock();
  }
}

void DurabilityNotifier::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  needed_.notify_all();
  if (follower_.joinable()) follower_.join();
  {
    std::lock_guard lock(mutex_);
    if (error_.ok()) error_ = Status(ErrorCode::failed, "the engine closed");
    settle(journal_.durable_sequence());
    callers_stopping_ = true;
  }
  settled_.notify_all();
  if (caller_.joinable() && !on_callback_thread()) caller_.join();
}

}  // namespace annal::engine
