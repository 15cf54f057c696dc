// RingBuffer: preallocated entries that producers fill and consumers read in sequence order.
//
//   RingBuffer<Event, ProducerType::multi> ring(1 << 16);
//   auto hi = ring.next();               // claim (waits while the ring is full)
//   ring[*hi] = event;                   // fill the claimed slot in place
//   ring.publish(*hi);                   // make it visible to consumers
//
// Entries are constructed once, when the ring is built, and reused on every lap: publishing never
// allocates. A slot belongs to the producer from claim to publish and to the consumers from
// publish until every gating consumer has moved past it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <new>
#include <optional>
#include <type_traits>
#include <utility>

#include "annal/ringbuf/multi_producer_sequencer.h"
#include "annal/ringbuf/sequence_barrier.h"
#include "annal/ringbuf/single_producer_sequencer.h"

namespace annal::ringbuf {

template <class T, ProducerType P = ProducerType::single, WaitStrategy W = BlockingWaitStrategy>
class RingBuffer {
 public:
  using value_type = T;
  using Sequencer = std::conditional_t<P == ProducerType::single, SingleProducerSequencer<W>,
                                       MultiProducerSequencer<W>>;
  using Barrier = SequenceBarrier<Sequencer>;

  // Default-constructs `capacity` entries (a power of two; std::invalid_argument otherwise).
  explicit RingBuffer(std::int64_t capacity, W wait = W{})
      : RingBuffer(capacity, [](std::int64_t) { return T{}; }, std::move(wait)) {}

  // Constructs entry i as make(i), e.g. to give each slot a buffer of its own.
  template <class Factory>
    requires std::is_invocable_r_v<T, Factory&, std::int64_t>
  RingBuffer(std::int64_t capacity, Factory&& make, W wait = W{})
      : sequencer_(capacity, std::move(wait)), mask_(capacity - 1) {
    entries_ = static_cast<T*>(::operator new(sizeof(T) * static_cast<std::size_t>(capacity),
                                              std::align_val_t{kEntriesAlign}));
    std::int64_t built = 0;
    try {
      for (; built < capacity; ++built) ::new (entries_ + built) T(make(built));
    } catch (...) {
      destroy(built);
      throw;
    }
  }

  ~RingBuffer() { destroy(capacity()); }
  RingBuffer(const RingBuffer&) = delete;
  RingBuffer& operator=(const RingBuffer&) = delete;

  // The entry for `sequence`. Valid for a producer between claim and publish, for a consumer
  // between its barrier reporting the sequence and the consumer moving its own sequence past it.
  [[nodiscard]] T& operator[](std::int64_t sequence) noexcept { return entries_[sequence & mask_]; }
  [[nodiscard]] const T& operator[](std::int64_t sequence) const noexcept {
    return entries_[sequence & mask_];
  }

  // Claim n slots; see SingleProducerSequencer::next / try_next.
  [[nodiscard]] std::optional<std::int64_t> next(std::int64_t n = 1,
                                                 Deadline deadline = kNoDeadline) noexcept {
    return sequencer_.next(n, deadline);
  }
  [[nodiscard]] std::optional<std::int64_t> try_next(std::int64_t n = 1) noexcept {
    return sequencer_.try_next(n);
  }
  // Makes claimed slots readable: publish(s) for one, publish(lo, hi) for a claim of several.
  void publish(std::int64_t sequence) noexcept { sequencer_.publish(sequence); }
  void publish(std::int64_t lo, std::int64_t hi) noexcept { sequencer_.publish(lo, hi); }

  // Claims one slot, lets `fill(entry, sequence)` write it, publishes it. Returns false (and calls
  // nothing) if no slot freed up before the deadline or the ring was alerted. If fill throws, the
  // slot is published anyway, as written so far: an unpublished claim would stall every consumer.
  template <class Fill>
  [[nodiscard]] bool publish_event(Fill&& fill, Deadline deadline = kNoDeadline) {
    return publish_claimed(sequencer_.next(1, deadline), std::forward<Fill>(fill));
  }
  // As publish_event, but gives up at once when the ring is full.
  template <class Fill>
  [[nodiscard]] bool try_publish_event(Fill&& fill) {
    return publish_claimed(sequencer_.try_next(1), std::forward<Fill>(fill));
  }

  // A barrier on the cursor (no dependencies) or on upstream consumers' sequences.
  [[nodiscard]] Barrier new_barrier(std::initializer_list<const Sequence*> dependencies = {}) {
    return Barrier(sequencer_, dependencies);
  }

  // Producers never lap a gating consumer. Gate on the last consumers of the graph; a ring with
  // no gating consumer lets producers overwrite anything. See SequencerCore for joining and
  // leaving while producers run.
  [[nodiscard]] bool add_gating_sequence(Sequence& consumer) noexcept {
    return sequencer_.add_gating_sequence(consumer);
  }
  bool remove_gating_sequence(const Sequence& consumer) noexcept {
    return sequencer_.remove_gating_sequence(consumer);
  }

  // Makes claims fail, blocked ones included, until clear_alert(); for shutting producers down.
  void alert() noexcept { sequencer_.alert(); }
  void clear_alert() noexcept { sequencer_.clear_alert(); }

  [[nodiscard]] std::int64_t capacity() const noexcept { return sequencer_.capacity(); }
  // Single producer: from the producer thread only.
  [[nodiscard]] std::int64_t remaining_capacity() const noexcept {
    return sequencer_.remaining_capacity();
  }
  [[nodiscard]] const Sequence& cursor() const noexcept { return sequencer_.cursor(); }
  [[nodiscard]] Sequencer& sequencer() noexcept { return sequencer_; }

 private:
  // Entries start on their own cache-line pair, away from whatever the allocator put before them.
  static constexpr std::size_t kEntriesAlign =
      alignof(T) > kFalseSharingBytes ? alignof(T) : kFalseSharingBytes;

  template <class Fill>
  bool publish_claimed(std::optional<std::int64_t> claimed, Fill&& fill) {
    if (!claimed) return false;
    struct PublishOnExit {
      RingBuffer& ring;
      std::int64_t sequence;
      ~PublishOnExit() { ring.publish(sequence); }
    } publish_on_exit{*this, *claimed};
    fill((*this)[*claimed], *claimed);
    return true;
  }

  void destroy(std::int64_t built) noexcept {
    for (std::int64_t i = 0; i < built; ++i) entries_[i].~T();
    ::operator delete(entries_, std::align_val_t{kEntriesAlign});
  }

  Sequencer sequencer_;
  const std::int64_t mask_;
  T* entries_ = nullptr;
};

}  // namespace annal::ringbuf
