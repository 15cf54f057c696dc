#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

#include "annal/engine/types.h"

namespace annal::engine {

std::string format_id(const Id128& id) {
  char out[40];
  std::snprintf(out, sizeof(out), "%08llx-%04llx-%04llx-%04llx-%012llx", static_cast<unsigned long long>(id.hi >> 32),
                static_cast<unsigned long long>((id.hi >> 16) & 0xffff), static_cast<unsigned long long>(id.hi & 0xffff),
                static_cast<unsigned long long>(id.lo >> 48), static_cast<unsigned long long>(id.lo & 0xffffffffffffull));
  return out;
}

std::optional<Id128> parse_id(std::string_view text) {
  Id128 id;
  int digits = 0;
  for (const char c : text) {
    if (c == '-') continue;
    int value = 0;
    if (c >= '0' && c <= '9') {
      value = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      value = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      value = c - 'A' + 10;
    } else {
      return std::nullopt;
    }
    std::uint64_t& half = digits < 16 ? id.hi : id.lo;
    half = half << 4 | static_cast<std::uint64_t>(value);
    if (++digits > 32) return std::nullopt;
  }
  if (digits != 32) return std::nullopt;
  return id;
}

}  // namespace annal::engine
