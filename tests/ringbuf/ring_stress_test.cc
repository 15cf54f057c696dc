// P producers x C consumers through small rings, so that every slot is reused thousands of times
// and producers are constantly back-pressured. Each consumer checks that it sees every item exactly
// once, each producer's items in that producer's order, and that no slot changed under it before it
// released it. Runs under ThreadSanitizer in scripts/test. ANNAL_STRESS_ITEMS sets the items per
// producer (default 100,000: each slot of the 64 is still reused over 1,500 times per producer)
// for longer runs. Each hand-off may need a context switch, so on two cores that other work keeps
// busy, a million took up to 160 s a test under ASan.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "annal/ringbuf/ringbuf.h"
#include "watchdog.h"

namespace annal::ringbuf {
namespace {

using namespace std::chrono_literals;

constexpr std::int64_t kCapacity = 64;

std::int64_t items_per_producer() {
  const char* configured = std::getenv("ANNAL_STRESS_ITEMS");
  return configured != nullptr ? std::atoll(configured) : 100'000;
}

struct Item {
  std::int64_t sequence = -1;
  std::uint32_t producer = 0;
  std::int64_t counter = 0;
  std::uint64_t check = 0;
};

std::uint64_t check_of(std::uint32_t producer, std::int64_t counter) {
  return (static_cast<std::uint64_t>(counter) * 0x9E3779B97F4A7C15ULL) ^ (producer + 1);
}

// Verifies what one consumer sees. Also stamps each sequence into `seen_` so a downstream consumer
// can check the graph's ordering (it may only see what its upstreams have finished). A consumer
// that joins late and leaves again (`gaps_allowed`) must still see each producer's items in order.
template <class Ring>
class Checker {
 public:
  Checker(Ring& ring, std::uint32_t producers, std::vector<const Checker*> upstream = {},
          bool gaps_allowed = false)
      : ring_(ring), last_counter_(producers, -1), upstream_(std::move(upstream)),
        seen_(static_cast<std::size_t>(kCapacity), -1), gaps_allowed_(gaps_allowed) {}

  void on_event(const Item& item, std::int64_t sequence, bool end_of_batch) {
    if (batch_start_ < 0) batch_start_ = sequence;
    if (item.sequence != sequence) fail("slot holds sequence " + std::to_string(item.sequence), sequence);
    if (item.check != check_of(item.producer, item.counter)) fail("torn item", sequence);
    std::int64_t& last = last_counter_[item.producer];
    if (gaps_allowed_ ? item.counter <= last : item.counter != last + 1) {
      fail("producer " + std::to_string(item.producer) + " item " + std::to_string(item.counter) +
               " after " + std::to_string(last), sequence);
    }
    last = item.counter;
    for (const Checker* up : upstream_) {
      if (up->seen_[slot(sequence)] != sequence) fail("seen before its upstream finished", sequence);
    }
    seen_[slot(sequence)] = sequence;
    ++handled_;
    if (!end_of_batch) return;
    // Producers must not have reused any slot of this batch while we held it.
    for (std::int64_t s = batch_start_; s <= sequence; ++s) {
      if (ring_[s].sequence != s) fail("slot overwritten before release", s);
    }
    batch_start_ = -1;
  }

  [[nodiscard]] std::int64_t handled() const { return handled_; }
  [[nodiscard]] const std::vector<std::int64_t>& last_counter() const { return last_counter_; }
  [[nodiscard]] const std::string& first_error() const { return first_error_; }

 private:
  static std::size_t slot(std::int64_t sequence) {
    return static_cast<std::size_t>(sequence & (kCapacity - 1));
  }
  void fail(const std::string& what, std::int64_t sequence) {
    if (first_error_.empty()) first_error_ = what + " at sequence " + std::to_string(sequence);
  }

