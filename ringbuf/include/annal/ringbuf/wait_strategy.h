// Wait strategies: how a thread waits for a condition another thread will make true. Consumers
// wait for published events; producers wait for free slots. Every strategy has the same two calls:
//
//   bool wait_until(ready, deadline)   returns true once ready() is true, false at the deadline
//   void signal_all_when_blocking()    called after every change a waiter may be waiting for
//
// Choosing one (this machine has 2 cores; spinning threads there starve each other):
//   BusySpinWaitStrategy   lowest latency, burns a core per waiter; only with a core per thread.
//   YieldingWaitStrategy   spins briefly, then yields the core; good when threads <= cores.
//   SleepingWaitStrategy   spin, yield, then sleep with exponential back-off; low CPU when idle.
//   BlockingWaitStrategy   brief spin and yield, then sleeps in the kernel until signalled; the
//                          default.
#pragma once

#include <algorithm>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <string_view>
#include <thread>

#include "annal/ringbuf/detail/futex.h"

namespace annal::ringbuf {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;
inline constexpr Deadline kNoDeadline = Deadline::max();

// A deadline `timeout` from now; saturates instead of overflowing. A negative timeout is now.
[[nodiscard]] inline Deadline deadline_after(Clock::duration timeout) noexcept {
  const Deadline now = Clock::now();
  if (timeout <= Clock::duration::zero()) return now;
  return timeout >= kNoDeadline - now ? kNoDeadline : now + timeout;
}

template <class W>
concept WaitStrategy = requires(W& strategy, bool (*ready)(), Deadline deadline) {
  { strategy.wait_until(ready, deadline) } -> std::same_as<bool>;
  { strategy.signal_all_when_blocking() } noexcept;
  { W::kName } -> std::convertible_to<std::string_view>;
};

namespace detail {

// Tells the core this is a spin loop: saves power and frees the sibling hyper-thread.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

[[nodiscard]] inline bool expired(Deadline deadline) noexcept {
  return deadline != kNoDeadline && Clock::now() >= deadline;
}

}  // namespace detail

class BusySpinWaitStrategy {
 public:
  static constexpr std::string_view kName = "busy_spin";

  template <class Ready>
  bool wait_until(Ready&& ready, Deadline deadline) noexcept {
    for (std::uint32_t spins = 1;; ++spins) {
      if (ready()) return true;
      // Reading the clock costs about as much as 20 pauses; look at it now and then.
      if (spins % kSpinsPerClockRead == 0 && detail::expired(deadline)) return ready();
      detail::cpu_relax();
    }
  }
  void signal_all_when_blocking() noexcept {}

 private:
  static constexpr std::uint32_t kSpinsPerClockRead = 256;
};

class YieldingWaitStrategy {
 public:
  static constexpr std::string_view kName = "yielding";

  template <class Ready>
  bool wait_until(Ready&& ready, Deadline deadline) noexcept {
    for (std::uint32_t spins = 0;; ++spins) {
      if (ready()) return true;
      if (spins < kSpinTries) {
        detail::cpu_relax();
        continue;
      }
      if (detail::expired(deadline)) return ready();
      std::this_thread::yield();
    }
  }
  void signal_all_when_blocking() noexcept {}

 private:
  static constexpr std::uint32_t kSpinTries = 100;
};

class SleepingWaitStrategy {
 public:
  static constexpr std::string_view kName = "sleeping";

  // Sleeps start at 1 us and double up to `sleep_max`, which bounds the wake-up latency an idle
  // consumer adds.
  explicit SleepingWaitStrategy(
      std::chrono::nanoseconds sleep_max = std::chrono::microseconds(100)) noexcept
      : sleep_max_(sleep_max) {}

