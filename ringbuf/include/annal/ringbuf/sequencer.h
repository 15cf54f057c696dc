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

  // Makes producers wait for `consumer` before reusing a slot; `consumer` starts at the cursor.
  // Safe while producers run: the consumer is moved to the cursor, joins, and is moved to the
  // cursor again after a fence that pairs with the fence before every producer's gating scan (a
  // store-load pattern). Either the producer's scan sees the new member, or the member's second
  // read sees every claim the producer made without it, so the consumer never starts on a slot
  // that can be reused under it. A consumer downstream of others must join before events flow:
  // it would start at the cursor, not at its upstreams. Call before the consumer's processor runs.
  // Returns false if SequenceGroup::kMembersMax consumers already gate this ring.
  [[nodiscard]] bool add_gating_sequence(Sequence& consumer) noexcept {
    consumer.set(cursor_.get());
    if (!gating_.add(consumer)) return false;
    std::atomic_thread_fence(std::memory_order_seq_cst);
    consumer.set(cursor_.get());
    // A producer may have gone to sleep on the value the consumer held before the second move.
    wait_.signal_all_when_blocking();
    return true;
  }
  // Stops gating producers on `consumer`, which must outlive any claim already under way (see
  // SequenceGroup::remove). A halted consumer that stays in the group blocks producers for good.
  bool remove_gating_sequence(const Sequence& consumer) noexcept {
    const bool removed = gating_.remove(consumer);
    // A producer waiting for this consumer may now proceed.
    wait_.signal_all_when_blocking();
    return removed;
  }

  // Makes claims fail, blocked ones included, until clear_alert(). For shutdown.
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

  // How far every gating consumer has got, capped at `claimed`. Claims' slow path only: the fence
  // pairs with the one in add_gating_sequence (the cursor store before it is the producer's last
  // publish), so a consumer joining concurrently is either seen here or starts past this claim.
  [[nodiscard]] std::int64_t consumed_now(std::int64_t claimed) const noexcept {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return gating_.minimum(claimed);
  }

  // Waits until the gating consumers have passed `wrap_point` (the sequence whose slot a claim
  // would reuse), the deadline passes or alert() is called. Returns the last gating minimum seen:
  // below `wrap_point` when the wait failed.
  [[nodiscard]] std::int64_t wait_for_consumers(std::int64_t wrap_point, std::int64_t claimed,
                                                Deadline deadline) noexcept {
    std::int64_t consumed = Sequence::kInitial;
    const auto ready = [&] {
      consumed = consumed_now(claimed);
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
