// What single- and multi-producer sequencers share: the cursor consumers follow, the wait
// strategy, the set of consumer sequences that gate producers, and the producer-side alert.
//
// A sequencer hands out sequence numbers (claims) and makes them visible to consumers (publish).
// Sequence s lives in slot s & (capacity - 1). Gating rule: a producer may claim s only once every
// gating consumer has processed s - capacity, the slot's previous occupant.
#pragma once

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "annal/base/assert.h"
#include "annal/ringbuf/sequence.h"
#include "annal/ringbuf/sequence_group.h"
#include "annal/ringbuf/wait_strategy.h"

namespace annal::ringbuf {

enum class ProducerType { single, multi };

// Large enough for any ring that fits in memory, small enough that a claim of `capacity` can never
// overflow 64-bit sequence arithmetic.
inline constexpr std::int64_t kCapacityMax = std::int64_t{1} << 32;

template <WaitStrategy W>
class SequencerCore {
 public:
  SequencerCore(std::int64_t capacity, W wait)
      : capacity_(checked_capacity(capacity)), wait_(std::move(wait)) {}
  SequencerCore(const SequencerCore&) = delete;
  SequencerCore& operator=(const SequencerCore&) = delete;

  [[nodiscard]] std::int64_t capacity() const noexcept { return capacity_; }
  [[nodiscard]] const Sequence& cursor() const noexcept { return cursor_; }
  [[nodiscard]] W& wait_strategy() noexcept { return wait_; }

  // Makes the producer wait for `consumer` before reusing a slot. To join a running ring, the
  // consumer's sequence is moved to the cursor before and after joining: whatever the producers
  // did in between, the consumer starts at a point no producer can have lapped. Returns false if
  // SequenceGroup::kMembersMax consumers already gate this ring.
  [[nodiscard]] bool add_gating_sequence(Sequence& consumer) noexcept {
    consumer.set(cursor_.get());
    if (!gating_.add(consumer)) return false;
    consumer.set(cursor_.get());
    return true;
  }
  bool remove_gating_sequence(const Sequence& consumer) noexcept {
    const bool removed = gating_.remove(consumer);
    // A producer waiting for this consumer may now proceed.
    wait_.signal_all_when_blocking();
    return removed;
  }

  // Wakes producers blocked in next(): their claims fail. For shutdown; clear_alert() re-arms.
  void alert() noexcept {
    alerted_.store(true, std::memory_order_release);
    wait_.signal_all_when_blocking();
  }
  void clear_alert() noexcept { alerted_.store(false, std::memory_order_release); }
  [[nodiscard]] bool alerted() const noexcept { return alerted_.load(std::memory_order_acquire); }

 protected:
  // Slots free for a producer that has claimed up to `claimed`.
  [[nodiscard]] std::int64_t remaining_after(std::int64_t claimed) const noexcept {
    const std::int64_t consumed = gating_.minimum(claimed);
    return capacity_ - (claimed - consumed);
  }

  // Waits until the gating consumers have passed `wrap_point` (the sequence whose slot a claim
  // would reuse), the deadline passes or alert() is called. Returns the last gating minimum seen:
  // below `wrap_point` when the wait failed.
  [[nodiscard]] std::int64_t wait_for_consumers(std::int64_t wrap_point, std::int64_t claimed,
                                                Deadline deadline) noexcept {
    std::int64_t consumed = Sequence::kInitial;
    const auto ready = [&] {
      consumed = gating_.minimum(claimed);
      return consumed >= wrap_point || alerted();
    };
    wait_.wait_until(ready, deadline);
    return consumed;
  }

  const std::int64_t capacity_;
  Sequence cursor_;
  W wait_;
  SequenceGroup gating_;
  std::atomic<bool> alerted_{false};

 private:
  static std::int64_t checked_capacity(std::int64_t capacity) {
    const bool power_of_two = capacity > 0 && (capacity & (capacity - 1)) == 0;
    if (!power_of_two || capacity > kCapacityMax) {
      throw std::invalid_argument("annal::ringbuf: capacity " + std::to_string(capacity) +
                                  " must be a power of two between 1 and 2^32; round it up to"
                                  " the next power of two");
    }
    return capacity;
  }
};

}  // namespace annal::ringbuf
