// Engine: annal's event store, embedded. Streams of events with optimistic concurrency,
// idempotent appends, durable receipts, stream reads and gapless subscriptions.
//
//   auto engine = annal::engine::Engine::open("/var/lib/orders", {});
//   const EventData created{.type = "OrderCreated", .payload = bytes, .event_id = id};
//   auto receipt = engine.value()->append("order-123456", ExpectedVersion::no_stream(), {&created, 1});
//   if (receipt.code() == ErrorCode::conflict) ... receipt.current_version() ...
//   Status s = engine.value()->wait_durable(receipt.value(), Engine::Clock::now() + 1s);
//   auto history = engine.value()->read_stream("order-123456", {});
//
// How an append flows. The calling thread validates the events, then takes the sequencing lock:
// checks the expected version against the stream index (in memory, one entry per stream), looks
// for a repeated event id, hands the events to the journal (which copies them into its staging
// buffer and assigns global sequences), publishes them into the ring for live subscribers,
// updates the index, and returns the receipt. The journal's writer thread makes them durable in
// group commits; the caller decides whether to wait for that. docs/engine.md argues why this is
// race-free and gives the measurements that chose it over a sequencer thread (Options::sequencing).
//
// Consistency. Every event is readable (read_stream, read_all, subscriptions) once it is durable,
// and never before: nothing a crash could take back is ever shown. Appends see every earlier
// append at once (version checks run against what was sequenced, durable or not).
//
// Errors. Operating errors come back as values: conflict (wrong expected version), invalid_argument
// (a too-large event, a bad name), no_space, failed (the journal hit an I/O error and stopped:
// reopen). A second open of the directory fails with locked.
//
// Threads: every method is thread-safe. The engine owns the journal's writer and segment threads
// and one notifier thread (durability callbacks, and the durable gate of live subscriptions).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "annal/base/status.h"
#include "annal/crypto/key.h"
#include "annal/engine/projection.h"
#include "annal/engine/subscription.h"
#include "annal/engine/types.h"
#include "annal/journal/journal.h"
#include "annal/snapshots/snapshot_store.h"

