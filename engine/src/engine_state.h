// The engine's own state as of a journal sequence, for its state snapshots: stream and type names,
// the stream index and the idempotency window, everything open() would otherwise rebuild by
// reading the whole journal. Stored with the projections' snapshot files (projections/
// snapshot_format.h) under the reserved projection name "_engine".
//
//   state := u32 stream_names, then each: u16 length, bytes     (ids kNamedStreamBit | 0, 1, ...)
//            u32 type_names, then each: u16 length, bytes       (ids kFirstUserType + 0, 1, ...)
//            u64 streams, then each: u64 id, u64 last_version, u64 last_sequence
//            u64 window ids (oldest first), then each: u64 hi, u64 lo, u64 first_sequence,
//                u64 last_sequence, u64 stream_id, u64 first_version, u64 last_version, u32 index
//            u64 window capacity: the idempotency_window it was kept under (absent in snapshots
//                of earlier builds). An open with a larger window cannot take a full one as it
//                is: ids it would have kept were dropped.
//
// Little-endian. The file's checksums cover it; decode checks lengths and the catalog's order.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "annal/base/status.h"
#include "catalog.h"
#include "idempotency_window.h"
#include "stream_index.h"

namespace annal::engine {

inline constexpr char kEngineStateName[] = "_engine";
inline constexpr std::uint32_t kEngineStateSchema = 1;

// Under the sequencing lock: the state must be that of one batch boundary.
std::vector<std::byte> encode_engine_state(const Catalog& catalog, const StreamIndex& index,
                                           const IdempotencyWindow& window);
// What decode found of the window: the capacity it was kept under when written (nullopt: not
// recorded) and how many ids it held.
struct StoredWindow {
  std::optional<std::uint64_t> capacity;
  std::uint64_t ids = 0;

  // Whether it holds every id a window of `capacity` would: it never filled, or it was as large.
  [[nodiscard]] bool complete_for(std::uint64_t wanted) const noexcept {
    return !capacity || *capacity >= wanted || ids < *capacity;
  }
};

// Into an empty catalog, index and window.
Result<StoredWindow> decode_engine_state(std::span<const std::byte> state, Catalog& catalog, StreamIndex& index,
                                         IdempotencyWindow& window);

}  // namespace annal::engine
