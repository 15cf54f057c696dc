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
// no lock. apply() may append (a process manager reacting to events: docs/engine.md says how to
// keep its follow-ups exactly once across crashes); what it throws stops the projection
// (ProjectionStatus::error). Events come in batches (what was ready at once); end_of_batch() follows the last of each,
// the place to flush buffered work. A batch also ends before a query runs, before a snapshot is
// taken and at close, so that neither sees a state without what apply() buffered. Queries run on that same thread between events (so they need
// none either), once the projection has applied the sequence asked for: pass an append's
// last_sequence to read your own writes. A query that cannot be answered in time returns
// ErrorCode::timed_out.
//
// Gating. A `durable` projection (the default) sees an event once the journal holds it durably, so
// it never shows what a crash could take back. An `eager` one sees it as soon as it is appended,
// beside the journal's writer, for lower latency; its state may run ahead of the durable log, and
// after a crash it is rebuilt to the durable point (its snapshots past that point are discarded).
// It starts (and resumes after falling behind) from the journal, which shows only durable events,
// and joins the ring at the next flush: from then on it runs ahead.
//
// A projection that falls more than Options::subscriber_lag_max events behind leaves the ring (so
// it stops holding appends back), catches up from the journal and rejoins: no gap, no duplicate.
//
// Snapshots: a projection with schema() != 0 is snapshotted every snapshot_every_events events
// and/or snapshot_every, at the sequence it has applied; snapshot() runs on its thread, the file is
// written by another. At add_projection (and so at every open) the newest intact snapshot of the
// same schema at or below the durable sequence is restored and only the events after it are
// replayed; with none, everything is. restore() must leave the projection as it was on failure (it
// is then rebuilt from the start).
//
// State kept elsewhere. A projection whose state lives in a store of its own, written together
// with the last sequence applied (a database table and its checkpoint row in one transaction:
// connectors/postgres), answers resume_after() with that sequence, read back from the store: the
// engine then restores no snapshot and replays from the next event. Exactly once follows if every
// write of the state carries its checkpoint. Such a projection is durable-gated: its store cannot
// be rolled back, as snapshots are, if a crash takes back events it saw.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
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
  // After the last event of a batch, `applied` being its sequence; or after the engine's own
  // records with no event after them (an erasure last in the log), `applied` the last of them.
  virtual void end_of_batch(std::uint64_t applied) { (void)applied; }
  // For state kept outside the engine: the last sequence the state holds (0: none yet), called
  // once, at add_projection, whose error it is if it fails. nullopt (the default): the engine
  // keeps the state, by snapshots.
  [[nodiscard]] virtual Result<std::optional<std::uint64_t>> resume_after() { return std::optional<std::uint64_t>{}; }
  // With resume_after(): a sequence the store's log must hold for that resume point to be this
  // store's (0, the default: none). An exporter that replays the last event it exported, to check
  // the store's event there against its copy, names that sequence here: a store ending before it
  // (a backup restored) is then refused at add_projection, not taken for caught up. Asked once,
  // right after resume_after().
  [[nodiscard]] virtual std::uint64_t resume_requires() const { return 0; }
  // What the projection is working through without having stopped (a database it cannot reach
  // and retries), ok when nothing; ProjectionStatus::retrying shows it. Called from any thread,
  // so it must be thread-safe, and must not block.
  [[nodiscard]] virtual Status health() const { return {}; }
  // Called once, from the thread that closes the engine, before it waits for the projection's
  // thread: one that may wait on something outside (a database that is down, retried with backoff)
  // stops waiting and returns soon. What it has not written is replayed at the next open, from its
  // checkpoint or snapshot. Must not block.
  virtual void stop_requested() {}
  // Stream `stream_id` is being erased (Engine::erase_stream), for certain: its erasure record, at
  // sequence `erased_at`, is durable, and its name and key go next. Called once per erasure, from
  // the erasing thread under the engine's sequencing lock, before erase_stream returns; a
  // projection added later in the same run of the engine is told of the erasures made so far as
  // add_projection begins, before resume_after(). apply() may still be given events of the stream
  // (all below `erased_at`) with their payloads, read before the key's end: a projection that
  // passes events on (an exporter) drops those, and what of the stream it holds and has not passed
  // on yet. Must be thread-safe, must not block, and must not call the engine: appends wait
  // meanwhile, so it must not take a lock that apply() holds while it appends either.
  virtual void stream_erased(std::uint64_t stream_id, std::uint64_t erased_at) {
    (void)stream_id;
    (void)erased_at;
  }
  // A digest of the state, equal for equal states (Engine::check_projection compares the live
  // projection's with a rebuilt one's). By default a CRC-64 of snapshot(), which must then be
  // deterministic (a std::map, not an unordered_map, or sorted); nullopt for schema() 0.
  [[nodiscard]] virtual std::optional<std::uint64_t> digest() const;
};

enum class Gating { durable, eager };

struct ProjectionOptions {
  std::uint64_t snapshot_every_events = 100'000;        // 0: not by count
  std::chrono::milliseconds snapshot_every{60'000};      // 0: not by time
  std::size_t snapshots_kept = 3;
  Gating gating = Gating::durable;
  // After an erasure (Engine::erase_stream) the state may hold what the projection made of the
  // erased stream. Given, the engine rebuilds it at once: a fresh instance made by this replays
  // the log from its start (the erased events as erased) and takes the projection's place under
  // its name; the old instance stops (a query already waiting on it may fail: ask again). Not
  // given, the projection keeps its state in memory until the engine is reopened, writing no
  // snapshot meanwhile, and the next open rebuilds it from the log. (A projection that keeps its
  // state elsewhere, resume_after, resumes from there: clearing that store is its own.)
  std::function<std::shared_ptr<Projection>()> rebuild_after_erasure = {};
};

// A point in the log to build a projection's state at (Engine::build_as_of): a global sequence, or
// a wall-clock time, meaning the last event stamped at or before it. Stamps are found by binary
// search, so a time is exact when stamps rise with sequences (the engine's own always do; a
// timestamp_ns set by the application may not).
struct AsOf {
  [[nodiscard]] static AsOf sequence(std::uint64_t sequence) { return {sequence, false}; }
  [[nodiscard]] static AsOf time_ns(std::uint64_t unix_ns) { return {unix_ns, true}; }
  std::uint64_t value = 0;
  bool is_time = false;
};

// Engine::check_projection's finding: the live projection's digest and a rebuild's at one sequence.
struct ConsistencyReport {
  std::uint64_t sequence = 0;  // both states include exactly the events up to here
  std::uint64_t live_digest = 0;
  std::uint64_t rebuilt_digest = 0;
  [[nodiscard]] bool consistent() const noexcept { return live_digest == rebuilt_digest; }
};

// What a projection reports about itself (Engine::projection_status).
struct ProjectionStatus {
  std::uint64_t applied = 0;          // the last sequence applied (0: none)
  std::uint64_t restored_from = 0;    // the snapshot's sequence it started from (0: the beginning)
  std::uint64_t replayed = 0;         // events applied since it was added
  std::uint64_t snapshots_written = 0;
  std::uint64_t snapshot_write_ns_total = 0;  // writing them (file, fdatasync, rename), all told
  std::uint64_t snapshot_write_ns_last = 0;
  std::uint64_t detached = 0;         // times it fell behind, left the ring and caught up from the journal
  bool live = false;                  // reading the ring now (not the journal)
  Status error;                       // why it stopped, if it did
  Status retrying;                    // what it is retrying without having stopped (Projection::health)
};

}  // namespace annal::engine
