// IdempotencyWindow: the most recent event ids and the receipts of the appends they came in, so a
// client that retries an append (it timed out, the connection dropped) gets the original receipt
// instead of writing the events twice. Bounded: the oldest id is forgotten when a new one would
// pass `capacity`. Rebuilt from the journal at open, so it holds across restarts.
//
// Used only under the engine's sequencing lock (and by recovery before that): not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>

#include "annal/engine/types.h"
#include "heap.h"

namespace annal::engine {

class IdempotencyWindow {
 public:
  struct Entry {
    Receipt receipt;          // of the whole append the id came in
    std::uint32_t index = 0;  // the event's place in it
  };

  explicit IdempotencyWindow(std::size_t capacity) : capacity_(capacity) {}

  [[nodiscard]] bool enabled() const noexcept { return capacity_ > 0; }
  [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
  [[nodiscard]] const Entry* find(const Id128& id) const {
    const auto found = entries_.find(id);
    return found == entries_.end() ? nullptr : &found->second;
  }
  void remember(const Id128& id, const Receipt& receipt, std::uint32_t index);
  [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }
  // The remembered ids still in the window, oldest first, with their entries: replaying them into
  // an empty window through remember() rebuilds this one.
  template <class Visit>
  void for_each(Visit&& visit) const {
    for (const Remembered& remembered : order_) {
      const auto found = entries_.find(remembered.id);
      if (found != entries_.end() && found->second.receipt.first_sequence + found->second.index == remembered.sequence) {
        visit(remembered.id, found->second);
      }
    }
  }

 private:
  struct IdHash {
    std::size_t operator()(const Id128& id) const noexcept {
      return std::hash<std::uint64_t>{}(id.hi * 0x9E3779B97F4A7C15ull ^ id.lo);
    }
  };
  struct Remembered {
    Id128 id;
    std::uint64_t sequence;  // the event's, to tell this occurrence of the id from a later one
  };

  const std::size_t capacity_;
  HeapMap<Id128, Entry, IdHash> entries_;
  std::deque<Remembered, HeapAllocator<Remembered>> order_;  // oldest first
};

}  // namespace annal::engine
