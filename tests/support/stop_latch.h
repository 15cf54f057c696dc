// StopLatch: for test projections whose apply() must wait at a chosen event until they are told to
// stop (Projection::stop_requested), standing for user code that waits on something outside. The
// test learns that the wait has begun from wait_until_waiting(), not from the runner's progress,
// which the waiting apply() may be holding.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

namespace annal::test {

class StopLatch {
 public:
  // From apply(): says it is waiting, then waits until release().
  void wait_for_release() {
    std::unique_lock lock(mutex_);
    waiting_ = true;
    changed_.notify_all();
    changed_.wait(lock, [&] { return released_; });
  }
  // From stop_requested().
  void release() {
    std::lock_guard lock(mutex_);
    released_ = true;
    changed_.notify_all();
  }
  // False if no apply() began to wait within `limit` (a hang guard).
  bool wait_until_waiting(std::chrono::milliseconds limit = std::chrono::minutes(2)) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, limit, [&] { return waiting_; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  bool waiting_ = false;
  bool released_ = false;
};

}  // namespace annal::test
