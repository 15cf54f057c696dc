#include "annal/ringbuf/batch_event_processor.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <thread>
#include <vector>

#include "annal/ringbuf/ring_buffer.h"
#include "watchdog.h"

namespace annal::ringbuf {
namespace {

using namespace std::chrono_literals;
using Ring = RingBuffer<std::int64_t, ProducerType::single, BlockingWaitStrategy>;

struct Recorder {
  struct Call {
    std::int64_t value;
    std::int64_t sequence;
    bool end_of_batch;
  };
  std::vector<Call> calls;
  std::int64_t throw_at = -1;

  void on_event(const std::int64_t& value, std::int64_t sequence, bool end_of_batch) {
    if (sequence == throw_at) throw std::runtime_error("handler failed");
    calls.push_back({value, sequence, end_of_batch});
  }
};

void publish_values(Ring& ring, std::int64_t count) {
  for (std::int64_t i = 0; i < count; ++i) {
    ASSERT_TRUE(ring.publish_event([](std::int64_t& entry, std::int64_t s) { entry = s * 3; }));
  }
}

TEST(BatchEventProcessor, HandsEveryAvailableEventAndMarksTheLastOfTheBatch) {
  Ring ring(16);
  Recorder recorder;
  BatchEventProcessor processor(ring, recorder);
  ASSERT_TRUE(ring.add_gating_sequence(processor.sequence()));
  publish_values(ring, 5);

  EXPECT_EQ(processor.poll(deadline_after(10s)), 5);
  ASSERT_EQ(recorder.calls.size(), 5U);
  for (std::int64_t s = 0; s < 5; ++s) {
    EXPECT_EQ(recorder.calls[s].sequence, s);
    EXPECT_EQ(recorder.calls[s].value, s * 3);
    EXPECT_EQ(recorder.calls[s].end_of_batch, s == 4);
  }
  EXPECT_EQ(processor.sequence().get(), 4);
}

TEST(BatchEventProcessor, BatchMaxSplitsABacklog) {
  Ring ring(16);
  Recorder recorder;
  BatchEventProcessor processor(ring, recorder, {}, /*batch_max=*/2);
  publish_values(ring, 5);
  EXPECT_EQ(processor.poll(deadline_after(10s)), 2);
  EXPECT_EQ(processor.poll(deadline_after(10s)), 2);
  EXPECT_EQ(processor.poll(deadline_after(10s)), 1);
  ASSERT_EQ(recorder.calls.size(), 5U);
  EXPECT_TRUE(recorder.calls[1].end_of_batch);
  EXPECT_FALSE(recorder.calls[2].end_of_batch);
  EXPECT_TRUE(recorder.calls[4].end_of_batch);
}

TEST(BatchEventProcessor, PollReturnsZeroWhenNothingArrivesBeforeTheDeadline) {
  Ring ring(16);
  Recorder recorder;
  BatchEventProcessor processor(ring, recorder);
  EXPECT_EQ(processor.poll(deadline_after(5ms)), 0);
  EXPECT_EQ(processor.poll(Clock::now()), 0);
  EXPECT_TRUE(recorder.calls.empty());
}

TEST(BatchEventProcessor, DownstreamProcessorSeesOnlyWhatUpstreamFinished) {
  Ring ring(16);
  Recorder first, second;
  BatchEventProcessor upstream(ring, first);
  BatchEventProcessor downstream(ring, second, {&upstream.sequence()});
  publish_values(ring, 3);

  EXPECT_EQ(downstream.poll(Clock::now()), 0);
  EXPECT_EQ(upstream.poll(deadline_after(10s)), 3);
  EXPECT_EQ(downstream.poll(deadline_after(10s)), 3);
  EXPECT_EQ(second.calls.size(), 3U);
}

TEST(BatchEventProcessor, HandlerExceptionLeavesTheSequenceAtTheLastCompletedBatch) {
  Ring ring(16);
  Recorder recorder;
  BatchEventProcessor processor(ring, recorder);
  publish_values(ring, 2);
  EXPECT_EQ(processor.poll(deadline_after(10s)), 2);
  publish_values(ring, 3);
  recorder.throw_at = 3;
  EXPECT_THROW(processor.poll(deadline_after(10s)), std::runtime_error);
  EXPECT_EQ(processor.sequence().get(), 1);
  // The failed batch is handed over again from its start.
  recorder.throw_at = -1;
  EXPECT_EQ(processor.poll(deadline_after(10s)), 3);
  EXPECT_EQ(processor.sequence().get(), 4);
}

TEST(BatchEventProcessor, HaltStopsARunBlockedOnAnEmptyRing) {
  Ring ring(16, BlockingWaitStrategy(/*spin_tries=*/0, /*yield_tries=*/0));
  Recorder recorder;
  BatchEventProcessor processor(ring, recorder);
  test::Watchdog watchdog("halting a blocked processor");
  std::thread thread([&] { processor.run(); });
  processor.halt();
  thread.join();
  EXPECT_EQ(processor.poll(deadline_after(10s)), (BatchEventProcessor<Ring, Recorder>::kHalted));
}

TEST(BatchEventProcessor, RunProcessesWhatAProducerPublishesThenHalts) {
  constexpr std::int64_t kEvents = 10'000;
  Ring ring(8);
  Recorder recorder;
  BatchEventProcessor processor(ring, recorder);
  ASSERT_TRUE(ring.add_gating_sequence(processor.sequence()));
  test::Watchdog watchdog("processor draining 10k events");
  std::thread thread([&] { processor.run(); });
  publish_values(ring, kEvents);
  while (processor.sequence().get() < kEvents - 1) std::this_thread::sleep_for(100us);
  processor.halt();
  thread.join();
  ASSERT_EQ(recorder.calls.size(), static_cast<std::size_t>(kEvents));
  for (std::int64_t s = 0; s < kEvents; ++s) ASSERT_EQ(recorder.calls[s].value, s * 3);
  EXPECT_TRUE(recorder.calls.back().end_of_batch);
}

}  // namespace
}  // namespace annal::ringbuf
