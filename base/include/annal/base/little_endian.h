// Fixed-width integers inside annal's on-disk formats (journal records and segment headers, index
// files, snapshots): little-endian and unaligned. The formats are little-endian like every machine
// annal builds for (journal/format.h static_asserts it), so a field is a memcpy.
#pragma once

#include <cstddef>
#include <cstring>
#include <span>
#include <type_traits>

#include "annal/base/assert.h"

namespace annal {

template <class T>
  requires std::is_integral_v<T>
void store_le(std::span<std::byte> out, std::size_t at, T value) noexcept {
  ANNAL_DEBUG_ASSERT(at <= out.size() && sizeof(T) <= out.size() - at);
  std::memcpy(out.data() + at, &value, sizeof(T));
}

template <class T>
  requires std::is_integral_v<T>
[[nodiscard]] T load_le(std::span<const std::byte> in, std::size_t at) noexcept {
  ANNAL_DEBUG_ASSERT(at <= in.size() && sizeof(T) <= in.size() - at);
  T value;
  std::memcpy(&value, in.data() + at, sizeof(T));
  return value;
}

}  // namespace annal
