#include "event_codec.h"

#include <string>

#include "annal/base/little_endian.h"

namespace annal::engine {
namespace {

std::size_t put_id(std::span<std::byte> out, std::size_t at, const Id128& id) noexcept {
  store_le(out, at, id.hi);
  store_le(out, at + 8, id.lo);
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
    used += put_id(out, used, *id);
  }
  out[0] = std::byte{flags};
  store_le(out, 1, metadata.prev);
  return used;
}

Result<DecodedEvent> decode_event(std::span<const std::byte> stored, std::uint64_t sequence, bool erased) {
  if (stored.size() < kMetadataBytesMin) return corrupt(sequence, "event payload shorter than its metadata");
  const auto flags = static_cast<std::uint8_t>(stored[0]);
  if ((flags & ~(kHasEventId | kHasCorrelationId | kHasCausationId)) != 0) {
    return corrupt(sequence, "unknown metadata flags " + std::to_string(flags));
  }
  DecodedEvent out;
  out.metadata.prev = load_le<std::uint64_t>(stored, 1);
  if (out.metadata.prev >= sequence) {
    return corrupt(sequence, "points back to sequence " + std::to_string(out.metadata.prev));
  }
  if (erased) {
    if (stored.size() != kMetadataBytesMin) return corrupt(sequence, "erased event's clear part is not flags and prev");
    return out;
  }
  std::size_t used = kMetadataBytesMin;
  for (const auto& [id, flag] : {std::pair{&out.metadata.event_id, kHasEventId},
                                 std::pair{&out.metadata.correlation_id, kHasCorrelationId},
                                 std::pair{&out.metadata.causation_id, kHasCausationId}}) {
    if ((flags & flag) == 0) continue;
    if (stored.size() < used + 16) return corrupt(sequence, "event payload cut inside its metadata");
    id->hi = load_le<std::uint64_t>(stored, used);
    id->lo = load_le<std::uint64_t>(stored, used + 8);
    used += 16;
  }
  out.payload = stored.subspan(used);
  return out;
}

std::size_t encode_name_prefix(std::uint16_t type, std::uint64_t id,
                               std::span<std::byte, kNamePrefixBytesMax> out) noexcept {
  ANNAL_ASSERT(type == kTypeStreamNamed || type == kTypeEventTypeNamed);
  if (type == kTypeStreamNamed) {
    store_le(out, 0, id);
    return 8;
  }
  ANNAL_ASSERT(id <= UINT16_MAX);
  store_le(out, 0, static_cast<std::uint16_t>(id));
  return 2;
}

Result<NameDefinition> decode_name(std::uint16_t type, std::span<const std::byte> stored,
                                   std::uint64_t sequence, bool erased) {
  if (type != kTypeStreamNamed && type != kTypeEventTypeNamed) {
    return corrupt(sequence, "unknown system record type " + std::to_string(type));
  }
  if (erased) {
    if (type != kTypeStreamNamed || stored.size() != 8) return corrupt(sequence, "erased name record is not a stream id");
    return NameDefinition{.id = load_le<std::uint64_t>(stored, 0), .name = {}};
  }
  const std::size_t id_bytes = type == kTypeStreamNamed ? 8 : 2;
  if (stored.size() <= id_bytes || stored.size() > id_bytes + kNameBytesMax) {
    return corrupt(sequence, "name record of " + std::to_string(stored.size()) + " bytes");
  }
  NameDefinition out;
  out.id = type == kTypeStreamNamed ? load_le<std::uint64_t>(stored, 0) : load_le<std::uint16_t>(stored, 0);
  out.name = std::string_view(reinterpret_cast<const char*>(stored.data() + id_bytes), stored.size() - id_bytes);
  return out;
}

void encode_erasure(std::uint64_t stream_id, std::span<std::byte, kErasureBytes> out) noexcept {
  store_le(out, 0, stream_id);
}

Result<std::uint64_t> decode_erasure(std::span<const std::byte> stored, std::uint64_t sequence) {
  if (stored.size() != kErasureBytes) return corrupt(sequence, "erasure record of " + std::to_string(stored.size()) + " bytes");
  const auto id = load_le<std::uint64_t>(stored, 0);
  if (id == kSystemStream) return corrupt(sequence, "erasure of the system stream");
  return id;
}

}  // namespace annal::engine
