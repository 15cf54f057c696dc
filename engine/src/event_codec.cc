#include "event_codec.h"

#include <cstring>
#include <string>

namespace annal::engine {
namespace {

template <class T>
void put(std::byte* at, T value) noexcept {
  std::memcpy(at, &value, sizeof(T));
}
template <class T>
T get(const std::byte* at) noexcept {
  T value;
  std::memcpy(&value, at, sizeof(T));
  return value;
}

std::size_t put_id(std::byte* at, const Id128& id) noexcept {
  put(at, id.hi);
  put(at + 8, id.lo);
  return 16;
}

Status corrupt(std::uint64_t sequence, const std::string& what) {
  return Status(ErrorCode::corruption, "journal record " + std::to_string(sequence) + ": " + what);
}

}  // namespace

std::size_t encode_metadata(const Metadata& metadata, std::span<std::byte, kMetadataBytesMax> out) noexcept {
  std::uint8_t flags = 0;
  std::size_t used = kMetadataBytesMin;
  for (const auto& [id, flag] : {std::pair{&metadata.event_id, kHasEventId},
                                 std::pair{&metadata.correlation_id, kHasCorrelationId},
                                 std::pair{&metadata.causation_id, kHasCausationId}}) {
    if (id->empty()) continue;
    flags = static_cast<std::uint8_t>(flags | flag);
    used += put_id(out.data() + used, *id);
  }
  out[0] = std::byte{flags};
  put(out.data() + 1, metadata.prev);
  return used;
}

Result<DecodedEvent> decode_event(std::span<const std::byte> stored, std::uint64_t sequence) {
  if (stored.size() < kMetadataBytesMin) return corrupt(sequence, "event payload shorter than its metadata");
  const auto flags = static_cast<std::uint8_t>(stored[0]);
  if ((flags & ~(kHasEventId | kHasCorrelationId | kHasCausationId)) != 0) {
    return corrupt(sequence, "unknown metadata flags " + std::to_string(flags));
  }
  DecodedEvent out;
  out.metadata.prev = get<std::uint64_t>(stored.data() + 1);
  if (out.metadata.prev >= sequence) {
    return corrupt(sequence, "points back to sequence " + std::to_string(out.metadata.prev));
  }
  std::size_t used = kMetadataBytesMin;
  for (const auto& [id, flag] : {std::pair{&out.metadata.event_id, kHasEventId},
                                 std::pair{&out.metadata.correlation_id, kHasCorrelationId},
                                 std::pair{&out.metadata.causation_id, kHasCausationId}}) {
    if ((flags & flag) == 0) continue;
    if (stored.size() < used + 16) return corrupt(sequence, "event payload cut inside its metadata");
    id->hi = get<std::uint64_t>(stored.data() + used);
    id->lo = get<std::uint64_t>(stored.data() + used + 8);
    used += 16;
  }
  out.payload = stored.subspan(used);
  return out;
}

std::size_t encode_name_prefix(std::uint16_t type, std::uint64_t id,
                               std::span<std::byte, kNamePrefixBytesMax> out) noexcept {
  ANNAL_ASSERT(type == kTypeStreamNamed || type == kTypeEventTypeNamed);
  if (type == kTypeStreamNamed) {
    put(out.data(), id);
    return 8;
  }
  ANNAL_ASSERT(id <= UINT16_MAX);
  put(out.data(), static_cast<std::uint16_t>(id));
  return 2;
}

Result<NameDefinition> decode_name(std::uint16_t type, std::span<const std::byte> stored,
                                   std::uint64_t sequence) {
  if (type != kTypeStreamNamed && type != kTypeEventTypeNamed) {
    return corrupt(sequence, "unknown system record type " + std::to_string(type));
  }
  const std::size_t id_bytes = type == kTypeStreamNamed ? 8 : 2;
  if (stored.size() <= id_bytes || stored.size() > id_bytes + kNameBytesMax) {
    return corrupt(sequence, "name record of " + std::to_string(stored.size()) + " bytes");
  }
  NameDefinition out;
  out.id = type == kTypeStreamNamed ? get<std::uint64_t>(stored.data()) : get<std::uint16_t>(stored.data());
  out.name = std::string_view(reinterpret_cast<const char*>(stored.data() + id_bytes), stored.size() - id_bytes);
  return out;
}

}  // namespace annal::engine
