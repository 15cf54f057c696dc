// GatedBackend: another backend whose reap() can be held shut, for tests that need the writer
// stopped with its writes in flight (appenders then run out of buffers and wait) at a moment the
// test chooses. Everything else goes straight through.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>

#include "forwarding_backend.h"

namespace annal::journal::test {

class GatedBackend final : public ForwardingBackend {
 public:
  using ForwardingBackend::ForwardingBackend;

  void hold() {
    std::lock_guard lock(mutex_);
    held_ = true;
  }
  void release() {
    std::lock_guard lock(mutex_);
    held_ = false;
    changed_.notify_all();
  }
  // Waits until the writer is stopped at the gate (false after `timeout`: a hang guard).
  bool wait_until_stopped(std::chrono::seconds timeout = std::chrono::seconds(60)) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return stopped_ > 0; });
  }

  Result<std::size_t> reap(std::span<Completion> out, std::size_t min_complete) override {
    {
      std::unique_lock lock(mutex_);
      ++stopped_;
      changed_.notify_all();
      changed_.wait(lock, [&] { return !held_; });
      --stopped_;
    }
    return ForwardingBackend::reap(out, min_complete);
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  bool held_ = false;
  int stopped_ = 0;
};

}  // namespace annal::journal::test
