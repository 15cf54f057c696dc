#include "annal/engine/subscription.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <thread>

#include "engine_fixture.h"
#include "watchdog.h"

namespace annal::engine::test {
namespace {

using namespace std::chrono_literals;

// What a subscriber saw: per stream, the versions in order, and every sequence once.
struct Seen {
  std::map<std::uint64_t, std::uint64_t> next_version;  // stream -> version expected next
  std::uint64_t last_sequence = 0;
  std::size_t events = 0;

  void add(const EventView& event) {
    ASSERT_GT(event.header.sequence, last_sequence) << "a duplicate or a step back";
    last_sequence = event.header.sequence;
    auto& expected = next_version[event.header.stream_id];
    ASSERT_EQ(event.header.version, expected) << "a gap in stream " << event.header.stream_id;
    ++expected;
    ++events;
    ASSERT_EQ(text_of(event.payload), std::string(event.header.stream_name) + "/" + std::to_string(event.header.version));
  }
};

class SubscriptionTest : public EngineTest {
 protected:
  // Appends `count` events round robin over `streams` streams, each payload "<stream>/<version>".
  void append_round_robin(int streams, int count, const std::string& prefix = "s") {
    for (int i = 0; i < count; ++i) {
      const std::string stream = prefix + std::to_string(i % streams);
      const std::uint64_t version = engine_->stream_version(stream).has_value() ? *engine_->stream_version(stream) + 1 : 0;
      append_text(stream, stream + "/" + std::to_string(version));
    }
  }

