// Watchdog: aborts the test process if a scope takes longer than its limit, so a lost wake-up or a
// deadlock shows up as a named failure instead of a hung CI run. It never decides pass or fail on
// speed: the limits are minutes, far beyond any healthy run.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

#include <unistd.h>

namespace annal::test {

// The constructor returns only once the watching thread is asleep in its wait, holding no lock of
// the allocator's: a test that forks right after (the kill tests do, every round) must not fork
// while it is starting up. A child forked while another thread held an allocator lock (ASan's
// takes one per size class) inherits it held, and its first allocation of that size waits forever.
class Watchdog {
 public:
  explicit Watchdog(std::string what, std::chrono::seconds limit = std::chrono::seconds(120))
      : what_(std::move(what)), thread_([this, limit] { watch(limit); }) {
    std::unique_lock lock(mutex_);
    done_changed_.wait(lock, [this] { return watching_; });
  }
  ~Watchdog() {
    {
      std::lock_guard lock(mutex_);
      done_ = true;
    }
    done_changed_.notify_all();
    thread_.join();
  }
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

 private:
  void watch(std::chrono::seconds limit) {
    std::unique_lock lock(mutex_);
    watching_ = true;
    done_changed_.notify_all();  // the constructor gets the lock once this thread waits below
    if (done_changed_.wait_for(lock, limit, [this] { return done_; })) return;
    std::fprintf(stderr, "watchdog: '%s' did not finish within %lld s; every thread's stack follows, then abort\n",
                 what_.c_str(), static_cast<long long>(limit.count()));
    std::fflush(stderr);
    print_stacks();
    std::abort();
  }

  // Where each thread waits, from gdb (scripts/setup installs it): a hang seen once in CI is found
  // from its log, not guessed at. The abort's own trace shows only this thread.
  static void print_stacks() {
    const std::string command = "command -v gdb >/dev/null && timeout 60 gdb -p " + std::to_string(::getpid()) +
                                " -batch -nx -ex 'thread apply all bt' 1>&2 </dev/null";
    if (std::system(command.c_str()) != 0) std::fprintf(stderr, "watchdog: no stacks (gdb missing or refused)\n");
    std::fflush(stderr);
  }

  std::string what_;
  std::mutex mutex_;
  std::condition_variable done_changed_;
  bool done_ = false;
  bool watching_ = false;
  std::thread thread_;
};

}  // namespace annal::test
