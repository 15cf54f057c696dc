// The wall-clock time stamped into records, snapshots and segment headers: nanoseconds since the
// Unix epoch. For tools and point-in-time queries only; ordering comes from sequences, never from it.
#pragma once

#include <chrono>
#include <cstdint>

namespace annal {

[[nodiscard]] inline std::uint64_t wall_clock_ns() noexcept {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

}  // namespace annal