  // Reads `count` events from `subscription` into `seen`.
  static void read(Subscription& subscription, Seen& seen, std::size_t count) {
    for (std::size_t i = 0; i < count; ++i) {
      const auto event = subscription.next(soon());
      ASSERT_TRUE(event.ok()) << event.status().to_string() << " after " << seen.events << " events";
      seen.add(event.value());
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
};

TEST_F(SubscriptionTest, StartsInThePastAndCrossesIntoLiveEventsWithNoGapOrDuplicate) {
  annal::test::Watchdog watchdog("subscription crossing into live");
  append_round_robin(5, 400);
  auto subscription = engine_->subscribe(1);
  ASSERT_TRUE(subscription.ok()) << subscription.status().to_string();
  constexpr int kLive = 2000;
  std::thread writer([&] { append_round_robin(7, kLive, "w"); });
  Seen seen;
  read(*subscription.value(), seen, 400 + kLive);
  writer.join();
  EXPECT_EQ(seen.events, std::size_t{400 + kLive});
  // Caught up: the next wait times out, loses nothing, and leaves it reading the ring.
  const auto idle = subscription.value()->next(Engine::Clock::now() + 20ms);
  EXPECT_EQ(idle.code(), ErrorCode::timed_out);
  EXPECT_TRUE(subscription.value()->live());
  append_text("late", "late/0");
  read(*subscription.value(), seen, 1);
}

TEST_F(SubscriptionTest, EveryWaitStrategyCrossesIntoLiveEvents) {
  annal::test::Watchdog watchdog("wait strategies");
  for (const WaitStrategy strategy : {WaitStrategy::blocking, WaitStrategy::sleeping, WaitStrategy::yielding}) {
    SCOPED_TRACE("wait strategy " + std::to_string(static_cast<int>(strategy)));
    Options options = small_options();
    options.wait_strategy = strategy;
    open(options);
    const std::string prefix = "w" + std::to_string(static_cast<int>(strategy)) + "-";
    const std::uint64_t from = engine_->last_sequence() + 1;
    append_round_robin(3, 50, prefix);
    auto subscription = engine_->subscribe(from);
    ASSERT_TRUE(subscription.ok());
    std::thread writer([&] { append_round_robin(3, 300, prefix); });
    Seen seen;
    read(*subscription.value(), seen, 350);
    writer.join();
    // It may have kept up through the journal alone; once it has waited, it reads the ring.
    EXPECT_EQ(subscription.value()->next(Engine::Clock::now() + 20ms).code(), ErrorCode::timed_out);
    EXPECT_TRUE(subscription.value()->live());
    subscription.value().reset();
    if (HasFatalFailure()) return;
  }
}

TEST_F(SubscriptionTest, ManySubscribersUnderConcurrentAppendsEachSeeEverythingOnce) {
  annal::test::Watchdog watchdog("many subscribers");
  Options options = small_options();
  options.live_subscriptions_max = 2;  // the others tail the journal
  open(options);
  append_round_robin(3, 100);
  constexpr int kLive = 1500, kSubscribers = 4;
  std::atomic<bool> failed{false};
  std::vector<std::thread> readers;
  std::vector<Seen> seen(kSubscribers);
  for (int r = 0; r < kSubscribers; ++r) {
    readers.emplace_back([&, r] {
      // Each starts somewhere else in the past; the checks run on what it sees from there.
      auto subscription = engine_->subscribe(1);
      if (!subscription.ok()) return void(failed = true);
      read(*subscription.value(), seen[static_cast<std::size_t>(r)], 100 + kLive);
      if (::testing::Test::HasFailure()) failed = true;
    });
  }
  std::thread writers[2] = {std::thread([&] { append_round_robin(4, kLive / 2, "x"); }),
                            std::thread([&] { append_round_robin(4, kLive / 2, "y"); })};
  for (auto& writer : writers) writer.join();
  for (auto& reader : readers) reader.join();
  EXPECT_FALSE(failed);
  for (const Seen& s : seen) EXPECT_EQ(s.events, std::size_t{100 + kLive});
}

TEST_F(SubscriptionTest, ResumesFromItsCheckpointWithoutGapOrDuplicate) {
  annal::test::Watchdog watchdog("resume from checkpoint");
  append_round_robin(3, 300);
  Seen seen;
  std::uint64_t checkpoint = 1;
  for (int part = 0; part < 3; ++part) {
    auto subscription = engine_->subscribe(checkpoint);
    ASSERT_TRUE(subscription.ok());
    read(*subscription.value(), seen, 100);
    checkpoint = subscription.value()->position();
    append_round_robin(3, 50, "more" + std::to_string(part));
    read(*subscription.value(), seen, 10);  // some live, then leave mid-way
    checkpoint = subscription.value()->position();
  }
  // And across a reopen.
  ASSERT_TRUE(engine_->close().ok());
  open();
  auto subscription = engine_->subscribe(checkpoint);
  ASSERT_TRUE(subscription.ok());
  read(*subscription.value(), seen, 300 + 150 - 330);
  EXPECT_EQ(subscription.value()->next(Engine::Clock::now() + 20ms).code(), ErrorCode::timed_out);
}

TEST_F(SubscriptionTest, AnUnreadLiveSubscriptionHoldsAppendsBackOnlyUntilItReads) {
  annal::test::Watchdog watchdog("back-pressure");
  Options options = small_options();
  options.ring_capacity = 1u << 11;  // room for one whole append of events_per_append_max
  options.events_per_append_max = 16;
  open(options);
  auto subscription = engine_->subscribe(1);
  ASSERT_TRUE(subscription.ok());
  append_text("s0", "s0/0");
  Seen seen;
  read(*subscription.value(), seen, 1);
  ASSERT_EQ(subscription.value()->next(Engine::Clock::now() + 20ms).code(), ErrorCode::timed_out);
  ASSERT_TRUE(subscription.value()->live());  // caught up and waited: it has a seat
  constexpr int kEvents = 5000;  // more than the ring holds
  std::thread writer([&] { append_round_robin(1, kEvents - 1); });
  read(*subscription.value(), seen, kEvents - 1);
  writer.join();
  EXPECT_EQ(seen.events, std::size_t{kEvents});
}

TEST_F(SubscriptionTest, ACheckpointPastTheEndOfTheLogIsRefused) {
  append_text("s", "s/0");
  const std::uint64_t end = engine_->last_sequence();
  EXPECT_TRUE(engine_->subscribe(end + 1).ok());  // the next event's: waits for it
  EXPECT_EQ(engine_->subscribe(end + 2).code(), ErrorCode::invalid_argument);
  EXPECT_EQ(engine_->subscribe(UINT64_MAX).code(), ErrorCode::invalid_argument);
}

TEST_F(SubscriptionTest, TwoThreadsClosingAtOnceBothSeeItClosed) {
  annal::test::Watchdog watchdog("concurrent close");
  append_text("s", "s/0");
  Status first, second;
  std::thread other([&] { first = engine_->close(); });
  second = engine_->close();
  other.join();
  EXPECT_TRUE(first.ok());
  EXPECT_TRUE(second.ok());
}

TEST_F(SubscriptionTest, ClosingTheEngineEndsAWaitingSubscription) {
  annal::test::Watchdog watchdog("close during wait");
  auto subscription = engine_->subscribe(1);
  ASSERT_TRUE(subscription.ok());
  std::thread closer([&] {
    std::this_thread::sleep_for(50ms);
    (void)engine_->close();
  });
  const auto event = subscription.value()->next(soon());
  closer.join();
  EXPECT_EQ(event.code(), ErrorCode::failed);
}

// wake() ends a wait long before its deadline (the watchdog is shorter than the deadline), and a
// wake-up before the wait is not lost; the subscription goes on as before.
TEST_F(SubscriptionTest, WakeEndsAWaitEarlyAndLosesNothing) {
  annal::test::Watchdog watchdog("wake", 60s);
  const Receipt first = append_text("s", "a");
  auto subscription = engine_->subscribe(first.last_sequence);
  ASSERT_TRUE(subscription.ok());
  ASSERT_TRUE(subscription.value()->next(soon()).ok());
  // Caught up, it takes a seat in the ring (had "a" been durable before it subscribed, it read "a"
  // from the journal and has not looked further yet).
  EXPECT_EQ(subscription.value()->next(Engine::Clock::now() + 20ms).code(), ErrorCode::timed_out);
  ASSERT_TRUE(subscription.value()->live());
  for (int round = 0; round < 3; ++round) {
    std::thread waker([&] {
      std::this_thread::sleep_for(20ms);
      subscription.value()->wake();
    });
    const auto woken = subscription.value()->next(Engine::Clock::now() + 600s);
    waker.join();
    EXPECT_EQ(woken.code(), ErrorCode::timed_out);
  }
  subscription.value()->wake();
  EXPECT_EQ(subscription.value()->next(Engine::Clock::now() + 600s).code(), ErrorCode::timed_out);
  const Receipt second = append_text("s", "b");
  const auto event = subscription.value()->next(soon());
  ASSERT_TRUE(event.ok()) << event.status().to_string();
  EXPECT_EQ(event.value().header.sequence, second.last_sequence);
}

}  // namespace
}  // namespace annal::engine::test