  template <class Ready>
  bool wait_until(Ready&& ready, Deadline deadline) noexcept {
    std::chrono::nanoseconds sleep = std::chrono::microseconds(1);
    for (std::uint32_t tries = 0;; ++tries) {
      if (ready()) return true;
      if (tries < kSpinTries) {
        detail::cpu_relax();
        continue;
      }
      if (detail::expired(deadline)) return ready();
      if (tries < kSpinTries + kYieldTries) {
        std::this_thread::yield();
        continue;
      }
      const auto until = std::min<Deadline>(deadline, Clock::now() + sleep);
      std::this_thread::sleep_until(until);
      sleep = std::min(sleep * 2, sleep_max_);
    }
  }
  void signal_all_when_blocking() noexcept {}

 private:
  static constexpr std::uint32_t kSpinTries = 100;
  static constexpr std::uint32_t kYieldTries = 100;
  std::chrono::nanoseconds sleep_max_;
};

// Spins briefly, yields a few times, then sleeps on a futex until signalled. A signaller pays one
// fence and one load when nobody sleeps, and a system call only when someone does.
//
// Why no wake-up is lost. A waiter reads epoch_, raises sleepers_, fences, and re-checks ready()
// before sleeping on epoch_. A signaller has already stored the change ready() reads (a release
// store of a sequence), then fences and reads sleepers_. The two seq_cst fences fall one way or the
// other: if the waiter's comes first, the signaller sees sleepers_ raised and wakes everyone; if
// the signaller's comes first, the waiter's re-check sees the change and it does not sleep.
// A signaller that lowers sleepers_ always bumps epoch_ and then wakes: a waiter that raised the
// flag before it was lowered either finds epoch_ changed (the kernel refuses to sleep on a value
// that no longer holds) or is already asleep and is woken. Lowering the flag means a burst of
// signals costs one system call, not one each, until some waiter goes back to sleep.
class alignas(128) BlockingWaitStrategy {
 public:
  static constexpr std::string_view kName = "blocking";

  // `spin_tries` polls, then `yield_tries` polls each after giving up the core, then sleep. The
  // spin catches an event that arrives within a microsecond without a system call on either side;
  // the yields let the thread that will make progress run when threads outnumber cores.
  explicit BlockingWaitStrategy(std::uint32_t spin_tries = 64,
                                std::uint32_t yield_tries = 4) noexcept
      : spin_tries_(spin_tries), yield_tries_(yield_tries) {}
  BlockingWaitStrategy(const BlockingWaitStrategy& other) noexcept
      : spin_tries_(other.spin_tries_), yield_tries_(other.yield_tries_) {}

  template <class Ready>
  bool wait_until(Ready&& ready, Deadline deadline) noexcept {
    for (std::uint32_t spins = 0; spins < spin_tries_; ++spins) {
      if (ready()) return true;
      detail::cpu_relax();
    }
    for (std::uint32_t yields = 0; yields < yield_tries_; ++yields) {
      if (ready()) return true;
      std::this_thread::yield();
    }
    for (;;) {
      const std::uint32_t epoch = epoch_.load(std::memory_order_acquire);
      sleepers_.store(true, std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_seq_cst);
      if (ready()) return true;
      if (detail::expired(deadline)) return ready();
      detail::futex_wait(epoch_, epoch, deadline);
    }
  }

  void signal_all_when_blocking() noexcept {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (!sleepers_.load(std::memory_order_relaxed)) return;
    if (!sleepers_.exchange(false, std::memory_order_acq_rel)) return;
    epoch_.fetch_add(1, std::memory_order_release);
    detail::futex_wake_all(epoch_);
  }

 private:
  std::atomic<std::uint32_t> epoch_{0};
  std::atomic<bool> sleepers_{false};
  std::uint32_t spin_tries_;
  std::uint32_t yield_tries_;
};

static_assert(WaitStrategy<BusySpinWaitStrategy>);
static_assert(WaitStrategy<YieldingWaitStrategy>);
static_assert(WaitStrategy<SleepingWaitStrategy>);
static_assert(WaitStrategy<BlockingWaitStrategy>);

}  // namespace annal::ringbuf
