#include "annal/ringbuf/ring_buffer.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>

#include "watchdog.h"

namespace annal::ringbuf {
namespace {

using namespace std::chrono_literals;

template <ProducerType P>
using Ring = RingBuffer<std::int64_t, P, BlockingWaitStrategy>;

template <class R>
class RingBufferTest : public ::testing::Test {};

using Rings = ::testing::Types<Ring<ProducerType::single>, Ring<ProducerType::multi>>;
struct ProducerName {
  template <class R>
  static std::string GetName(int) {
    return R::Sequencer::kProducerType == ProducerType::single ? "SingleProducer" : "MultiProducer";
  }
};
TYPED_TEST_SUITE(RingBufferTest, Rings, ProducerName);

TYPED_TEST(RingBufferTest, RejectsACapacityThatIsNotAPowerOfTwo) {
  for (const std::int64_t bad : {std::int64_t{0}, std::int64_t{-4}, std::int64_t{3},
                                 std::int64_t{1000}, kCapacityMax * 2}) {
    EXPECT_THROW(TypeParam ring(bad), std::invalid_argument) << bad;
  }
  try {
    TypeParam ring(12);
  } catch (const std::invalid_argument& error) {
    EXPECT_NE(std::string(error.what()).find("power of two"), std::string::npos);
  }
}

TYPED_TEST(RingBufferTest, ClaimsAreContiguousFromZero) {
  TypeParam ring(16);
  EXPECT_EQ(ring.next(), 0);
  EXPECT_EQ(ring.next(), 1);
  EXPECT_EQ(ring.next(5), 6);
  EXPECT_EQ(ring.try_next(3), 9);
}

TYPED_TEST(RingBufferTest, TryNextReportsAFullRingAndRecoversWhenTheConsumerMoves) {
  TypeParam ring(8);
  Sequence consumer;
  ASSERT_TRUE(ring.add_gating_sequence(consumer));
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(ring.try_next().has_value());
  EXPECT_EQ(ring.remaining_capacity(), 0);
  EXPECT_FALSE(ring.try_next().has_value());
  EXPECT_FALSE(ring.try_next(1).has_value());
  consumer.set(1);  // slots of sequences 0 and 1 are free again
  EXPECT_EQ(ring.remaining_capacity(), 2);
  EXPECT_FALSE(ring.try_next(3).has_value());
  EXPECT_EQ(ring.try_next(2), 9);
}

TYPED_TEST(RingBufferTest, NextGivesUpAtTheDeadlineWithoutClaiming) {
  TypeParam ring(4);
  Sequence consumer;
  ASSERT_TRUE(ring.add_gating_sequence(consumer));
  ASSERT_EQ(ring.next(4), 3);
  EXPECT_FALSE(ring.next(1, deadline_after(10ms)).has_value());
  consumer.set(0);
  EXPECT_EQ(ring.next(1, deadline_after(10ms)), 4);
}

TYPED_TEST(RingBufferTest, AlertWakesAProducerBlockedOnAFullRing) {
  TypeParam ring(4);
  Sequence consumer;
  ASSERT_TRUE(ring.add_gating_sequence(consumer));
  ASSERT_EQ(ring.next(4), 3);
  test::Watchdog watchdog("producer blocked on a full ring");
  std::thread producer([&] { EXPECT_FALSE(ring.next().has_value()); });
  ring.alert();
  producer.join();
  ring.clear_alert();
  consumer.set(3);
  EXPECT_EQ(ring.next(), 4);
}

TYPED_TEST(RingBufferTest, AlertMakesEveryClaimFailUntilCleared) {
  TypeParam ring(8);
  ring.alert();
  EXPECT_FALSE(ring.try_next().has_value());
  EXPECT_FALSE(ring.next(1, deadline_after(10s)).has_value());
  EXPECT_FALSE(ring.publish_event([](std::int64_t&, std::int64_t) {}));
  ring.clear_alert();
  EXPECT_EQ(ring.try_next(), 0);
}

TYPED_TEST(RingBufferTest, JoiningConsumerWakesAProducerWaitingForSpace) {
  TypeParam ring(4, BlockingWaitStrategy(/*spin_tries=*/0, /*yield_tries=*/0));
  Sequence slow;
  ASSERT_TRUE(ring.add_gating_sequence(slow));
  ASSERT_EQ(ring.next(4), 3);
  ring.publish(0, 3);
  test::Watchdog watchdog("producer waiting for a consumer that is replaced");
  std::thread producer([&] { EXPECT_EQ(ring.next(1, deadline_after(60s)), 4); });
  // A consumer that joins now starts at the cursor (3); once the slow one leaves, only the
  // newcomer gates, and the producer must be woken to see it.
  Sequence newcomer;
  ASSERT_TRUE(ring.add_gating_sequence(newcomer));
  EXPECT_EQ(newcomer.get(), 3);
  EXPECT_TRUE(ring.remove_gating_sequence(slow));
  producer.join();
}

TYPED_TEST(RingBufferTest, RemovingTheOnlyGatingConsumerUnblocksProducers) {
  TypeParam ring(4);
  Sequence consumer;
  ASSERT_TRUE(ring.add_gating_sequence(consumer));
  ASSERT_EQ(ring.next(4), 3);
  EXPECT_FALSE(ring.try_next().has_value());
  EXPECT_TRUE(ring.remove_gating_sequence(consumer));
  EXPECT_EQ(ring.try_next(), 4);
}

TYPED_TEST(RingBufferTest, JoiningConsumerStartsAtTheCursor) {
  TypeParam ring(8);
  for (int i = 0; i < 5; ++i) {
    const auto claimed = ring.next();
    ASSERT_TRUE(claimed.has_value());
    ring.publish(*claimed);
  }
  Sequence late;
  ASSERT_TRUE(ring.add_gating_sequence(late));
  EXPECT_EQ(late.get(), 4);
}

// One thread, capacity 4, 10,000 events: every slot is reused 2,500 times and each read must see
// the value written on the current lap.
TYPED_TEST(RingBufferTest, WrapsAroundManyTimesWithoutLosingOrReorderingEvents) {
  constexpr std::int64_t kEvents = 10'000;
  TypeParam ring(4);
  Sequence consumer;
  ASSERT_TRUE(ring.add_gating_sequence(consumer));
  auto barrier = ring.new_barrier();
  std::int64_t read = 0;
  while (read < kEvents) {
    const std::int64_t batch = 1 + read % 3;  // claims of 1, 2 and 3 slots
    const auto hi = ring.next(batch);
    ASSERT_TRUE(hi.has_value());
    for (std::int64_t s = *hi - batch + 1; s <= *hi; ++s) ring[s] = s * 7;
    ring.publish(*hi - batch + 1, *hi);
    const WaitResult result = barrier.wait_for(read, deadline_after(10s));
    ASSERT_EQ(result.status, WaitStatus::ok);
    ASSERT_EQ(result.available, *hi);
    for (; read <= result.available; ++read) ASSERT_EQ(ring[read], read * 7);
    consumer.set(result.available);
  }
}

TYPED_TEST(RingBufferTest, PublishEventFillsAndPublishesOneSlot) {
  TypeParam ring(8);
  auto barrier = ring.new_barrier();
  ASSERT_TRUE(ring.publish_event([](std::int64_t& entry, std::int64_t s) { entry = 100 + s; }));
  ASSERT_TRUE(ring.try_publish_event([](std::int64_t& entry, std::int64_t s) { entry = 100 + s; }));
  EXPECT_EQ(barrier.readable_up_to(0), 1);
  EXPECT_EQ(ring[0], 100);
  EXPECT_EQ(ring[1], 101);
}

TYPED_TEST(RingBufferTest, PublishEventPublishesEvenWhenFillThrows) {
  TypeParam ring(8);
  auto barrier = ring.new_barrier();
  EXPECT_THROW((void)ring.publish_event([](std::int64_t&, std::int64_t) { throw 1; }), int);
  EXPECT_EQ(barrier.readable_up_to(0), 0);
}

TYPED_TEST(RingBufferTest, BarrierTimesOutWhenNothingIsPublished) {
  TypeParam ring(8);
  auto barrier = ring.new_barrier();
  const WaitResult result = barrier.wait_for(0, deadline_after(10ms));
  EXPECT_EQ(result.status, WaitStatus::timeout);
  EXPECT_EQ(result.available, -1);
}

TYPED_TEST(RingBufferTest, BarrierOnUpstreamConsumersFollowsTheSlowest) {
  TypeParam ring(8);
  const auto hi = ring.next(8);
  ASSERT_TRUE(hi.has_value());
  ring.publish(0, *hi);
  Sequence a(5), b(3);
  auto barrier = ring.new_barrier({&a, &b});
  EXPECT_EQ(barrier.readable_up_to(0), 3);
  const WaitResult result = barrier.wait_for(4, deadline_after(10ms));
  EXPECT_EQ(result.status, WaitStatus::timeout);
  b.set(6);
  EXPECT_EQ(barrier.wait_for(4, deadline_after(10s)).available, 5);
}

TYPED_TEST(RingBufferTest, AlertedBarrierReturnsAlertedUntilCleared) {
  TypeParam ring(8);
  auto barrier = ring.new_barrier();
  barrier.alert();
  EXPECT_EQ(barrier.wait_for(0).status, WaitStatus::alerted);
  barrier.clear_alert();
  EXPECT_EQ(barrier.wait_for(0, deadline_after(1ms)).status, WaitStatus::timeout);
}

// With several producers, a slot claimed earlier may be published later. Consumers must stop at
// the first unpublished slot even though the cursor is past it.
TEST(MultiProducerRing, ReaderStopsAtTheFirstUnpublishedSlot) {
  Ring<ProducerType::multi> ring(8);
  auto barrier = ring.new_barrier();
  const auto first = ring.next();
  const auto second = ring.next(2);
  ASSERT_EQ(first, 0);
  ASSERT_EQ(second, 2);
  ring.publish(1, 2);
  EXPECT_EQ(ring.cursor().get(), 2);
  EXPECT_EQ(barrier.readable_up_to(0), -1);
  EXPECT_EQ(barrier.wait_for(0, deadline_after(10ms)).status, WaitStatus::timeout);
  ring.publish(*first);
  EXPECT_EQ(barrier.readable_up_to(0), 2);
}

// A consumer joining a multi-producer ring starts at the claimed cursor; a consumer downstream of
// it must still not read slots that are claimed but not yet written.
TEST(MultiProducerRing, DownstreamOfAJoinedConsumerWaitsForPublication) {
  Ring<ProducerType::multi> ring(8);
  const auto claimed = ring.next();
  ASSERT_EQ(claimed, 0);
  Sequence joined;
  ASSERT_TRUE(ring.add_gating_sequence(joined));
  EXPECT_EQ(joined.get(), 0);
  auto downstream = ring.new_barrier({&joined});
  EXPECT_EQ(downstream.readable_up_to(0), -1);
  EXPECT_EQ(downstream.wait_for(0, deadline_after(10ms)).status, WaitStatus::timeout);
  ring.publish(*claimed);
  EXPECT_EQ(downstream.readable_up_to(0), 0);
}

TEST(MultiProducerRing, PublishedMarksBelongToTheCurrentLap) {
  Ring<ProducerType::multi> ring(2);
  Sequence consumer;
  ASSERT_TRUE(ring.add_gating_sequence(consumer));
  auto& sequencer = ring.sequencer();
  ASSERT_EQ(ring.next(2), 1);
  ring.publish(0, 1);
  consumer.set(1);
  ASSERT_EQ(ring.next(), 2);  // reuses slot 0 on the second lap
  EXPECT_TRUE(sequencer.is_published(0));
  EXPECT_FALSE(sequencer.is_published(2));
  ring.publish(2);
  EXPECT_TRUE(sequencer.is_published(2));
  EXPECT_FALSE(sequencer.is_published(0));
}

// Records every construction and destruction, to prove that entries are built once per slot and
// never again while events flow (publishing assigns, it does not construct).
struct Counted {
  static inline int constructed = 0;
  static inline int destroyed = 0;
  std::int64_t value = 0;
  Counted() { ++constructed; }
  explicit Counted(std::int64_t v) : value(v) { ++constructed; }
  Counted(const Counted&) = delete;
  Counted& operator=(const Counted&) = delete;
  ~Counted() { ++destroyed; }
};

TEST(RingBufferEntries, AreConstructedOncePerSlotAndReusedOnEveryLap) {
  Counted::constructed = Counted::destroyed = 0;
  {
    RingBuffer<Counted> ring(8);
    EXPECT_EQ(Counted::constructed, 8);
    for (std::int64_t i = 0; i < 1000; ++i) {
      ASSERT_TRUE(ring.publish_event([](Counted& entry, std::int64_t s) { entry.value = s; }));
    }
    EXPECT_EQ(ring[999].value, 999);
    EXPECT_EQ(Counted::constructed, 8);
    EXPECT_EQ(Counted::destroyed, 0);
  }
  EXPECT_EQ(Counted::destroyed, 8);
}

TEST(RingBufferEntries, FactoryBuildsEachSlotFromItsIndex) {
  Counted::constructed = Counted::destroyed = 0;
  {
    RingBuffer<Counted> ring(4, [](std::int64_t i) { return Counted(i * 10); });
    for (std::int64_t i = 0; i < 4; ++i) EXPECT_EQ(ring[i].value, i * 10);
  }
  EXPECT_EQ(Counted::constructed, 4);
  EXPECT_EQ(Counted::destroyed, 4);
}

TEST(RingBufferEntries, AFailingFactoryDestroysWhatItBuilt) {
  Counted::constructed = Counted::destroyed = 0;
  const auto make = [](std::int64_t i) {
    if (i == 3) throw std::runtime_error("no memory for slot 3");
    return Counted(i);
  };
  EXPECT_THROW((RingBuffer<Counted>(8, make)), std::runtime_error);
  EXPECT_EQ(Counted::constructed, 3);
  EXPECT_EQ(Counted::destroyed, 3);
}

}  // namespace
}  // namespace annal::ringbuf
