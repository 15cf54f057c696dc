// Sequence: the position of a producer or a consumer in the ring, as a 64-bit counter.
//
// Every hand-off in the ring is one thread storing a Sequence with release and another loading it
// with acquire: the entries written before the store are visible to whoever sees the new value.
// Nothing here is seq_cst; the one place that needs a store-load fence (blocking waits) spells it
// out in wait_strategy.h.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace annal::ringbuf {

// x86 and many ARM cores prefetch cache lines in adjacent pairs, so two hot counters closer than
// 128 bytes still trade the same pair of lines. Padding to 128 keeps each counter's line private.
inline constexpr std::size_t kFalseSharingBytes = 128;

class alignas(kFalseSharingBytes) Sequence {
 public:
  // No event has been claimed or processed yet: the first sequence handed out is 0.
  static constexpr std::int64_t kInitial = -1;

  explicit Sequence(std::int64_t initial = kInitial) noexcept : value_(initial) {}
  Sequence(const Sequence&) = delete;
  Sequence& operator=(const Sequence&) = delete;

  // Acquire: everything written before the set() that produced this value is visible.
  [[nodiscard]] std::int64_t get() const noexcept { return value_.load(std::memory_order_acquire); }

  // Release: every write made before it (slot contents, handler state) is published with it.
  void set(std::int64_t value) noexcept { value_.store(value, std::memory_order_release); }

  // For claims shared by several producers: acq_rel so the winner both sees the previous claims'
  // bookkeeping and publishes its own.
  [[nodiscard]] bool compare_and_set(std::int64_t expected, std::int64_t desired) noexcept {
    return value_.compare_exchange_strong(expected, desired, std::memory_order_acq_rel,
                                          std::memory_order_relaxed);
  }

 private:
  std::atomic<std::int64_t> value_;
};

static_assert(std::atomic<std::int64_t>::is_always_lock_free);
static_assert(sizeof(Sequence) == kFalseSharingBytes);
static_assert(alignof(Sequence) == kFalseSharingBytes);

}  // namespace annal::ringbuf
