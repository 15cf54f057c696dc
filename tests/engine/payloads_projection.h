// Payloads: a projection that keeps every payload it is given, in order, as its whole state (an
// erased event's as ""), so a test can ask whether any of a stream's data survived somewhere:
// in the live state, a snapshot, or a rebuild.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "annal/engine/projection.h"

namespace annal::engine::test {

struct Payloads final : Projection {
  std::vector<std::string> seen;
  void apply(const EventView& event) override {
    seen.emplace_back(reinterpret_cast<const char*>(event.payload.data()), event.payload.size());
  }
  std::uint32_t schema() const override { return 1; }
  std::vector<std::byte> snapshot() const override {
    std::string joined;
    for (const std::string& one : seen) joined += one + "\n";
    const auto bytes = std::as_bytes(std::span(joined));
    return {bytes.begin(), bytes.end()};
  }
  Status restore(std::span<const std::byte> state) override {
    seen.clear();
    std::string joined(reinterpret_cast<const char*>(state.data()), state.size());
    for (std::size_t at = 0; at < joined.size();) {
      const std::size_t end = joined.find('\n', at);
      seen.push_back(joined.substr(at, end - at));
      at = end + 1;
    }
    return {};
  }
  // Whether it holds a payload that begins with `prefix`.
  [[nodiscard]] bool holds(std::string_view prefix) const {
    for (const std::string& one : seen) {
      if (one.starts_with(prefix)) return true;
    }
    return false;
  }
};

}  // namespace annal::engine::test