namespace annal::engine {

// How threads wait for the ring (live subscribers for events, appenders for slots): see
// ringbuf/wait_strategy.h. blocking costs no CPU while idle; sleeping and yielding trade CPU for
// latency and suit machines with a core to spare.
enum class WaitStrategy { blocking, sleeping, yielding };

// Who runs an append's version check and hand-off to the journal (docs/engine.md measures both).
enum class Sequencing {
  // The appending thread, under the engine's sequencing lock: no hand-off, no context switch.
  caller_lock,
  // One sequencer thread, fed by the appending threads through a lock-free queue; each caller
  // sleeps until its append is sequenced (LMAX's business-logic processor).
  sequencer_thread,
};

struct Options {
  // The journal: durability mode, segment size, I/O backend... (journal.h). record_bytes_max and
  // index_interval_bytes are set by the engine from the options below.
  journal::Options journal{};
  WaitStrategy wait_strategy = WaitStrategy::blocking;
  Sequencing sequencing = Sequencing::caller_lock;
  // Live-subscriber ring: slots (a power of two) and the payload bytes each holds without
  // allocating (a larger event grows its slot once, from the engine's heap, and the slot keeps
  // that size). About 20 MB by default for events up to 256 B: room for projections gated on
  // durability to stay in the ring through a group commit at millions of events per second
  // (docs/engine.md).
  std::size_t ring_capacity = 1u << 16;
  std::size_t ring_slot_bytes = 256;
  // Largest payload of one event. An append of several events must also fit in
  // journal.commit_bytes_max (1 MiB by default).
  std::size_t event_bytes_max = 256u << 10;
  std::size_t events_per_append_max = 1024;
  // How many of the most recent event ids are remembered to recognise repeated appends (0: none).
  // Each costs about 100 bytes; rebuilt from the journal at open.
  std::size_t idempotency_window = 1u << 16;
  // Journal bytes per sparse-index entry (16 bytes each). A stream read jumps from event to event
  // and reads about this much per jump: smaller is faster for sparse streams, costs more memory.
  std::uint64_t index_interval_bytes = 4096;
  // Subscriptions that follow the ring (beyond this many, they tail the journal instead). At most
  // 16, the ring's gating limit.
  std::size_t live_subscriptions_max = 8;
  // A live subscription (or projection) this many events behind the newest appended leaves the
  // ring at its next read, catches up from the journal and rejoins, so appends wait for a slow
  // reader at most while it is inside one step. 0: half the ring. Below ring_capacity.
  std::size_t subscriber_lag_max = 0;
  // The engine's own state (names, stream index, idempotency window) is snapshotted every this
  // many events and at close, so open() reads only the journal after the newest snapshot instead
  // of all of it (0: never; open then reads everything). Shorter: less to replay after a crash (at
  // most this many events). Longer: fewer pauses of appends while the state is encoded, each in
  // proportion to the number of streams. docs/engine.md has the measurements behind the default.
  std::uint64_t state_snapshot_every_events = 500'000;
  std::size_t state_snapshots_kept = 2;
  // Encryption at rest (docs/security.md): the master keys, from the application's HSM, KMS or
  // vault, or crypto::KeyFile. Given, every record's payload and every snapshot is sealed with
  // AES-256-GCM under keys derived from them, and the store keeps its key state in a file KEYS
  // (sealed under the master key). A store with KEYS cannot be opened without it. Null: in clear.
  std::shared_ptr<crypto::KeyProvider> encryption{};
};

// What the engine has done since open, for metrics (annal serve's /metrics).
struct Metrics {
  journal::Stats journal;  // batches, records and bytes written, fdatasyncs and their latency, group sizes
  std::uint64_t durable_sequence = 0;
  std::uint64_t last_sequence = 0;
  std::uint64_t streams = 0;
  std::uint64_t state_snapshots = 0;    // of the engine's own state (open() reads the newest)
  HistogramSnapshot state_snapshot_ns;  // each: encoding under the append lock, then writing
};

// What open() did to rebuild the engine's state.
struct OpenReport {
  std::uint64_t state_snapshot = 0;   // the sequence of the state snapshot it started from (0: none)
  std::uint64_t records_replayed = 0;  // journal records it read after that
  // open_read_only: why the log it serves stops short of the files' end: damage, with its file,
  // offset and sequence (empty: it does not). A tool that reads "everything" must say so.
  std::string stopped_at_damage;
  // Acknowledged events the log no longer holds, with the witness that proves they were there
  // (journal::Options::accept_data_loss): open_read_only reports them and serves what is left;
  // open() refuses such a directory, and has this only when accept_data_loss let it go on.
  std::string data_loss;
};

class Engine {
 public:
  using Clock = std::chrono::steady_clock;

  // Opens the store in `directory` (created, with its parents, if missing): recovers the journal,
  // rebuilds the stream index, names and idempotency window from it, and starts the pipeline.
  // invalid_argument names the bad option.
  static Result<std::unique_ptr<Engine>> open(const std::string& directory, const Options& options);
  // The same on a given journal I/O backend (tests inject faults through it).
  static Result<std::unique_ptr<Engine>> open(const std::string& directory, const Options& options,
                                              std::shared_ptr<journal::IoBackend> io);

  // Opens `directory` read-only, for tools (journal.h's Journal::open_read_only): no lock, nothing
  // changed, so it works beside the process that writes it and on a damaged directory (the log
  // ends before the damage). Reads, read_all, subscriptions (which follow what the writer makes
  // durable), build_as_of work; the stream index is the directory's at open. append, add_projection and
  // trim_journal fail with invalid_argument.
  static Result<std::unique_ptr<Engine>> open_read_only(const std::string& directory, const Options& options);

  virtual ~Engine() = default;
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Appends `events` to `stream` if `expected` holds, as one atomic batch: contiguous in the
  // global order, durable together, never half of them after a crash. Returns when they are
  // sequenced, before they are durable (see wait_durable and on_durable). Blocks only while the
  // ring is full (a live subscriber is behind).
  virtual AppendResult append(const StreamRef& stream, const ExpectedVersion& expected,
                              std::span<const EventData> events) = 0;

