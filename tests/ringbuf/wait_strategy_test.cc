#include "annal/ringbuf/wait_strategy.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "watchdog.h"

namespace annal::ringbuf {
namespace {

using namespace std::chrono_literals;

template <class W>
class WaitStrategyTest : public ::testing::Test {
 protected:
  W strategy_;
};

using Strategies = ::testing::Types<BusySpinWaitStrategy, YieldingWaitStrategy,
                                    SleepingWaitStrategy, BlockingWaitStrategy>;
struct StrategyName {
  template <class W>
  static std::string GetName(int) {
    return std::string(W::kName);
  }
};
TYPED_TEST_SUITE(WaitStrategyTest, Strategies, StrategyName);

TYPED_TEST(WaitStrategyTest, ReturnsAtOnceWhenAlreadyReady) {
  int polls = 0;
  EXPECT_TRUE(this->strategy_.wait_until([&] { return ++polls > 0; }, kNoDeadline));
  EXPECT_EQ(polls, 1);
}

TYPED_TEST(WaitStrategyTest, GivesUpAtTheDeadline) {
  test::Watchdog watchdog("wait with a 20 ms deadline");
  EXPECT_FALSE(this->strategy_.wait_until([] { return false; }, deadline_after(20ms)));
}

TYPED_TEST(WaitStrategyTest, ReportsReadyIfTheConditionTurnsTrueAtTheDeadline) {
  // A condition that becomes true on the last poll before giving up still counts.
  const Deadline deadline = deadline_after(5ms);
  EXPECT_TRUE(this->strategy_.wait_until([&] { return Clock::now() >= deadline; }, deadline));
}

// Two threads hand a token back and forth through one strategy, each waiting for its turn. A lost
// wake-up would leave both asleep; the watchdog turns that into a failure.
TYPED_TEST(WaitStrategyTest, PingPongLosesNoWakeUp) {
  constexpr int kRounds = 2000;
  test::Watchdog watchdog("ping-pong through a wait strategy");
  std::atomic<int> turn{0};
  auto play = [&](int parity) {
    for (int i = parity; i < kRounds; i += 2) {
      ASSERT_TRUE(this->strategy_.wait_until(
          [&] { return turn.load(std::memory_order_acquire) == i; }, deadline_after(60s)));
      turn.store(i + 1, std::memory_order_release);
      this->strategy_.signal_all_when_blocking();
    }
  };
  std::thread other(play, 1);
  play(0);
  other.join();
  EXPECT_EQ(turn.load(), kRounds);
}

TEST(WaitStrategy, DeadlineAfterSaturatesInsteadOfOverflowing) {
  EXPECT_EQ(deadline_after(Clock::duration::max()), kNoDeadline);
  EXPECT_LT(deadline_after(1s), kNoDeadline);
}

TEST(BlockingWaitStrategy, WakesASleeperWithoutSpinning) {
  // With no spin budget the waiter goes straight to the futex, so only a signal can wake it.
  BlockingWaitStrategy strategy(/*spin_tries=*/0, /*yield_tries=*/0);
  test::Watchdog watchdog("blocked waiter woken by a signal");
  std::atomic<bool> go{false};
  std::thread waiter([&] {
    EXPECT_TRUE(strategy.wait_until([&] { return go.load(std::memory_order_acquire); },
                                    deadline_after(60s)));
  });
  go.store(true, std::memory_order_release);
  strategy.signal_all_when_blocking();
  waiter.join();
}

}  // namespace
}  // namespace annal::ringbuf
