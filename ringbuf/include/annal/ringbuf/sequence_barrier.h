// SequenceBarrier: what a consumer waits on. With no dependencies it follows the producers' cursor;
// with dependencies it follows the slowest of them, which is how consumer graphs are built:
//
//   producers -> [A, B]  both follow the cursor
//   A, B      -> [C]     C's barrier depends on A's and B's sequences, so C sees an event only
//                        after both have processed it (journaler and projections -> snapshotter).
#pragma once

#include <atomic>
#include <cstdint>
#include <initializer_list>

#include "annal/base/assert.h"
#include "annal/ringbuf/sequence.h"
#include "annal/ringbuf/sequence_group.h"
#include "annal/ringbuf/wait_strategy.h"

namespace annal::ringbuf {

enum class WaitStatus {
  ok,        // `available` >= the sequence asked for
  timeout,   // the deadline passed first; `available` may still be below it
  alerted,   // alert() was called: the consumer should stop
};

struct WaitResult {
  std::int64_t available;  // every sequence up to this one may be read
  WaitStatus status;
};

template <class Sequencer>
class SequenceBarrier {
 public:
  // `dependencies` must outlive the barrier; at most SequenceGroup::kMembersMax of them.
  explicit SequenceBarrier(Sequencer& sequencer,
                           std::initializer_list<const Sequence*> dependencies = {})
      : sequencer_(sequencer) {
    for (const Sequence* dependency : dependencies) {
      ANNAL_ASSERT(dependency != nullptr);
      const bool added = dependencies_.add(*dependency);
      ANNAL_ASSERT(added);
    }
    follows_cursor_ = dependencies_.empty();
  }
  SequenceBarrier(const SequenceBarrier&) = delete;
  SequenceBarrier& operator=(const SequenceBarrier&) = delete;

  // Waits until `sequence` may be read, the deadline passes, or alert() is called. On ok the
  // result may be well beyond `sequence`: the consumer should process the whole batch.
  [[nodiscard]] WaitResult wait_for(std::int64_t sequence,
                                    Deadline deadline = kNoDeadline) noexcept {
    return wait_for(sequence, deadline, sequencer_.wait_strategy());
  }
  // The same, sleeping on `strategy` instead of the sequencer's: for a barrier whose dependencies
  // move on their own schedule, so that their owner signals only the consumers that wait for them
  // and not every publish wakes those consumers for nothing. Whoever moves the dependencies (or
  // publishes past them) must signal `strategy`, and alert() does not.
  template <class Strategy>
  [[nodiscard]] WaitResult wait_for(std::int64_t sequence, Deadline deadline, Strategy& strategy) noexcept {
    std::int64_t available = Sequence::kInitial;
    const auto ready = [&] {
      if (alerted()) return true;
      available = readable_up_to(sequence);
      return available >= sequence;
    };
    strategy.wait_until(ready, deadline);
    if (alerted()) return {available, WaitStatus::alerted};
    return {available, available >= sequence ? WaitStatus::ok : WaitStatus::timeout};
  }

  // The highest sequence readable now, without waiting.
  [[nodiscard]] std::int64_t readable_up_to(std::int64_t from) const noexcept {
    const std::int64_t cursor = sequencer_.cursor().get();
    const std::int64_t ahead = follows_cursor_ ? cursor : dependencies_.minimum(cursor);
    // With several producers the cursor counts claims, not publishes, and an upstream that joined
    // a running ring starts at the cursor; both are checked against the published rounds. (With
    // one producer this is free: the cursor moves only on publish.)
    return sequencer_.highest_published(from, ahead);
  }

  // Wakes the consumer waiting on this barrier and makes its waits return `alerted` until
  // clear_alert(). Any thread.
  void alert() noexcept {
    alerted_.store(true, std::memory_order_release);
    sequencer_.wait_strategy().signal_all_when_blocking();
  }
  void clear_alert() noexcept { alerted_.store(false, std::memory_order_release); }
  [[nodiscard]] bool alerted() const noexcept { return alerted_.load(std::memory_order_acquire); }

 private:
  Sequencer& sequencer_;
  SequenceGroup dependencies_;
  bool follows_cursor_ = true;
  std::atomic<bool> alerted_{false};
};

}  // namespace annal::ringbuf
