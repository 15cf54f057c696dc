// SequenceGroup: a bounded set of sequences whose minimum gates someone else.
//
// Producers are gated on the slowest consumer (a producer may not reuse a slot until every gating
// consumer has released it); a consumer downstream of others is gated on its upstreams. Members may
// be added and removed while the ring runs, so a consumer can join or detach without stopping
// producers. The bound keeps the scan on the slow path short and the memory fixed.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "annal/ringbuf/sequence.h"

namespace annal::ringbuf {

class SequenceGroup {
 public:
  static constexpr std::size_t kMembersMax = 16;

  SequenceGroup() noexcept = default;
  SequenceGroup(const SequenceGroup&) = delete;
  SequenceGroup& operator=(const SequenceGroup&) = delete;

  // Adds `member`, which must outlive its membership. Returns false if the group is full.
  // Thread-safe against add, remove and minimum.
  [[nodiscard]] bool add(const Sequence& member) noexcept {
    for (auto& slot : slots_) {
      const Sequence* empty = nullptr;
      // The fences that make a producer's scan see a member joining a running ring are in
      // SequencerCore (add_gating_sequence and wait_for_consumers).
      if (slot.compare_exchange_strong(empty, &member, std::memory_order_seq_cst)) return true;
    }
    return false;
  }

  // Removes `member`; returns false if it was not in the group. A scan already under way may still
  // read it, so `member` must stay alive until no such scan can be running (in practice: for as
  // long as the producers or the ring live).
  bool remove(const Sequence& member) noexcept {
    for (auto& slot : slots_) {
      const Sequence* expected = &member;
      if (slot.compare_exchange_strong(expected, nullptr, std::memory_order_seq_cst)) return true;
    }
    return false;
  }

  // The smallest of `bound` and every member's value. Callers pass the cursor they read before
  // the scan: a scan that races with a member joining may read other members after they have
  // moved on, and the bound keeps such a scan from reporting more free space than existed when
  // the claim began.
  [[nodiscard]] std::int64_t minimum(std::int64_t bound) const noexcept {
    std::int64_t result = bound;
    for (const auto& slot : slots_) {
      const Sequence* member = slot.load(std::memory_order_acquire);
      if (member == nullptr) continue;
      const std::int64_t value = member->get();
      if (value < result) result = value;
    }
    return result;
  }

  [[nodiscard]] bool empty() const noexcept {
    for (const auto& slot : slots_) {
      if (slot.load(std::memory_order_acquire) != nullptr) return false;
    }
    return true;
  }

 private:
  std::array<std::atomic<const Sequence*>, kMembersMax> slots_{};
};

}  // namespace annal::ringbuf
