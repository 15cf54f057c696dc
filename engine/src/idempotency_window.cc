#include "idempotency_window.h"

#include "annal/base/assert.h"

namespace annal::engine {

void IdempotencyWindow::remember(const Id128& id, const Receipt& receipt, std::uint32_t index) {
  if (capacity_ == 0 || id.empty()) return;
  const std::uint64_t sequence = receipt.first_sequence + index;
  ANNAL_ASSERT(sequence <= receipt.last_sequence);
  entries_.insert_or_assign(id, Entry{receipt, index});
  order_.push_back({id, sequence});
  while (order_.size() > capacity_) {
    const Remembered oldest = order_.front();
    order_.pop_front();
    // The id may have been appended again since (after it left a smaller window, say before a
    // restart with a larger one); only this occurrence is forgotten.
    const auto found = entries_.find(oldest.id);
    if (found != entries_.end() &&
        found->second.receipt.first_sequence + found->second.index == oldest.sequence) {
      entries_.erase(found);
    }
  }
}

}  // namespace annal::engine
