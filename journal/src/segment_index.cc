#include "segment_index.h"

#include <algorithm>

namespace annal::journal {

void SegmentIndex::drop_from(std::uint64_t sequence) {
  const auto first_dropped =
      std::lower_bound(entries_.begin(), entries_.end(), sequence,
                       [](const IndexEntry& entry, std::uint64_t s) { return entry.sequence < s; });
  entries_.erase(first_dropped, entries_.end());
}

std::optional<IndexEntry> SegmentIndex::floor(std::uint64_t sequence) const noexcept {
  const auto after =
      std::upper_bound(entries_.begin(), entries_.end(), sequence,
                       [](std::uint64_t s, const IndexEntry& entry) { return s < entry.sequence; });
  if (after == entries_.begin()) return std::nullopt;
  return *std::prev(after);
}

}  // namespace annal::journal