  // Waits until the receipt's events are durable: ok, timed_out (the caller may wait again), or
  // the journal's error.
  virtual Status wait_durable(const Receipt& receipt, Clock::time_point deadline) = 0;
  // Calls `done` once the receipt's events are durable, or with the error that means they never
  // will be, on the engine's callback thread (never on this one, even if that is already known;
  // after close(), at once here), in the order they settle: sequence order for those that wait. It
  // may append, wait and query: a slow one delays only the callbacks after it. What it throws is
  // reported on stderr.
  virtual void on_durable(const Receipt& receipt, std::function<void(const Status&)> done) = 0;
  // The same as a future, fulfilled where durability is settled, not on the callback thread: so a
  // callback may wait for one. (A callback must not wait for another callback: they run one at a
  // time.)
  virtual std::future<Status> durable_future(const Receipt& receipt) = 0;

  // Events of one stream from a version, either way, up to max_count; a stream with no events reads
  // empty. Costs time in proportion to the events between the stream's end and the last one
  // returned (it follows each event's pointer to the stream's previous one), never to the journal.
  // Waits, up to `deadline`, for the stream's appended events to become durable.
  virtual Result<std::vector<Event>> read_stream(const StreamRef& stream, const ReadStreamOptions& options,
                                                 Clock::time_point deadline) = 0;
  Result<std::vector<Event>> read_stream(const StreamRef& stream, const ReadStreamOptions& options);
  // Durable events of every stream from global sequence `from`, up to max_count.
  virtual Result<std::vector<Event>> read_all(std::uint64_t from, std::size_t max_count) = 0;

  // All events from global sequence `from` (a Subscription::position() checkpoint), first from the
  // journal, then live from the ring. The subscription must be destroyed before the engine.
  // invalid_argument for a `from` past the end of the log (+1); not_found if retention removed it.
  virtual Result<std::unique_ptr<Subscription>> subscribe(std::uint64_t from) = 0;

  // Starts keeping projection `name` (1 to 64 of A-Z a-z 0-9 _ .) up to date on a thread of its
  // own (projection.h): restores its newest usable snapshot, replays the rest from the journal,
  // then follows live events. invalid_argument for a bad or taken name.
  virtual Status add_projection(std::string_view name, std::shared_ptr<Projection> projection,
                                const ProjectionOptions& options) = 0;
  // Runs `fn` on projection `name`'s thread once it has applied `min_sequence` (an append's
  // last_sequence: read your writes). timed_out after `timeout` (fn never runs then), not_found for
  // an unknown projection, the projection's error if it stopped, failed (with its message) if fn
  // threw. The typed form is query<P> below.
  virtual Status query(std::string_view name, std::uint64_t min_sequence,
                       const std::function<void(const Projection&)>& fn, Clock::duration timeout) = 0;
  [[nodiscard]] virtual Result<ProjectionStatus> projection_status(std::string_view name) const = 0;

  // Builds `into`'s state as of `at` (the seeds' "roll back"): restores the newest snapshot of
  // projection `snapshots_of` at or before that point (if `into` has its schema), then replays the
  // journal up to it. The live projection is not touched; `into` must be a fresh instance. Returns
  // the sequence the state is at. invalid_argument for a point past the durable log; not_found if
  // retention removed the events needed.
  virtual Result<std::uint64_t> build_as_of(std::string_view snapshots_of, Projection& into, AsOf at) = 0;
  // The consistency check (the seeds' "compare C(R) with Q(D)"): takes projection `name`'s digest
  // where it stands, rebuilds `fresh` from the start of the journal to the same sequence, and
  // compares the two. `fresh` is a new instance of the same projection. invalid_argument if it has
  // no digest (Projection::digest).
  virtual Result<ConsistencyReport> check_projection(std::string_view name, Projection& fresh,
                                                     Clock::duration timeout) = 0;

  // Journal retention: removes the segments that no recovery needs any more, those wholly before
  // the oldest kept snapshot of the engine's state and of every projection (added in this session,
  // or with snapshot files in the directory). A projection without snapshots needs the whole log,
  // and so does one still replaying from the start, so then nothing is removed. Projections added
  // later, read_all and subscriptions can then no longer start before the cut. Returns the first
  // sequence the journal still holds.
  virtual Result<std::uint64_t> trim_journal() = 0;

