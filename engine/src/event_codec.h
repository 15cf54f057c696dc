// How the engine stores events in journal records (the journal's record format is in
// journal/format.h; this is what the engine puts in a record's fields and payload).
//
//  user event: stream_id != 0, type >= kFirstUserType, stream_version = its version
//  payload:
//    +0   flags   u8    bit 0: event id present, bit 1: correlation id, bit 2: causation id
//    +1   prev    u64   sequence of the stream's previous event; 0 for its first
//    +9   ids           16 B each (hi u64, lo u64), only those the flags say, in that order
//    ...  the application's payload
//
//  system record: stream_id 0 (kSystemStream), written in the same atomic batch as, and before,
//  the first event that uses a new name, so a name survives a crash exactly when its events do.
//    type 1 stream named:     payload = id u64, then the name's bytes; stream_version = the same
//                             id, in clear: sealed, the record is under that stream's key, so
//                             that erasing the stream erases its name (store_cipher.h)
//    type 2 event type named: payload = id u16, then the name's bytes
//    type 3 stream erased:    payload = the erased stream's id u64 (Engine::erase_stream); written
//                             once its last event is in the journal, before its key is destroyed.
//                             stream_version 0: sealed, it is under the system stream's key,
//                             which is never destroyed
//
//  A record whose stream was erased keeps in clear only what store_cipher.h says: an event's flags
//  and prev, a name record's id. decode_event and decode_name take that part when told `erased`.
//
// prev is what lets a stream be read without an index on disk: from the stream's last event (the
// in-memory index keeps one per stream) each event points to the one before. 9 bytes per event;
// ids cost nothing when absent. All integers little-endian, like the journal.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "annal/base/status.h"
#include "annal/engine/types.h"
#include "annal/journal/format.h"

namespace annal::engine {

inline constexpr std::uint64_t kSystemStream = 0;
inline constexpr std::uint16_t kTypeStreamNamed = 1;
inline constexpr std::uint16_t kTypeEventTypeNamed = 2;
inline constexpr std::uint16_t kTypeStreamErased = 3;
// Types 1..15 are the engine's; the application's names map to 16..65535.
inline constexpr std::uint16_t kFirstUserType = 16;

inline constexpr std::uint8_t kHasEventId = 1u << 0;
inline constexpr std::uint8_t kHasCorrelationId = 1u << 1;
inline constexpr std::uint8_t kHasCausationId = 1u << 2;
inline constexpr std::size_t kMetadataBytesMin = 1 + 8;
inline constexpr std::size_t kMetadataBytesMax = kMetadataBytesMin + 3 * 16;

struct Metadata {
  std::uint64_t prev = 0;
  Id128 event_id{};
  Id128 correlation_id{};
  Id128 causation_id{};
};

// Writes the metadata into `out`; returns the bytes used.
std::size_t encode_metadata(const Metadata& metadata, std::span<std::byte, kMetadataBytesMax> out) noexcept;

struct DecodedEvent {
  Metadata metadata;
  std::span<const std::byte> payload;  // the application's, inside the input
};
// `where` names the record for the error (journal sequence). `erased`: `stored` is the record's
// clear part only (flags and prev): the ids stay zero, the payload empty.
Result<DecodedEvent> decode_event(std::span<const std::byte> stored, std::uint64_t sequence, bool erased = false);

// A system record's prefix: the id, 8 bytes for a stream, 2 for a type; the name is the payload.
inline constexpr std::size_t kNamePrefixBytesMax = 8;
std::size_t encode_name_prefix(std::uint16_t type, std::uint64_t id,
                               std::span<std::byte, kNamePrefixBytesMax> out) noexcept;
struct NameDefinition {
  std::uint64_t id = 0;
  std::string_view name;  // inside the input
};
// `erased`: a stream name record of an erased stream, `stored` its id only: the name is empty.
Result<NameDefinition> decode_name(std::uint16_t type, std::span<const std::byte> stored,
                                   std::uint64_t sequence, bool erased = false);

// A type 3 record: the erased stream's id.
inline constexpr std::size_t kErasureBytes = 8;
void encode_erasure(std::uint64_t stream_id, std::span<std::byte, kErasureBytes> out) noexcept;
Result<std::uint64_t> decode_erasure(std::span<const std::byte> stored, std::uint64_t sequence);

}  // namespace annal::engine
