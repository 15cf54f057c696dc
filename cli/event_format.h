// One event as a line of text or of JSON, for dump and tail. The payload is shown as JSON where it
// is JSON (checked with simdjson), else base64.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "annal/engine/types.h"

namespace annal::cli {

[[nodiscard]] std::string format_event(const engine::EventView& event, bool json);

// "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", and back (32 hex digits, dashes anywhere; nullopt if not).
[[nodiscard]] std::string format_id(const engine::Id128& id);
[[nodiscard]] std::optional<engine::Id128> parse_id(std::string_view text);

}  // namespace annal::cli
