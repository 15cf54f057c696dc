// SingleProducerSequencer: claims for exactly one producer thread. The claim path is plain
// arithmetic on producer-owned fields; the only shared-memory traffic is the cursor store on
// publish and, rarely, a re-read of the consumers' sequences when the cached minimum runs out.
#pragma once

#include <cstdint>
#include <optional>

#include "annal/ringbuf/sequencer.h"

namespace annal::ringbuf {

template <WaitStrategy W>
class SingleProducerSequencer : public SequencerCore<W> {
  using Core = SequencerCore<W>;

 public:
  static constexpr ProducerType kProducerType = ProducerType::single;

  explicit SingleProducerSequencer(std::int64_t capacity, W wait = W{})
      : Core(capacity, std::move(wait)) {}

  // Claims the next n sequences (1 <= n <= capacity), waiting for free slots until `deadline`.
  // Returns the highest claimed; the claim is [result - n + 1, result]. nullopt if the deadline
  // passed or the sequencer was alerted; nothing is claimed then. Producer thread only.
  [[nodiscard]] std::optional<std::int64_t> next(std::int64_t n = 1,
                                                 Deadline deadline = kNoDeadline) noexcept {
    return claim(n, [&](std::int64_t wrap_point) {
      return this->wait_for_consumers(wrap_point, producer_.claimed, deadline);
    });
  }

  // Claims n sequences only if the slots are free now: nullopt means the ring is full
  // (back-pressure). Producer thread only.
  [[nodiscard]] std::optional<std::int64_t> try_next(std::int64_t n = 1) noexcept {
    return claim(n, [&](std::int64_t) { return this->consumed_now(producer_.claimed); });
  }

  // Makes every claimed sequence up to `hi` visible to consumers. The release store in
  // Sequence::set orders the producer's writes to those slots before the new cursor value.
  void publish(std::int64_t hi) noexcept {
    ANNAL_DEBUG_ASSERT(hi <= producer_.claimed && hi > this->cursor_.get());
    this->cursor_.set(hi);
    this->wait_.signal_all_when_blocking();
  }
  void publish(std::int64_t lo, std::int64_t hi) noexcept {
    ANNAL_DEBUG_ASSERT(lo <= hi);
    publish(hi);
  }

  // With one producer, the cursor is only ever moved past fully written slots.
  [[nodiscard]] std::int64_t highest_published(std::int64_t /*lo*/,
                                               std::int64_t available) const noexcept {
    return available;
  }

  // Producer thread only.
  [[nodiscard]] std::int64_t remaining_capacity() const noexcept {
    return this->remaining_after(producer_.claimed);
  }

 private:
  // `consumed_now(wrap_point)` returns how far the gating consumers have got, waiting or not.
  template <class ConsumedNow>
  std::optional<std::int64_t> claim(std::int64_t n, ConsumedNow&& consumed_now) noexcept {
    ANNAL_ASSERT(n >= 1 && n <= this->capacity_);
    if (this->alerted()) [[unlikely]] return std::nullopt;
    const std::int64_t claim_hi = producer_.claimed + n;
    const std::int64_t wrap_point = claim_hi - this->capacity_;
    if (wrap_point > producer_.consumed_cached) {
      const std::int64_t consumed = consumed_now(wrap_point);
      if (consumed < wrap_point) return std::nullopt;
      producer_.consumed_cached = consumed;
    }
    producer_.claimed = claim_hi;
    return claim_hi;
  }

  // Written only by the producer thread. On its own cache line so that consumers polling the
  // cursor do not pull it away from the producer on every claim.
  struct alignas(kFalseSharingBytes) ProducerState {
    std::int64_t claimed = Sequence::kInitial;
    // Gating minimum last seen. Consumers only move forward, so until the producer would lap
    // this value it need not look at their sequences at all.
    std::int64_t consumed_cached = Sequence::kInitial;
  };
  ProducerState producer_;
};

}  // namespace annal::ringbuf