  // Crypto-shredding (docs/security.md): destroys the key `stream`'s events are sealed under,
  // durably, so that they can be read nowhere any more: not in the journal, nor in its copies and
  // backups. Afterwards reads, subscriptions and replays show its events with their metadata,
  // flagged erased (EventHeader::erased), without payload or ids; its name is forgotten (an append
  // to the name starts a new stream) and appends to its id are refused. Appends wait meanwhile:
  // a group commit and two rewrites of the key store (some 0.8 s once it nears its 64 MiB). A crash leaves it done or not: once the erasure record is in the
  // journal, the next open finishes it. Returns that record's sequence. invalid_argument for a
  // store in clear (no key to destroy: Options::encryption), a read-only engine, or a journal
  // retention has cut while a projection has a snapshot (the erasure makes it unreadable, and the
  // log could no longer rebuild the projection); not_found for a
  // stream never written or erased already. Projections' states and their snapshots are theirs to
  // clear (docs/security.md, "Erasing a stream").
  virtual Result<std::uint64_t> erase_stream(const StreamRef& stream) = 0;

  // Every snapshot file in the directory (the engine's state's and every projection's), for tools
  // (annal inspect, verify): SnapshotStore::inspect with this store's keys, so that a sealed state
  // is opened and checked (with `verify_state`) and a state in clear where the store seals
  // everything is reported. One sealed under a snapshot key an erasure destroyed reports
  // ErrorCode::not_found: unreadable by design, not damage. Reads only.
  [[nodiscard]] virtual Result<std::vector<snapshots::SnapshotStore::FileReport>> inspect_snapshots(
      bool verify_state) = 0;

  // The stream's last version (nullopt: no events), counting sequenced events, durable or not.
  [[nodiscard]] virtual std::optional<std::uint64_t> stream_version(const StreamRef& stream) const = 0;
  // The id a stream name maps to, if the name was ever used.
  [[nodiscard]] virtual std::optional<std::uint64_t> find_stream(std::string_view name) const = 0;
  // How many streams have events, how many events they hold (what their versions count, retention
  // notwithstanding; O(streams)), and how many event types are named.
  [[nodiscard]] virtual std::uint64_t stream_count() const = 0;
  [[nodiscard]] virtual std::uint64_t event_count() const = 0;
  [[nodiscard]] virtual std::uint64_t event_type_count() const = 0;
  // Options::idempotency_window as opened: how many of the latest event ids a repeated append is
  // recognised among. What re-delivers events under their ids (an import) keeps within it.
  [[nodiscard]] virtual std::size_t idempotency_window() const = 0;
  [[nodiscard]] virtual const OpenReport& open_report() const = 0;
  [[nodiscard]] virtual std::uint64_t durable_sequence() const = 0;
  [[nodiscard]] virtual std::uint64_t last_sequence() const = 0;
  // Whether appends are taken: ok, or why not (the error that stopped the engine or its journal, a
  // close, a read-only engine). For readiness probes.
  [[nodiscard]] virtual Status writable() const = 0;
  // Counters and histograms since open, for metrics; cheap enough for every scrape.
  [[nodiscard]] virtual Metrics metrics() const = 0;

  // Stops appends, makes everything sequenced durable, stops the threads, releases the directory.
  // Fails callbacks still waiting with ErrorCode::failed. User code appending or waiting (in
  // apply(), a callback, another thread) gets an error and close() returns. From a callback, apply()
  // or a query function it refuses appends at once and finishes on a thread of its own, which the
  // destructor waits for (do not destroy the engine from such code).
  virtual Status close() = 0;

 protected:
  Engine() = default;
};

// query() for a projection of type P: returns what fn(const P&) returns.
template <class P, class F>
auto query(Engine& engine, std::string_view name, std::uint64_t min_sequence, F&& fn, Engine::Clock::duration timeout)
    -> Result<std::invoke_result_t<F&, const P&>> {
  std::optional<std::invoke_result_t<F&, const P&>> out;
  const Status status = engine.query(name, min_sequence, [&](const Projection& projection) {
    const auto* typed = dynamic_cast<const P*>(&projection);
    ANNAL_ASSERT(typed != nullptr);  // the projection registered under `name` is not a P
    out.emplace(fn(*typed));
  }, timeout);
  if (!status.ok()) return status;
  return std::move(*out);
}

}  // namespace annal::engine