  Ring& ring_;
  std::vector<std::int64_t> last_counter_;
  std::vector<const Checker*> upstream_;
  std::vector<std::int64_t> seen_;
  bool gaps_allowed_;
  std::int64_t batch_start_ = -1;
  std::int64_t handled_ = 0;
  std::string first_error_;
};

// Producer p publishes `items` items, claiming 1 to 4 slots at a time.
template <class Ring>
void produce(Ring& ring, std::uint32_t producer, std::int64_t items) {
  std::int64_t counter = 0;
  while (counter < items) {
    const std::int64_t batch = std::min<std::int64_t>(1 + (counter + producer) % 4, items - counter);
    const auto hi = ring.next(batch, deadline_after(120s));
    ASSERT_TRUE(hi.has_value()) << "producer " << producer << " could not claim for 120 s";
    const std::int64_t lo = *hi - batch + 1;
    for (std::int64_t s = lo; s <= *hi; ++s, ++counter) {
      Item& item = ring[s];
      item.sequence = s;
      item.producer = producer;
      item.counter = counter;
      item.check = check_of(producer, counter);
    }
    ring.publish(lo, *hi);
  }
}

// Consumer graph: `parallel` consumers on the cursor; with `diamond`, one more after all of them.
template <ProducerType P, class W>
void run_graph(std::uint32_t producers, std::uint32_t parallel, bool diamond) {
  using Ring = RingBuffer<Item, P, W>;
  using Processor = BatchEventProcessor<Ring, Checker<Ring>>;
  const std::int64_t items = items_per_producer();
  const std::int64_t total = items * producers;
  test::Watchdog watchdog("ring stress", std::chrono::seconds(240));

  Ring ring(kCapacity);
  std::vector<std::unique_ptr<Checker<Ring>>> checkers;
  std::vector<std::unique_ptr<Processor>> processors;
  std::vector<const Checker<Ring>*> upstream_checkers;
  for (std::uint32_t c = 0; c < parallel; ++c) {
    checkers.push_back(std::make_unique<Checker<Ring>>(ring, producers));
    processors.push_back(std::make_unique<Processor>(ring, *checkers.back()));
    upstream_checkers.push_back(checkers.back().get());
  }
  if (diamond) {
    checkers.push_back(std::make_unique<Checker<Ring>>(ring, producers, upstream_checkers));
    std::vector<const Sequence*> upstream;
    for (auto& processor : processors) upstream.push_back(&processor->sequence());
    ASSERT_LE(upstream.size(), 2U);
    processors.push_back(upstream.size() == 1
        ? std::make_unique<Processor>(ring, *checkers.back(), std::initializer_list{upstream[0]})
        : std::make_unique<Processor>(ring, *checkers.back(),
                                      std::initializer_list{upstream[0], upstream[1]}));
    ASSERT_TRUE(ring.add_gating_sequence(processors.back()->sequence()));
  } else {
    for (auto& processor : processors) ASSERT_TRUE(ring.add_gating_sequence(processor->sequence()));
  }

  std::vector<std::thread> threads;
  for (auto& processor : processors) threads.emplace_back([&processor] { processor->run(); });
  std::vector<std::thread> producer_threads;
  for (std::uint32_t p = 0; p < producers; ++p) {
    producer_threads.emplace_back([&ring, p, items] { produce(ring, p, items); });
  }
  for (auto& thread : producer_threads) thread.join();
  for (auto& processor : processors) {
    while (processor->sequence().get() < total - 1) std::this_thread::sleep_for(200us);
    processor->halt();
  }
  for (auto& thread : threads) thread.join();

  for (std::size_t c = 0; c < checkers.size(); ++c) {
    SCOPED_TRACE("consumer " + std::to_string(c));
    EXPECT_EQ(checkers[c]->first_error(), "");
    EXPECT_EQ(checkers[c]->handled(), total);
    for (std::uint32_t p = 0; p < producers; ++p) EXPECT_EQ(checkers[c]->last_counter()[p], items - 1);
  }
}

constexpr auto kSingle = ProducerType::single;
constexpr auto kMulti = ProducerType::multi;

TEST(RingStress, OneProducerOneConsumerBlocking) {
  run_graph<kSingle, BlockingWaitStrategy>(1, 1, false);
}
TEST(RingStress, OneProducerOneConsumerYielding) {
  run_graph<kSingle, YieldingWaitStrategy>(1, 1, false);
}
TEST(RingStress, OneProducerOneConsumerSleeping) {
  run_graph<kSingle, SleepingWaitStrategy>(1, 1, false);
}
TEST(RingStress, OneProducerOneConsumerBusySpin) {
  // Two threads on two cores: the only configuration where spinning is fair here.
  run_graph<kSingle, BusySpinWaitStrategy>(1, 1, false);
}
TEST(RingStress, TwoProducersOneConsumerBlocking) {
  run_graph<kMulti, BlockingWaitStrategy>(2, 1, false);
}
TEST(RingStress, TwoProducersOneConsumerYielding) {
  run_graph<kMulti, YieldingWaitStrategy>(2, 1, false);
}
TEST(RingStress, ThreeProducersTwoConsumersBlocking) {
  run_graph<kMulti, BlockingWaitStrategy>(3, 2, false);
}
TEST(RingStress, ThreeProducersTwoConsumersSleeping) {
  run_graph<kMulti, SleepingWaitStrategy>(3, 2, false);
}
TEST(RingStress, DiamondOneProducerBlocking) {
  run_graph<kSingle, BlockingWaitStrategy>(1, 2, true);
}
TEST(RingStress, DiamondTwoProducersBlocking) {
  run_graph<kMulti, BlockingWaitStrategy>(2, 2, true);
}

// A consumer joins a running multi-producer ring, reads a while, leaves, and joins again, many
// times, while a permanent consumer keeps gating the producers. What it reads while joined must be
// intact slots of the current lap, in each producer's order.
template <class W>
void join_and_leave_while_producing() {
  using Ring = RingBuffer<Item, kMulti, W>;
  using Processor = BatchEventProcessor<Ring, Checker<Ring>>;
  constexpr std::uint32_t kProducers = 2;
  const std::int64_t items = items_per_producer() / 4;
  test::Watchdog watchdog("join and leave under load", std::chrono::seconds(240));

  Ring ring(kCapacity);
  Checker<Ring> steady_checker(ring, kProducers);
  Processor steady(ring, steady_checker);
  ASSERT_TRUE(ring.add_gating_sequence(steady.sequence()));
  Checker<Ring> joiner_checker(ring, kProducers, {}, /*gaps_allowed=*/true);
  Processor joiner(ring, joiner_checker, {}, /*batch_max=*/16);

  std::thread steady_thread([&] { steady.run(); });
  std::atomic<std::uint32_t> producing{kProducers};
  std::vector<std::thread> producers;
  for (std::uint32_t p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      produce(ring, p, items);
      producing.fetch_sub(1);
    });
  }
  std::int64_t joins = 0;
  while (producing.load() > 0) {
    ASSERT_TRUE(ring.add_gating_sequence(joiner.sequence()));
    ++joins;
    for (int batch = 0; batch < 8 && producing.load() > 0; ++batch) {
      (void)joiner.poll(deadline_after(10ms));
    }
    ASSERT_TRUE(ring.remove_gating_sequence(joiner.sequence()));
  }
  for (auto& thread : producers) thread.join();
  while (steady.sequence().get() < items * kProducers - 1) std::this_thread::sleep_for(200us);
  steady.halt();
  steady_thread.join();

