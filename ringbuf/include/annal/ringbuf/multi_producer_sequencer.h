// MultiProducerSequencer: claims for any number of producer threads.
//
// Claims are a compare-and-swap on the cursor, made only after the slots are known to be free, so
// a claim that times out or is alerted leaves nothing half-claimed. Because producers finish
// writing in any order, the cursor says what is claimed, not what is readable: each slot also
// records the lap ("round", sequence / capacity) of the last sequence published into it, and a
// consumer reads s only when slot s & mask holds round s / capacity.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>

#include "annal/ringbuf/sequencer.h"

namespace annal::ringbuf {

template <WaitStrategy W>
class MultiProducerSequencer : public SequencerCore<W> {
  using Core = SequencerCore<W>;

 public:
  static constexpr ProducerType kProducerType = ProducerType::multi;

  explicit MultiProducerSequencer(std::int64_t capacity, W wait = W{})
      : Core(capacity, std::move(wait)),
        mask_(capacity - 1),
        round_shift_(static_cast<unsigned>(__builtin_ctzll(static_cast<std::uint64_t>(capacity)))),
        published_round_(std::make_unique<std::atomic<std::uint32_t>[]>(
            static_cast<std::size_t>(capacity))) {
    // No slot holds round 0 yet. (Rounds are compared modulo 2^32; a slot is rewritten every lap,
    // so a stale round can never alias the current one.)
    for (std::int64_t i = 0; i < capacity; ++i) {
      published_round_[static_cast<std::size_t>(i)].store(~std::uint32_t{0},
                                                           std::memory_order_relaxed);
    }
  }

  // As SingleProducerSequencer::next; safe from any number of threads.
  [[nodiscard]] std::optional<std::int64_t> next(std::int64_t n = 1,
                                                 Deadline deadline = kNoDeadline) noexcept {
    return claim(n, [&](std::int64_t wrap_point, std::int64_t current) {
      return this->wait_for_consumers(wrap_point, current, deadline);
    });
  }

  // As SingleProducerSequencer::try_next; safe from any number of threads.
  [[nodiscard]] std::optional<std::int64_t> try_next(std::int64_t n = 1) noexcept {
    return claim(n, [&](std::int64_t, std::int64_t current) {
      return this->consumed_now(current);
    });
  }

  // Marks [lo, hi] readable: after next(n), publish(hi - n + 1, hi). (publish(s) marks s alone.)
  // Each round store is a release, so a consumer that sees the round
  // (acquire) sees the slot's contents.
  void publish(std::int64_t lo, std::int64_t hi) noexcept {
    ANNAL_DEBUG_ASSERT(lo <= hi && hi <= this->cursor_.get());
    for (std::int64_t s = lo; s <= hi; ++s) {
      round_of_slot(s).store(round(s), std::memory_order_release);
    }
    this->wait_.signal_all_when_blocking();
  }
  void publish(std::int64_t s) noexcept { publish(s, s); }

  [[nodiscard]] bool is_published(std::int64_t s) const noexcept {
    return round_of_slot(s).load(std::memory_order_acquire) == round(s);
  }

  // The highest sequence in [lo, available] below which everything is published: consumers may
  // read up to it. Returns lo - 1 when lo itself is still being written.
  [[nodiscard]] std::int64_t highest_published(std::int64_t lo,
                                               std::int64_t available) const noexcept {
    for (std::int64_t s = lo; s <= available; ++s) {
      if (!is_published(s)) return s - 1;
    }
    return available;
  }

  [[nodiscard]] std::int64_t remaining_capacity() const noexcept {
    return this->remaining_after(this->cursor_.get());
  }

 private:
  template <class ConsumedNow>
  std::optional<std::int64_t> claim(std::int64_t n, ConsumedNow&& consumed_now) noexcept {
    ANNAL_ASSERT(n >= 1 && n <= this->capacity_);
    for (;;) {
      if (this->alerted()) [[unlikely]] return std::nullopt;
      const std::int64_t current = this->cursor_.get();
      const std::int64_t claim_hi = current + n;
      const std::int64_t wrap_point = claim_hi - this->capacity_;
      if (wrap_point > consumed_cached_.get()) {
        const std::int64_t consumed = consumed_now(wrap_point, current);
        if (consumed < wrap_point) return std::nullopt;
        // Producers race to store this; a smaller value only makes a later claim re-check.
        consumed_cached_.set(consumed);
      }
      // Free slots were seen for [current + 1, claim_hi]; consumers only move forward, so they
      // stay free if nobody else claimed in between, which the CAS checks.
      if (this->cursor_.compare_and_set(current, claim_hi)) return claim_hi;
    }
  }

  [[nodiscard]] std::uint32_t round(std::int64_t s) const noexcept {
    return static_cast<std::uint32_t>(static_cast<std::uint64_t>(s) >> round_shift_);
  }
  [[nodiscard]] std::atomic<std::uint32_t>& round_of_slot(std::int64_t s) const noexcept {
    return published_round_[static_cast<std::size_t>(s & mask_)];
  }

  const std::int64_t mask_;
  const unsigned round_shift_;
  // Shared by all producers, on its own line: the gating minimum last seen by any of them.
  Sequence consumed_cached_;
  const std::unique_ptr<std::atomic<std::uint32_t>[]> published_round_;
};

}  // namespace annal::ringbuf
