// NameIndex: name -> id for the names of a NameTable, as an open-addressing table of 8-byte slots.
//
//   slot = hash tag (u32, the top half of the name's hash) << 32 | (id + 1);   0 = empty
//
// The names themselves stay in the NameTable: a node-based map kept a second copy of every name
// plus a node per name (~80 bytes each beside the table's copy), and without cached hash codes it
// hashed other names again while walking a bucket: at a million streams, restoring the catalog
// spent half its time in lookups. Here a lookup hashes the name once, probes linearly comparing
// tags, and reads a name from the table only when a tag matches. Growing needs no name at all: the
// slot's position comes from its tag.
//
// Not thread-safe: the Catalog guards it (one writer, readers under a shared lock).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>
#include <vector>

#include "annal/base/assert.h"
#include "heap.h"
#include "name_table.h"

namespace annal::engine {

static_assert(sizeof(std::size_t) == 8, "the tag is the top half of a 64-bit hash");

class NameIndex {
 public:
  // The tag of `name`: what find and insert take, so that a caller who does both hashes once.
  [[nodiscard]] static std::uint32_t tag(std::string_view name) noexcept {
    return static_cast<std::uint32_t>(std::hash<std::string_view>{}(name) >> 32);
  }

  // The id of `name` (whose tag is `tag`) among `names`, if it is there.
  [[nodiscard]] std::optional<std::size_t> find(std::string_view name, std::uint32_t tag, const NameTable& names) const {
    if (slots_.empty()) return std::nullopt;
    for (std::size_t at = tag & mask();; at = (at + 1) & mask()) {
      const std::uint64_t slot = slots_[at];
      if (slot == 0) return std::nullopt;
      const std::size_t id = static_cast<std::size_t>(slot & UINT32_MAX) - 1;
      if ((slot >> 32) == tag && names.at(id) == name) return id;
    }
  }

  // Adds id `id` with its name's tag. The name must not be there already (find first).
  void insert(std::uint32_t tag, std::size_t id) {
    ANNAL_ASSERT(id < NameTable::kNamesMax);
    if ((size_ + 1) * kLoadDenominator > slots_.size() * kLoadNumerator) grow(std::max<std::size_t>(kSlotsMin, slots_.size() * 2));
    place((std::uint64_t{tag} << 32) | (id + 1));
    ++size_;
  }

  // Room for `names` in all without growing again.
  void reserve(std::size_t names) {
    std::size_t slots = kSlotsMin;
    while (names * kLoadDenominator > slots * kLoadNumerator) slots *= 2;
    if (slots > slots_.size()) grow(slots);
  }

 private:
  // At most 3/4 full: short probes, 8 bytes a slot, ~11-21 bytes a name.
  static constexpr std::size_t kLoadNumerator = 3, kLoadDenominator = 4;
  static constexpr std::size_t kSlotsMin = 16;

  [[nodiscard]] std::size_t mask() const noexcept { return slots_.size() - 1; }

  void place(std::uint64_t slot) {
    std::size_t at = static_cast<std::size_t>(slot >> 32) & mask();
    while (slots_[at] != 0) at = (at + 1) & mask();
    slots_[at] = slot;
  }

  void grow(std::size_t slots) {
    ANNAL_ASSERT((slots & (slots - 1)) == 0 && slots <= (std::size_t{1} << 32));  // the tag holds the position
    std::vector<std::uint64_t, HeapAllocator<std::uint64_t>> old(slots, 0);
    old.swap(slots_);
    for (const std::uint64_t slot : old) {
      if (slot != 0) place(slot);
    }
  }

  std::vector<std::uint64_t, HeapAllocator<std::uint64_t>> slots_;
  std::size_t size_ = 0;
};

}  // namespace annal::engine