  EXPECT_GT(joins, 0);
  EXPECT_EQ(joiner_checker.first_error(), "");
  EXPECT_EQ(steady_checker.first_error(), "");
  EXPECT_EQ(steady_checker.handled(), items * kProducers);
}

TEST(RingStress, ConsumerJoinsAndLeavesWhileProducersRunBlocking) {
  join_and_leave_while_producing<BlockingWaitStrategy>();
}
TEST(RingStress, ConsumerJoinsAndLeavesWhileProducersRunYielding) {
  join_and_leave_while_producing<YieldingWaitStrategy>();
}

// Every consumer of a diamond blocked on an empty ring, then shut down: all of them must wake.
TEST(RingStress, ShutdownWakesEveryBlockedConsumer) {
  using Ring = RingBuffer<Item, kMulti, BlockingWaitStrategy>;
  struct Ignore {
    void on_event(const Item&, std::int64_t, bool) {}
  };
  test::Watchdog watchdog("shutdown of blocked consumers", std::chrono::seconds(60));
  for (int round = 0; round < 50; ++round) {
    Ring ring(kCapacity, BlockingWaitStrategy(/*spin_tries=*/0, /*yield_tries=*/0));
    Ignore handler;
    BatchEventProcessor<Ring, Ignore> a(ring, handler), b(ring, handler);
    BatchEventProcessor<Ring, Ignore> c(ring, handler, {&a.sequence(), &b.sequence()});
    ASSERT_TRUE(ring.add_gating_sequence(c.sequence()));
    std::thread ta([&] { a.run(); }), tb([&] { b.run(); }), tc([&] { c.run(); });
    c.halt();
    b.halt();
    a.halt();
    ta.join();
    tb.join();
    tc.join();
  }
}

}  // namespace
}  // namespace annal::ringbuf
