// Events as JSON: the one form the annal tool (dump, tail, import) and the HTTP server read and
// write. A payload is shown as JSON where it is JSON (checked with simdjson), else as base64.
#pragma once

#include <simdjson.h>

#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "annal/base/status.h"
#include "annal/engine/types.h"

namespace annal::server {

// One event as a line: text ("SEQ stream@version Type data") or a JSON object.
[[nodiscard]] std::string format_event(const engine::EventView& event, bool json);

// A JSON string literal of `text`, quotes included.
[[nodiscard]] std::string json_string(std::string_view text);
[[nodiscard]] std::string base64(std::span<const std::byte> bytes);

// An event as JSON gives it: {"stream", "type", "data", "id"?, "expected_version"?}.
struct JsonEvent {
  std::string stream;
  std::string type;
  std::string data;  // minified JSON: the payload
  engine::Id128 id;
  engine::ExpectedVersion expected = engine::ExpectedVersion::any();
};

enum class StreamField {
  required,  // annal import: each line names its stream
  refused,   // the HTTP API: the stream is in the path, and so is the expected version
};

// Checks and takes apart one event object; the error names the field and what is wrong with it.
// A key given twice is an error (JSON would silently keep one of the values).
[[nodiscard]] Result<JsonEvent> parse_event(const simdjson::dom::object& object, StreamField stream);

}  // namespace annal::server
