// Projections: read models the engine keeps up to date from the log, each on a thread of its own,
// and queries against them with read-your-writes consistency.
//
//   struct Orders : annal::engine::Projection {
//     std::map<std::string, std::string> status;                   // order -> last event type
//     void apply(const EventView& e) override { status[std::string(e.header.stream_name)] = e.header.type; }
//     std::uint32_t schema() const override { return 1; }          // 0: never snapshotted
//     std::vector<std::byte> snapshot() const override { ... }
//     Status restore(std::span<const std::byte> state) override { ... }
//   };
//   engine->add_projection("orders", std::make_shared<Orders>(), {});
//   auto receipt = engine->append("order-123456", ...);
//   auto status = query<Orders>(*engine, "orders", receipt.value().last_sequence,
//                               [](const Orders& o) { return o.status.at("order-123456"); }, 1s);
//
// A projection sees every durable event once, in global order, from its thread only; apply() needs
// no lock. Queries run on that same thread between events (so they need none either), once the
// projection has applied the sequence asked for: pass an append's last_sequence to read your own
// writes. A query that cannot be answered in time returns ErrorCode::timed_out.
//
// Snapshots: a projection with schema() != 0 is snapshotted every snapshot_every_events events
// and/or snapshot_every, at the sequence it has applied; snapshot() runs on its thread, the file is
// written by another. At add_projection (and so at every open) the newest intact snapshot of the
// same schema at or below the durable sequence is restored and only the events after it are
// replayed; with none, everything is. restore() must leave the projection as it was on failure (it
// is then rebuilt from the start).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <type_traits>
#include <vector>

#include "annal/base/status.h"
#include "annal/engine/types.h"

namespace annal::engine {

class Projection {
 public:
  virtual ~Projection() = default;
  virtual void apply(const EventView& event) = 0;
  // The state's schema version; 0 (the default) means no snapshots.
  [[nodiscard]] virtual std::uint32_t schema() const { return 0; }
  [[nodiscard]] virtual std::vector<std::byte> snapshot() const { return {}; }
  virtual Status restore(std::span<const std::byte> state) {
    (void)state;
    return Status(ErrorCode::invalid_argument, "this projection has no snapshots");
  }
};

struct ProjectionOptions {
  std::uint64_t snapshot_every_events = 100'000;        // 0: not by count
  std::chrono::milliseconds snapshot_every{60'000};      // 0: not by time
  std::size_t snapshots_kept = 3;
};

// What a projection reports about itself (Engine::projection_status).
struct ProjectionStatus {
  std::uint64_t applied = 0;          // the last sequence applied (0: none)
  std::uint64_t restored_from = 0;    // the snapshot's sequence it started from (0: the beginning)
  std::uint64_t replayed = 0;         // events applied since it was added
  std::uint64_t snapshots_written = 0;
  Status error;                       // why it stopped, if it did
};

}  // namespace annal::engine
