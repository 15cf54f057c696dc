#include "annal/server/event_json.h"

#include <algorithm>
#include <cstdio>
#include <vector>

namespace annal::server {
namespace {

// The payload as one line of JSON, if it is JSON.
std::optional<std::string> as_json(std::span<const std::byte> payload) {
  if (payload.empty()) return std::nullopt;
  thread_local simdjson::dom::parser parser;
  const simdjson::padded_string padded(reinterpret_cast<const char*>(payload.data()), payload.size());
  simdjson::dom::element element;
  if (parser.parse(padded).get(element) != simdjson::SUCCESS) return std::nullopt;
  return simdjson::minify(element);
}

std::string stream_of(const engine::EventHeader& header) {
  return header.stream_name.empty() ? std::to_string(header.stream_id) : std::string(header.stream_name);
}

}  // namespace

std::string format_event(const engine::EventView& event, bool json) {
  const engine::EventHeader& h = event.header;
  const std::optional<std::string> data = as_json(event.payload);
  if (!json) {
    return std::to_string(h.sequence) + " " + stream_of(h) + "@" + std::to_string(h.version) + " " + std::string(h.type) +
           " " + (h.erased ? "erased" : data ? *data : "base64:" + base64(event.payload));
  }
  std::string out = "{\"sequence\":" + std::to_string(h.sequence) + ",\"stream\":" + json_string(stream_of(h)) +
                    ",\"stream_id\":" + std::to_string(h.stream_id) + ",\"version\":" + std::to_string(h.version) +
                    ",\"type\":" + json_string(h.type) + ",\"timestamp_ns\":" + std::to_string(h.timestamp_ns);
  if (!h.event_id.empty()) out += ",\"id\":\"" + engine::format_id(h.event_id) + "\"";
  if (!h.correlation_id.empty()) out += ",\"correlation_id\":\"" + engine::format_id(h.correlation_id) + "\"";
  if (!h.causation_id.empty()) out += ",\"causation_id\":\"" + engine::format_id(h.causation_id) + "\"";
  if (h.erased) return out + ",\"erased\":true}";  // its data and ids went with its key
  out += data ? ",\"data\":" + *data : ",\"data_base64\":\"" + base64(event.payload) + "\"";
  return out + "}";
}

std::string json_string(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char escaped[8];
          std::snprintf(escaped, sizeof(escaped), "\\u%04x", static_cast<unsigned>(c));
          out += escaped;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

std::string base64(std::span<const std::byte> bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (std::size_t i = 0; i < bytes.size(); i += 3) {
    const std::size_t n = std::min<std::size_t>(3, bytes.size() - i);
    std::uint32_t word = 0;
    for (std::size_t j = 0; j < 3; ++j) word = word << 8 | (j < n ? std::to_integer<std::uint32_t>(bytes[i + j]) : 0u);
    for (std::size_t j = 0; j < 4; ++j) out += j <= n ? kAlphabet[(word >> (18 - 6 * j)) & 63] : '=';
  }
  return out;
}

Result<JsonEvent> parse_event(const simdjson::dom::object& object, StreamField stream) {
  JsonEvent line;
  bool has_data = false;
  std::vector<std::string_view> keys;  // JSON allows a key twice, and then one of the values is lost
  for (const auto field : object) {
    const std::string_view key = field.key;
    if (std::find(keys.begin(), keys.end(), key) != keys.end()) {
      return Status(ErrorCode::invalid_argument, "\"" + std::string(key) + "\" appears twice");
    }
    keys.push_back(key);
    std::string_view text_value;
    if (key == "stream" && stream == StreamField::refused) {
      return Status(ErrorCode::invalid_argument, "unknown field \"stream\": the stream is the path's (type, data, id)");
    }
    if (key == "expected_version" && stream == StreamField::refused) {
      return Status(ErrorCode::invalid_argument,
                    "unknown field \"expected_version\": give it as ?expected_version= (type, data, id)");
    }
    if (key == "stream" || key == "type" || key == "id") {
      if (field.value.get_string().get(text_value) != simdjson::SUCCESS) {
        return Status(ErrorCode::invalid_argument, "\"" + std::string(key) + "\" must be a string");
      }
      if (key == "stream") line.stream = text_value;
      if (key == "type") line.type = text_value;
      if (key == "id") {
        const auto id = engine::parse_id(text_value);
        if (!id) return Status(ErrorCode::invalid_argument, "\"id\" must be a UUID (32 hex digits), not " + std::string(text_value));
        line.id = *id;
      }
    } else if (key == "data") {
      line.data = simdjson::minify(field.value);
      has_data = true;
    } else if (key == "expected_version") {
      std::int64_t version = 0;
      if (field.value.get_int64().get(version) != simdjson::SUCCESS || version < -1) {
        return Status(ErrorCode::invalid_argument, "\"expected_version\" must be an integer from -1 (no stream yet) up");
      }
      line.expected = version == -1 ? engine::ExpectedVersion::no_stream()
                                    : engine::ExpectedVersion::exactly(static_cast<std::uint64_t>(version));
    } else {
      return Status(ErrorCode::invalid_argument, "unknown field \"" + std::string(key) +
                                                     "\" (stream, type, data, id, expected_version)");
    }
  }
  if ((stream == StreamField::required && line.stream.empty()) || line.type.empty() || !has_data) {
    return Status(ErrorCode::invalid_argument, stream == StreamField::required
                                                   ? "\"stream\", \"type\" and \"data\" are required"
                                                   : "\"type\" and \"data\" are required");
  }
  return line;
}

}  // namespace annal::server
