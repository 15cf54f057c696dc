// A list of fields folded to 64 bits, each with its length first so that no two lists give the
// same text: what an exporter keeps of a record it read back, to tell whether the store's event of
// that sequence is the same event. Not a cryptographic hash: it tells a store's events apart from
// another timeline's, not from an adversary's; and it is the same only within one build of annal
// (std::hash), which is all the comparison asks, as both sides are computed in one process.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>

namespace annal {

inline std::uint64_t fingerprint(std::initializer_list<std::string_view> fields) {
  std::string text;
  for (const std::string_view field : fields) {
    text += std::to_string(field.size());
    text += ':';
    text += field;
  }
  return std::hash<std::string_view>{}(text);
}

}  // namespace annal
