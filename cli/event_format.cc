#include "event_format.h"

#include <simdjson.h>

#include <cstdio>

#include "output.h"

namespace annal::cli {
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

std::string format_id(const engine::Id128& id) {
  char out[40];
  std::snprintf(out, sizeof(out), "%08llx-%04llx-%04llx-%04llx-%012llx", static_cast<unsigned long long>(id.hi >> 32),
                static_cast<unsigned long long>((id.hi >> 16) & 0xffff), static_cast<unsigned long long>(id.hi & 0xffff),
                static_cast<unsigned long long>(id.lo >> 48), static_cast<unsigned long long>(id.lo & 0xffffffffffffull));
  return out;
}

std::optional<engine::Id128> parse_id(std::string_view text) {
  engine::Id128 id;
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

std::string format_event(const engine::EventView& event, bool json) {
  const engine::EventHeader& h = event.header;
  const std::optional<std::string> data = as_json(event.payload);
  if (!json) {
    return std::to_string(h.sequence) + " " + stream_of(h) + "@" + std::to_string(h.version) + " " + std::string(h.type) +
           " " + (data ? *data : "base64:" + base64(event.payload));
  }
  std::string out = "{\"sequence\":" + std::to_string(h.sequence) + ",\"stream\":" + json_string(stream_of(h)) +
                    ",\"stream_id\":" + std::to_string(h.stream_id) + ",\"version\":" + std::to_string(h.version) +
                    ",\"type\":" + json_string(h.type) + ",\"timestamp_ns\":" + std::to_string(h.timestamp_ns);
  if (!h.event_id.empty()) out += ",\"id\":\"" + format_id(h.event_id) + "\"";
  if (!h.correlation_id.empty()) out += ",\"correlation_id\":\"" + format_id(h.correlation_id) + "\"";
  if (!h.causation_id.empty()) out += ",\"causation_id\":\"" + format_id(h.causation_id) + "\"";
  out += data ? ",\"data\":" + *data : ",\"data_base64\":\"" + base64(event.payload) + "\"";
  return out + "}";
}

}  // namespace annal::cli
