// BatchEventProcessor: the consumer loop. It waits on its barrier, hands every available event to
// the handler as (entry, sequence, end_of_batch), then moves its own sequence past the batch, once
// per batch: one release store and one signal however many events the batch held.
//
//   struct Count { std::int64_t n = 0;
//                  void on_event(Event& e, std::int64_t seq, bool end_of_batch) { ++n; } };
//   Count handler;
//   BatchEventProcessor processor(ring, handler);        // follows the producers' cursor
//   (void)ring.add_gating_sequence(processor.sequence()); // producers wait for it
//   std::jthread thread([&] { processor.run(); });       // ... or call processor.poll() yourself
//   processor.halt();                                    // run() returns
//
// end_of_batch tells the handler to flush whatever it buffers (a journal write, an index update).
#pragma once

#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <limits>

#include "annal/base/assert.h"
#include "annal/ringbuf/sequence.h"
#include "annal/ringbuf/sequence_barrier.h"

namespace annal::ringbuf {

template <class H, class T>
concept EventHandler = requires(H& handler, T& entry, std::int64_t sequence, bool end_of_batch) {
  handler.on_event(entry, sequence, end_of_batch);
};

template <class Ring, EventHandler<typename Ring::value_type> Handler>
class BatchEventProcessor {
 public:
  // Follows the cursor, or the `after` consumers' sequences (which must outlive the processor).
  // `batch_max` bounds a batch so the processor reports progress, and frees slots for
  // producers, at least every batch_max events.
  BatchEventProcessor(Ring& ring, Handler& handler, std::initializer_list<const Sequence*> after = {},
                      std::int64_t batch_max = std::numeric_limits<std::int64_t>::max())
      : ring_(ring), handler_(handler), barrier_(ring.sequencer(), after), batch_max_(batch_max) {
    ANNAL_ASSERT(batch_max >= 1);
  }
  BatchEventProcessor(const BatchEventProcessor&) = delete;
  BatchEventProcessor& operator=(const BatchEventProcessor&) = delete;

  // The last sequence this processor finished with. Gate producers, or downstream consumers, on it.
  [[nodiscard]] Sequence& sequence() noexcept { return sequence_; }

  // Processes events until halt(); for a thread of its own. If the handler throws, the exception
  // leaves run() and the sequence stays at the end of the last completed batch.
  void run() {
    while (poll(kNoDeadline) != kHalted) {
    }
  }

  // Waits until `deadline` for events, processes one batch of them, and returns how many it
  // processed: 0 when the deadline passed first, kHalted once halt() was called. For driving the
  // processor from the caller's thread; poll(Clock::now()) only polls for as long as the wait
  // strategy spins before it looks at the clock.
  static constexpr std::int64_t kHalted = -1;
  std::int64_t poll(Deadline deadline) {
    const std::int64_t next = sequence_.get() + 1;
    const WaitResult result = barrier_.wait_for(next, deadline);
    if (result.status == WaitStatus::alerted) return kHalted;
    if (result.status == WaitStatus::timeout) return 0;
    // Compared as a count, so a batch_max near INT64_MAX cannot overflow next + batch_max.
    const std::int64_t last =
        result.available - next < batch_max_ ? result.available : next + (batch_max_ - 1);
    for (std::int64_t s = next; s <= last; ++s) handler_.on_event(ring_[s], s, s == last);
    // Release: the handler's reads of these slots (and its own state) happen before any producer
    // reuses them or any downstream consumer reads past them.
    sequence_.set(last);
    ring_.sequencer().wait_strategy().signal_all_when_blocking();
    return last - next + 1;
  }

  // Stops run() and makes poll() return kHalted. Any thread. Events not yet processed stay in the
  // ring; to drain first, wait until sequence() reaches the cursor.
  void halt() noexcept { barrier_.alert(); }

 private:
  Ring& ring_;
  Handler& handler_;
  typename Ring::Barrier barrier_;
  const std::int64_t batch_max_;
  Sequence sequence_;
};

}  // namespace annal::ringbuf
