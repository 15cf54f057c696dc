// The engine on this machine's disk, beside the journal alone (issue 4's acceptance: appends keep at
// least 80% of the journal's events/s; a stream read costs time in proportion to the stream):
//
//   journal_durable_8w/annal        the journal's 8-writer benchmark (bench_support.h), registered
//                                   here too so both run in one binary, in one run, interleaved
//   engine_append_8w/annal[_encrypted,_sequencer_thread]
//                                   8 threads, each appending one 256-byte event to a random one of
//                                   100,000 named streams with its exact expected version, then
//                                   waiting until it is durable, then the next
//   engine_saturate_64B/annal/threads:{1,2}
//                                   1 or 2 threads appending batches of 16 64-byte events to
//                                   random streams among 10,000, receipts by callback (on_durable),
//                                   never waiting; beside journal_append_64B/group_commit, the
//                                   journal's own saturating row, registered here too
//   engine_e2e_2proj/annal[_eager]  issue 5's end to end: engine_append_8w's appends as order
//                                   events, with two projections following them (an order book
//                                   and totals per event type: order_projections.h), both gated
//                                   on durability ([_eager]: the order book eager); events/s,
//                                   append-to-durable and append-to-visible in each projection
//   engine_latency_at_rate/annal[_2proj]/{rate:100000,half_saturation/batch:16}
//                                   open loop: one thread issues appends of order events at
//                                   100,000 events/s one per append, or in batches of 16 at half
//                                   what such batches reach flat out on the same engine (measured
//                                   just before, saturation_events_per_second), each at its
//                                   intended time whatever the earlier ones did, receipts by
//                                   callback; append-to-durable (and, with engine_e2e_2proj's two
//                                   projections, to visible) measured from the intended send time
//   engine_e2e_saturated/annal[_2proj]
//                                   issue 18 goal 6: one thread appends batches of 16 order events
//                                   flat out for a second, receipts by callback, with engine_e2e_2proj's
//                                   two durable projections following (events/s until both applied
//                                   the last) or none (until durable); 3 such seconds per run
//   engine_read_stream/annal[_1M]   read forwards a 1,000-event stream spread evenly through a
//                                   journal of 10M (1M) events; also how long Engine::open took
//   engine_recover_10M/{snapshots,full_replay}
//                                   Engine::open of a 10M-event journal from a state snapshot one
//                                   default interval before its end (the whole interval replayed,
//                                   the worst case), and from nothing (all 10M read)
//   engine_state_snapshot/<streams> encoding the engine's state (the pause appends see at each
//                                   state snapshot) and decoding it (open), 10K to 1M streams
//   engine_stream_index/<heap>      the stream index (engine/src/stream_index.h) on mimalloc and on
//                                   glibc malloc: 1M inserts, 1M updates, 1M random lookups
//
// Data lives under ANNAL_BENCH_DIR (bench_support.h).
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "annal/engine/engine.h"
#include "annal/journal/reader.h"
#include "bench_support.h"
#include "engine_state.h"
#include "order_projections.h"
#include "stream_index.h"

namespace ae = annal::engine;
namespace fs = std::filesystem;
using annal::bench::kAppendsPerWriter;
using annal::bench::kEventBytes;
using annal::bench::kWriters;
using annal::bench::run_writers;
using annal::bench::ScratchDir;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// ---- engine_append_8w -------------------------------------------------------------------------

constexpr std::uint64_t kAppendStreams = 100'000;
constexpr benchmark::IterationCount kWriterIterations = 100;

// One writer thread's state: it alone appends to streams t, t + 8, t + 16, ..., so it knows their
// versions and its appends never conflict with another thread's.
struct alignas(64) AppendWriter {
  std::mt19937_64 random;
  std::vector<std::uint64_t> versions;  // last version of each of its streams
};

// Gives each stream its first event (a stream's first append also writes its name), so the timed
// appends go to existing streams.
annal::Status create_streams(const std::string& directory, const std::vector<std::string>& names,
                             const ae::EventData& event, const ae::Options& options) {
  auto opened = ae::Engine::open(directory, options);
  if (!opened.ok()) return opened.status();
  ae::Receipt last;
  for (const std::string& name : names) {
    const auto receipt = opened.value()->append(std::string_view(name), ae::ExpectedVersion::no_stream(), {&event, 1});
    if (!receipt.ok()) return receipt.status();
    last = receipt.value();
  }
  if (annal::Status durable = opened.value()->wait_durable(last, Clock::now() + std::chrono::minutes(1)); !durable.ok()) {
    return durable;
  }
  return opened.value()->close();
}

// The first error of a run's writers (run_writers stops the run when one returns false).
struct FirstError {
  std::mutex mutex;
  std::string text;
};

// One timed append at the version the writer knows, then a wait until it is durable.
bool append_durably(ae::Engine& engine, const std::string& stream, std::uint64_t& version, const ae::EventData& event,
                    FirstError& error) {
  const auto receipt = engine.append(std::string_view(stream), ae::ExpectedVersion::exactly(version), {&event, 1});
  const annal::Status status =
      receipt.ok() ? engine.wait_durable(receipt.value(), Clock::now() + std::chrono::minutes(1)) : receipt.status();
  if (!status.ok()) {
    std::lock_guard lock(error.mutex);
    if (error.text.empty()) error.text = status.to_string();
    return false;
  }
  version = receipt.value().last_version;
  return true;
}

void BM_EngineAppend8w(benchmark::State& state, ae::Sequencing sequencing, bool encrypted) {
  ScratchDir dir("engine8w");
  ae::Options options;
  options.sequencing = sequencing;
  if (encrypted) options.encryption = std::make_shared<annal::bench::RunMasterKey>();
  std::vector<std::string> names;
  names.reserve(kAppendStreams);
  for (std::uint64_t k = 0; k < kAppendStreams; ++k) names.push_back("stream-" + std::to_string(k));
  const std::vector<std::byte> payload(kEventBytes, std::byte{0x5A});
  const ae::EventData event{.type = "Appended", .payload = payload};
  if (annal::Status created = create_streams(dir.str(), names, event, options); !created.ok()) {
    return state.SkipWithError(created.to_string().c_str());
  }
  // Reopened, so the timed part starts as journal_durable_8w's does: the current segment ready, the
  // next one prepared in the background from the first write on.
  const auto start = Clock::now();
  auto opened = ae::Engine::open(dir.str(), options);
  if (!opened.ok()) return state.SkipWithError(opened.status().to_string().c_str());
  const double open_s = seconds_since(start);
  ae::Engine& engine = *opened.value();

  std::vector<AppendWriter> writers(kWriters);
  for (int t = 0; t < kWriters; ++t) {
    writers[static_cast<std::size_t>(t)].random.seed(static_cast<std::uint64_t>(t) + 1);
    writers[static_cast<std::size_t>(t)].versions.assign(kAppendStreams / kWriters, 0);
  }
  FirstError error;
  run_writers(state, kWriters, [&](int t, std::uint64_t) {
    AppendWriter& writer = writers[static_cast<std::size_t>(t)];
    const std::size_t own = writer.random() % writer.versions.size();
    const std::string& name = names[own * kWriters + static_cast<std::size_t>(t)];
    return append_durably(engine, name, writer.versions[own], event, error);
  });
  if (!error.text.empty()) std::fprintf(stderr, "engine_append_8w: %s\n", error.text.c_str());
  state.counters["open_s"] = open_s;
  state.SetLabel(std::string("durability=group_commit wait=blocking sequencing=") +
                 (sequencing == ae::Sequencing::caller_lock ? "caller threads under one lock, "
                                                            : "one sequencer thread fed by a lock-free queue, ") +
                 std::to_string(kAppendStreams) + " streams" + (encrypted ? ", AES-256-GCM" : ""));
  if (const annal::Status closed = engine.close(); !closed.ok()) state.SkipWithError(closed.to_string().c_str());
}

// ---- engine_saturate_64B ------------------------------------------------------------------------
// Issue 18's engine at full speed: `threads` threads append batches of 16 events of 64 bytes, each
// batch to a stream at random among 10,000 with ExpectedVersion::any, and never wait: each
// receipt goes to on_durable, whose callback notes when the batch became durable. Beside it,
// journal_append_64B/group_commit (bench_support.h, registered here too) appends the same batches
// straight into the journal: the difference is what the engine's version check, stream index,
// idempotency window and ring cost.

constexpr std::uint64_t kSaturateStreams = 10'000;
constexpr std::size_t kSaturateBatch = 16;
constexpr std::size_t kSaturateEventBytes = 64;
constexpr std::size_t kSaturateBatchesPerIteration = 1024;  // per thread

// Append-to-durable latencies, noted by on_durable's callbacks (which run one at a time on the
// engine's notifier thread), and a wait until every receipt handed to them has settled.
class DurableLatencies {
 public:
  explicit DurableLatencies(std::size_t expected) { latencies_us_.reserve(expected); }

  // The callback for a receipt just appended, its latency counted from `from`.
  std::function<void(const annal::Status&)> since(Clock::time_point from) {
    pending_.fetch_add(1, std::memory_order_acq_rel);
    return [this, from](const annal::Status& status) {
      if (!status.ok()) failed_ = true;
      latencies_us_.push_back(std::chrono::duration<double, std::micro>(Clock::now() - from).count());
      // Under the lock, so that settle() cannot see the count reach 0 and let this object go
      // while the last callback is still to take it.
      std::lock_guard lock(settled_mutex_);
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) settled_.notify_all();
    };
  }
  // Whether every callback ran within a minute.
  bool settle() {
    std::unique_lock lock(settled_mutex_);
    return settled_.wait_until(lock, Clock::now() + std::chrono::minutes(1), [&] { return pending_.load() == 0; });
  }
  void fail() { failed_ = true; }
  [[nodiscard]] bool failed() const { return failed_; }
  // Once settled.
  std::vector<double>& latencies_us() { return latencies_us_; }

 private:
  std::vector<double> latencies_us_;
  std::atomic<std::uint64_t> pending_{0};
  std::atomic<bool> failed_{false};
  std::mutex settled_mutex_;
  std::condition_variable settled_;
};

void BM_EngineSaturate64B(benchmark::State& state, int threads) {
  ScratchDir dir("engine-saturate");
  auto opened = ae::Engine::open(dir.str(), ae::Options{});
  if (!opened.ok()) return state.SkipWithError(opened.status().to_string().c_str());
  ae::Engine& engine = *opened.value();
  std::vector<std::string> names;
  names.reserve(kSaturateStreams);
  for (std::uint64_t k = 0; k < kSaturateStreams; ++k) names.push_back("stream-" + std::to_string(k));
  const std::vector<std::byte> payload(kSaturateEventBytes, std::byte{0x5A});
  const std::vector<ae::EventData> batch(kSaturateBatch, ae::EventData{.type = "Measured", .payload = payload});

  DurableLatencies durable(std::size_t{1} << 20);

  std::uint64_t batches = 0;
  const annal::bench::ProcessUsage usage_started = annal::bench::process_usage();
  const auto started = Clock::now();
  for (auto _ : state) {
    std::vector<std::thread> appenders;
    for (int t = 0; t < threads; ++t) {
      appenders.emplace_back([&, t] {
        std::mt19937_64 random(batches + static_cast<std::uint64_t>(t));
        for (std::size_t i = 0; i < kSaturateBatchesPerIteration && !durable.failed(); ++i) {
          const std::string& name = names[random() % names.size()];
          const auto appended = Clock::now();
          const auto receipt = engine.append(std::string_view(name), ae::ExpectedVersion::any(), batch);
          if (!receipt.ok()) {
            durable.fail();
            return;
          }
          engine.on_durable(receipt.value(), durable.since(appended));
        }
      });
    }
    for (std::thread& appender : appenders) appender.join();
    batches += static_cast<std::uint64_t>(threads) * kSaturateBatchesPerIteration;
  }
  const bool in_time = durable.settle();
  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  const annal::bench::ProcessUsage usage_ended = annal::bench::process_usage();
  const annal::journal::Stats journal_stats = engine.metrics().journal;
  // Closing settles any callback still pending (with an error) before they go out of scope.
  const annal::Status closed = engine.close();
  if (durable.failed() || !in_time || !closed.ok()) return state.SkipWithError("an append failed or did not become durable");
  const double events = static_cast<double>(batches * kSaturateBatch);
  state.counters["events_per_second"] = events / seconds;
  state.counters["cpu_us_per_event"] = (usage_ended.cpu_seconds - usage_started.cpu_seconds) / events * 1e6;
  annal::bench::report_latency(state, durable.latencies_us());
  annal::bench::report_preparation(state, journal_stats);
  state.SetLabel("durability=group_commit wait=blocking receipts=on_durable threads=" + std::to_string(threads) +
                 " batch=16 streams=" + std::to_string(kSaturateStreams));
}

// ---- engine_e2e_2proj --------------------------------------------------------------------------

// engine_append_8w's appends (the same threads, seeds, streams, event size, expected versions and
// wait_durable), now order events followed by two projections (order_projections.h). Each writer
// stamps the time into a payload of its own.
struct alignas(64) OrderWriter {
  AppendWriter appends;
  std::array<std::byte, kEventBytes> payload{};
};

// Adds the projection and waits until it has applied everything appended so far and reads the
// ring, so the clock starts with the projection live, as in a running service.
annal::Status add_live_projection(ae::Engine& engine, const std::string& name,
                                  std::shared_ptr<annal::bench::MeasuredProjection> projection, ae::Gating gating) {
  if (annal::Status added = engine.add_projection(name, std::move(projection), {.gating = gating}); !added.ok()) {
    return added;
  }
  const annal::Status caught_up =
      engine.query(name, engine.last_sequence(), [](const ae::Projection&) {}, std::chrono::minutes(1));
  if (!caught_up.ok()) return caught_up;
  for (const auto deadline = Clock::now() + std::chrono::seconds(10); Clock::now() < deadline;) {
    const auto status = engine.projection_status(name);
    if (!status.ok()) return status.status();
    if (status.value().live) return {};
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return annal::Status(annal::ErrorCode::timed_out, "projection " + name + " did not join the ring");
}

// What a projection measured, copied out on its own thread once it has applied `last`.
struct Seen {
  std::vector<double> latencies_us;
  std::uint64_t last_seen_ns = 0;
  std::uint64_t batches = 0;
  std::uint64_t applied = 0;
  std::uint64_t detached = 0;
};

annal::Result<Seen> seen_by(ae::Engine& engine, const std::string& name, std::uint64_t last) {
  using annal::bench::MeasuredProjection;
  auto seen = ae::query<MeasuredProjection>(engine, name, last, [](const MeasuredProjection& projection) {
    const annal::bench::Visibility& visibility = projection.visibility();
    return Seen{.latencies_us = visibility.latencies_us(), .last_seen_ns = visibility.last_seen_ns(),
                .batches = visibility.batches(), .applied = projection.applied()};
  }, std::chrono::minutes(1));
  if (!seen.ok()) return seen.status();
  const auto status = engine.projection_status(name);
  if (!status.ok()) return status.status();
  seen.value().detached = status.value().detached;
  return seen;
}

// Checks that the projection applied as many events as were appended and measured every timed
// one, then reports its append-to-visible percentiles and the measured events per batch.
annal::Status report_projection(benchmark::State& state, const std::string& name, Seen& seen, std::uint64_t unmeasured,
                                std::uint64_t measured) {
  if (seen.applied != unmeasured + measured || seen.latencies_us.size() != measured) {
    return annal::Status(annal::ErrorCode::failed,
                         "projection " + name + " applied " + std::to_string(seen.applied) + " events and measured " +
                             std::to_string(seen.latencies_us.size()) + "; expected " +
                             std::to_string(unmeasured + measured) + " and " + std::to_string(measured));
  }
  annal::bench::report_percentiles(state, name + "_visible_", seen.latencies_us);
  state.counters[name + "_events_per_batch"] = static_cast<double>(measured) / static_cast<double>(seen.batches);
  state.counters[name + "_detached"] = static_cast<double>(seen.detached);
  return {};
}

// The streams of the order benchmarks: order-0 ... order-99999.
std::vector<std::string> order_names() {
  std::vector<std::string> names;
  names.reserve(kAppendStreams);
  for (std::uint64_t k = 0; k < kAppendStreams; ++k) names.push_back("order-" + std::to_string(k));
  return names;
}

// Each order (stream) with its OrderCreated event, the engine closed.
annal::Status create_orders(const std::string& directory, const std::vector<std::string>& names) {
  std::array<std::byte, kEventBytes> created{};
  std::fill(created.begin(), created.end(), std::byte{0x5A});
  annal::bench::encode_order(created, 0, 10'000);  // not measured: written before the clock starts
  const ae::EventData created_event{.type = annal::bench::kOrderCreated, .payload = created};
  return create_streams(directory, names, created_event, {});
}

// The orders created, the engine reopened, both projections added and live. `measured_max`: the
// timed appends the projections make room for.
annal::Result<std::unique_ptr<ae::Engine>> open_with_projections(const std::string& directory,
                                                                 const std::vector<std::string>& names,
                                                                 ae::Gating orders_gating, std::size_t measured_max) {
  if (annal::Status made = create_orders(directory, names); !made.ok()) return made;
  ae::Options options;
  options.wait_strategy = ae::WaitStrategy::blocking;  // the default, and the one that suits 2 cores
  auto opened = ae::Engine::open(directory, options);
  if (!opened.ok()) return opened.status();
  using annal::bench::MeasuredProjection;
  const std::shared_ptr<MeasuredProjection> orders = std::make_shared<annal::bench::OrderBook>(measured_max);
  const std::shared_ptr<MeasuredProjection> totals = std::make_shared<annal::bench::TypeTotals>(measured_max);
  for (const auto& [name, projection, gating] :
       {std::tuple{"orders", orders, orders_gating}, std::tuple{"totals", totals, ae::Gating::durable}}) {
    if (annal::Status added = add_live_projection(*opened.value(), name, projection, gating); !added.ok()) return added;
  }
  return opened;
}

// The orders created and the engine reopened, with both projections (gated on durability) or none.
annal::Result<std::unique_ptr<ae::Engine>> open_orders(const std::string& directory, const std::vector<std::string>& names,
                                                       bool projections, std::size_t measured_max) {
  if (projections) return open_with_projections(directory, names, ae::Gating::durable, measured_max);
  if (annal::Status made = create_orders(directory, names); !made.ok()) return made;
  return ae::Engine::open(directory, ae::Options{});
}

void BM_EngineE2e2Proj(benchmark::State& state, ae::Gating orders_gating) {
  ScratchDir dir("e2e");
  const std::vector<std::string> names = order_names();
  const auto measured_max = static_cast<std::size_t>(state.max_iterations) * kWriters * kAppendsPerWriter;
  auto opened = open_with_projections(dir.str(), names, orders_gating, measured_max);
  if (!opened.ok()) return state.SkipWithError(opened.status().to_string().c_str());
  ae::Engine& engine = *opened.value();

  std::vector<OrderWriter> writers(kWriters);
  for (int t = 0; t < kWriters; ++t) {
    writers[static_cast<std::size_t>(t)].appends.random.seed(static_cast<std::uint64_t>(t) + 1);
    writers[static_cast<std::size_t>(t)].appends.versions.assign(kAppendStreams / kWriters, 0);
  }
  FirstError error;
  const std::uint64_t started_ns = annal::bench::steady_now_ns();
  run_writers(state, kWriters, [&](int t, std::uint64_t) {
    OrderWriter& writer = writers[static_cast<std::size_t>(t)];
    std::vector<std::uint64_t>& versions = writer.appends.versions;
    const std::size_t own = writer.appends.random() % versions.size();
    const std::string& name = names[own * kWriters + static_cast<std::size_t>(t)];
    const std::uint64_t version = versions[own] + 1;
    // Stamped just before append(): what the projections measure from.
    annal::bench::encode_order(writer.payload, annal::bench::steady_now_ns(), 100 * version);
    const ae::EventData event{.type = annal::bench::kOrderLifecycle[(version - 1) % 3], .payload = writer.payload};
    return append_durably(engine, name, versions[own], event, error);
  });
  if (!error.text.empty()) {  // run_writers has failed the run
    std::fprintf(stderr, "engine_e2e_2proj: %s\n", error.text.c_str());
    return (void)engine.close();
  }

  const std::uint64_t measured = static_cast<std::uint64_t>(state.iterations()) * kWriters * kAppendsPerWriter;
  std::uint64_t last_seen_ns = started_ns;
  for (const std::string name : {"orders", "totals"}) {
    auto seen = seen_by(engine, name, engine.last_sequence());
    annal::Status reported = seen.ok() ? report_projection(state, name, seen.value(), kAppendStreams, measured) : seen.status();
    if (!reported.ok()) return state.SkipWithError(reported.to_string().c_str());
    last_seen_ns = std::max(last_seen_ns, seen.value().last_seen_ns);
  }
  // From the first append to the last event applied by both projections.
  state.counters["visible_events_per_second"] =
      static_cast<double>(measured) / (static_cast<double>(last_seen_ns - started_ns) / 1e9);
  state.SetLabel(std::string("durability=group_commit wait=blocking sequencing=caller threads under one lock, ") +
                 std::to_string(kAppendStreams) + " streams; projections orders (gating=" +
                 (orders_gating == ae::Gating::eager ? "eager" : "durable") +
                 ") and totals (gating=durable), no snapshots; p50/p99/p999: append to durable");
  if (const annal::Status closed = engine.close(); !closed.ok()) state.SkipWithError(closed.to_string().c_str());
}

// ---- engine_latency_at_rate --------------------------------------------------------------------
// Issue 18's flat tail, as HdrHistogram's users measure it: appends are issued on a schedule
// (append i at start + i * batch / rate), not when the previous one finished, so a stall delays the
// appends behind it and they count it (no coordinated omission). The issuing thread sleeps until
// an append is due, and when it is late issues what is due without sleeping. Each latency runs
// from the intended time: to durable (on_durable's callback), and with projections to visible.

constexpr double kPacedSeconds = 2;      // of appends per iteration
constexpr double kSaturationSeconds = 1;  // of flat-out appends before, for a rate of 0

// A row's appends: `rate` events/s in appends of `batch` order events, each append to one stream
// at random. Rate 0: half of what the same appends reach flat out from one thread (receipts by
// callback, as engine_saturate_64B's), measured on the same engine just before.
struct Pace {
  std::uint64_t rate = 0;
  std::size_t batch = 1;
};

// `batch` order events sharing `payload`, whose types go through the lifecycle from `first`.
std::vector<ae::EventData> order_batch(std::size_t batch, std::uint64_t first, std::span<const std::byte> payload) {
  std::vector<ae::EventData> events;
  for (std::size_t j = 0; j < batch; ++j) {
    events.push_back({.type = annal::bench::kOrderLifecycle[(first + j) % 3], .payload = payload});
  }
  return events;
}

// `batch`-event appends issued flat out from one thread for kSaturationSeconds, receipts by
// callback into `durable`, until every one is durable: the events appended and the seconds that
// took. `durable` must outlive the engine's close (which settles any callback still pending). The
// payloads carry no time: the projections apply these events without measuring them.
struct Saturated {
  std::uint64_t events = 0;
  double seconds = 0;
};
annal::Result<Saturated> saturate(ae::Engine& engine, const std::vector<std::string>& names, std::size_t batch,
                                  DurableLatencies& durable) {
  std::array<std::byte, kEventBytes> payload{};
  annal::bench::encode_order(payload, 0, 100);
  const std::vector<ae::EventData> events = order_batch(batch, 0, payload);
  std::mt19937_64 random(2);
  const auto start = Clock::now();
  std::uint64_t appended = 0;
  while (Clock::now() - start < std::chrono::duration<double>(kSaturationSeconds) && !durable.failed()) {
    const auto receipt = engine.append(std::string_view(names[random() % names.size()]), ae::ExpectedVersion::any(), events);
    if (!receipt.ok()) return receipt.status();
    engine.on_durable(receipt.value(), durable.since(Clock::now()));
    appended += batch;
  }
  if (!durable.settle() || durable.failed()) {
    return annal::Status(annal::ErrorCode::failed, "a saturating append did not become durable");
  }
  return Saturated{appended, std::chrono::duration<double>(Clock::now() - start).count()};
}

void BM_EngineLatencyAtRate(benchmark::State& state, Pace pace, bool projections) {
  ScratchDir dir("at-rate");
  const std::vector<std::string> names = order_names();
  // A rate of 0 is known only once the engine runs: room for 2 seconds at 4M events/s then.
  const std::uint64_t rate_max = pace.rate != 0 ? pace.rate : 4'000'000;
  const auto measured_max = static_cast<std::size_t>(static_cast<double>(state.max_iterations * rate_max) * kPacedSeconds);
  auto opened = open_orders(dir.str(), names, projections, measured_max);
  if (!opened.ok()) return state.SkipWithError(opened.status().to_string().c_str());
  ae::Engine& engine = *opened.value();

  std::uint64_t unmeasured = kAppendStreams;  // the events the projections apply without measuring
  double saturated = 0;
  DurableLatencies saturating(0);
  if (pace.rate == 0) {
    const auto reached = saturate(engine, names, pace.batch, saturating);
    // The clock starts with the projections caught up, as at a rate set in advance.
    annal::Status ready = reached.status();
    for (const std::string name : {"orders", "totals"}) {
      if (!ready.ok() || !projections) break;
      ready = engine.query(name, engine.last_sequence(), [](const ae::Projection&) {}, std::chrono::minutes(1));
    }
    if (!ready.ok()) {
      (void)engine.close();
      return state.SkipWithError(ready.to_string().c_str());
    }
    unmeasured += reached.value().events;
    saturated = static_cast<double>(reached.value().events) / reached.value().seconds;
    pace.rate = std::clamp<std::uint64_t>(static_cast<std::uint64_t>(saturated / 2), pace.batch, rate_max);
  }
  const auto per_iteration = static_cast<std::uint64_t>(static_cast<double>(pace.rate) * kPacedSeconds) / pace.batch;
  DurableLatencies durable(static_cast<std::size_t>(state.max_iterations) * per_iteration);

  std::mt19937_64 random(1);
  std::array<std::byte, kEventBytes> payload{};
  std::fill(payload.begin(), payload.end(), std::byte{0x5A});
  // The batches by their first event's place in the lifecycle, all over `payload`, stamped per append.
  const std::array<std::vector<ae::EventData>, 3> batches = {
      order_batch(pace.batch, 0, payload), order_batch(pace.batch, 1, payload), order_batch(pace.batch, 2, payload)};
  std::uint64_t issued = 0;  // events
  double issuing_seconds = 0;
  for (auto _ : state) {
    const auto start = Clock::now();
    for (std::uint64_t i = 0; i < per_iteration && !durable.failed(); ++i) {
      const auto intended = start + std::chrono::nanoseconds(i * pace.batch * 1'000'000'000 / pace.rate);
      if (Clock::now() < intended) std::this_thread::sleep_until(intended);
      const auto intended_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(intended.time_since_epoch());
      annal::bench::encode_order(payload, static_cast<std::uint64_t>(intended_ns.count()), 100);
      const std::vector<ae::EventData>& events = batches[(i * pace.batch) % 3];
      const std::string& name = names[random() % names.size()];
      const auto receipt = engine.append(std::string_view(name), ae::ExpectedVersion::any(), events);
      if (!receipt.ok()) {
        durable.fail();
        break;
      }
      engine.on_durable(receipt.value(), durable.since(intended));
      issued += pace.batch;
    }
    issuing_seconds += std::chrono::duration<double>(Clock::now() - start).count();
  }
  const bool in_time = durable.settle();
  if (durable.failed() || !in_time) {
    (void)engine.close();
    return state.SkipWithError("an append failed or did not become durable");
  }
  if (projections) {
    for (const std::string name : {"orders", "totals"}) {
      auto seen = seen_by(engine, name, engine.last_sequence());
      annal::Status reported =
          seen.ok() ? report_projection(state, name, seen.value(), unmeasured, issued) : seen.status();
      if (!reported.ok()) {
        (void)engine.close();
        return state.SkipWithError(reported.to_string().c_str());
      }
    }
  }
  // Closing settles any callback still pending (with an error) before they go out of scope.
  if (const annal::Status closed = engine.close(); !closed.ok()) return state.SkipWithError(closed.to_string().c_str());
  state.counters["target_rate"] = static_cast<double>(pace.rate);
  if (saturated != 0) state.counters["saturation_events_per_second"] = saturated;
  state.counters["events_per_second"] = static_cast<double>(issued) / issuing_seconds;  // as issued
  annal::bench::report_latency(state, durable.latencies_us());
  state.SetLabel("open loop, latency from the intended send time; durability=group_commit wait=blocking "
                 "receipts=on_durable, " + std::to_string(pace.batch) + " event(s) per append, " +
                 std::to_string(kAppendStreams) + " streams" +
                 (projections ? "; projections orders and totals (gating=durable)" : ""));
}

// ---- engine_e2e_saturated -----------------------------------------------------------------------
// Issue 18 goal 6: the engine at full speed with two durable projections following, against the
// same appends without them. One thread appends batches of 16 order events flat out for a second
// (receipts by callback, as engine_saturate_64B); events/s counts until the last is durable and,
// with projections, until both have applied it.

void BM_EngineE2eSaturated(benchmark::State& state, bool projections) {
  ScratchDir dir("e2e-saturated");
  const std::vector<std::string> names = order_names();
  auto opened = open_orders(dir.str(), names, projections, 0);
  if (!opened.ok()) return state.SkipWithError(opened.status().to_string().c_str());
  ae::Engine& engine = *opened.value();
  std::uint64_t events = 0;
  double seconds = 0;
  double durable_seconds = 0;
  DurableLatencies durable(0);
  for (auto _ : state) {
    const auto start = Clock::now();
    const auto reached = saturate(engine, names, kSaturateBatch, durable);
    if (!reached.ok()) {
      (void)engine.close();
      return state.SkipWithError(reached.status().to_string().c_str());
    }
    durable_seconds += reached.value().seconds;
    const std::vector<std::string> following = projections ? std::vector<std::string>{"orders", "totals"}
                                                           : std::vector<std::string>{};
    for (const std::string& name : following) {
      // Applied through the last append: the query waits for it (a minute at most).
      const annal::Status applied = engine.query(name, engine.last_sequence(), [](const ae::Projection&) {},
                                                 std::chrono::minutes(1));
      if (!applied.ok()) {
        (void)engine.close();
        return state.SkipWithError(applied.to_string().c_str());
      }
    }
    seconds += std::chrono::duration<double>(Clock::now() - start).count();
    events += reached.value().events;
  }
  for (const std::string name : {"orders", "totals"}) {
    if (!projections) break;
    // How often the projection fell more than subscriber_lag_max behind and read the journal.
    if (const auto status = engine.projection_status(name); status.ok()) {
      state.counters[name + "_detached"] = static_cast<double>(status.value().detached);
    }
  }
  if (const annal::Status closed = engine.close(); !closed.ok()) return state.SkipWithError(closed.to_string().c_str());
  state.counters["events_per_second"] = static_cast<double>(events) / seconds;
  state.counters["durable_events_per_second"] = static_cast<double>(events) / durable_seconds;
  state.SetLabel(std::string("durability=group_commit wait=blocking receipts=on_durable, one thread, batches of 16 "
                             "order events, ") + std::to_string(kAppendStreams) + " streams" +
                 (projections ? "; projections orders and totals (gating=durable); events/s to applied by both"
                              : "; events/s to durable"));
}

// ---- engine_read_stream -----------------------------------------------------------------------

constexpr std::uint64_t kReadStreamEvents = 1'000;
constexpr std::uint64_t kOtherStreams = 10'000;
constexpr char kReadStream[] = "read-me";

// A journal of `events` events, kReadStreamEvents of them in kReadStream, evenly spread; the others
// round robin over kOtherStreams streams, payloads of 64 to 100 bytes. Built once per size and kept
// open for every repetition (building 10M events takes a while).
struct ReadJournal {
  std::unique_ptr<ScratchDir> dir;
  std::unique_ptr<ae::Engine> engine;
  std::string error;
  double load_s = 0, open_warm_s = 0, open_cold_s = 0;
  std::uint64_t bytes = 0;
};

// Drops the directory's files from the page cache (written back first, so nothing dirty stays).
void drop_page_cache(const std::string& directory) {
  for (const auto& entry : fs::directory_iterator(directory)) {
    const int fd = ::open(entry.path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    (void)::fdatasync(fd);
    (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

annal::Status load(ae::Engine& engine, std::uint64_t events) {
  std::vector<std::string> others;
  for (std::uint64_t k = 0; k < kOtherStreams; ++k) others.push_back("other-" + std::to_string(k));
  std::vector<std::byte> bytes(100);
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::byte>(i);
  const std::uint64_t spacing = events / kReadStreamEvents;
  std::uint64_t other = 0;
  for (std::uint64_t i = 0; i < events; ++i) {
    const ae::EventData event{.type = "Loaded", .payload = std::span(bytes).first(64 + i % 37)};
    const bool mine = i % spacing == spacing / 2;
    const ae::StreamRef stream = mine ? ae::StreamRef(kReadStream) : ae::StreamRef(std::string_view(others[other++ % kOtherStreams]));
    const auto appended = engine.append(stream, ae::ExpectedVersion::any(), {&event, 1});
    if (!appended.ok()) return appended.status();
  }
  return engine.wait_durable({.last_sequence = engine.last_sequence()}, Clock::now() + std::chrono::minutes(5));
}

annal::Status build_read_journal(std::uint64_t events, ReadJournal& out) {
  out.dir = std::make_unique<ScratchDir>("read" + std::to_string(events));
  ae::Options loading;
  loading.journal.durability = annal::journal::Durability::none;
  loading.state_snapshot_every_events = 0;  // open_* below time reading the whole journal
  ae::Options reading;
  reading.state_snapshot_every_events = 0;
  {
    auto engine = ae::Engine::open(out.dir->str(), loading);
    if (!engine.ok()) return engine.status();
    const auto start = Clock::now();
    if (annal::Status loaded = load(*engine.value(), events); !loaded.ok()) return loaded;
    if (annal::Status closed = engine.value()->close(); !closed.ok()) return closed;
    out.load_s = seconds_since(start);
  }
  for (const auto& entry : fs::directory_iterator(out.dir->str())) {
    if (entry.is_regular_file()) out.bytes += entry.file_size();
  }
  // Recovery reads the whole journal: timed once from the page cache, once from the disk.
  {
    const auto start = Clock::now();
    auto engine = ae::Engine::open(out.dir->str(), reading);
    if (!engine.ok()) return engine.status();
    out.open_warm_s = seconds_since(start);
    if (annal::Status closed = engine.value()->close(); !closed.ok()) return closed;
  }
  drop_page_cache(out.dir->str());
  const auto start = Clock::now();
  auto engine = ae::Engine::open(out.dir->str(), reading);
  if (!engine.ok()) return engine.status();
  out.open_cold_s = seconds_since(start);
  out.engine = std::move(engine.value());
  return {};
}

ReadJournal& read_journal(std::uint64_t events) {
  // Destroyed at exit: each engine closes before its directory is removed.
  static std::map<std::uint64_t, ReadJournal> built;
  const auto found = built.find(events);
  if (found != built.end()) return found->second;
  ReadJournal& journal = built[events];
  if (annal::Status status = build_read_journal(events, journal); !status.ok()) journal.error = status.to_string();
  return journal;
}

void BM_EngineReadStream(benchmark::State& state, std::uint64_t events) {
  ReadJournal& journal = read_journal(events);
  if (!journal.error.empty()) return state.SkipWithError(journal.error.c_str());
  std::uint64_t read = 0;
  for (auto _ : state) {
    const auto got = journal.engine->read_stream(kReadStream, {});
    if (!got.ok()) return state.SkipWithError(got.status().to_string().c_str());
    const std::vector<ae::Event>& stream = got.value();
    if (stream.size() != kReadStreamEvents || stream.front().header.version != 0 ||
        stream.back().header.version != kReadStreamEvents - 1) {
      return state.SkipWithError("the stream did not read back whole and in order");
    }
    read += stream.size();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(read));
  state.counters["journal_events"] = static_cast<double>(events);
  state.counters["segments_MB"] = static_cast<double>(journal.bytes) / 1e6;  // the files, preallocated tails too
  state.counters["load_s"] = journal.load_s;
  state.counters["open_warm_s"] = journal.open_warm_s;
  state.counters["open_cold_s"] = journal.open_cold_s;
  state.SetLabel(std::to_string(kReadStreamEvents) + " of " + std::to_string(events) +
                 " events, forwards, page cache warm; load_s: appending them all (durability=none); "
                 "open_*: Engine::open of the whole journal");
}

// ---- engine_recover_10M ------------------------------------------------------------------------

// 10M events like engine_read_stream's, with the engine's state snapshotted one default interval
// before the end and not after: the most a crash leaves to replay with the default options.
// full_replay hides the snapshot files for the run, so open() reads all 10M records.
constexpr std::uint64_t kRecoverEvents = 10'000'000;
const std::uint64_t kRecoverTail = ae::Options{}.state_snapshot_every_events;

struct RecoverJournal {
  std::unique_ptr<ScratchDir> dir;
  std::string error;
  std::uint64_t bytes = 0;
  std::map<std::uint64_t, std::uint64_t> bytes_from;  // replayed_bytes() by sequence, once each
};

annal::Status build_recover_journal(RecoverJournal& out) {
  out.dir = std::make_unique<ScratchDir>("recover");
  ae::Options loading;
  loading.journal.durability = annal::journal::Durability::none;
  loading.state_snapshot_every_events = std::uint64_t{1} << 62;  // none while loading; one at close
  for (const std::uint64_t events : {kRecoverEvents - kRecoverTail, kRecoverTail}) {
    auto engine = ae::Engine::open(out.dir->str(), loading);
    if (!engine.ok()) return engine.status();
    if (annal::Status loaded = load(*engine.value(), events); !loaded.ok()) return loaded;
    if (annal::Status closed = engine.value()->close(); !closed.ok()) return closed;
    loading.state_snapshot_every_events = 0;  // the tail: no snapshot covers it
  }
  for (const auto& entry : fs::directory_iterator(out.dir->str())) {
    if (entry.is_regular_file() && entry.path().extension() == ".log") out.bytes += entry.file_size();
  }
  return {};
}

// Renames the engine's state snapshots out of sight (hide) or back.
void hide_state_snapshots(const std::string& directory, bool hide) {
  const std::string shown = "snapshot-_engine-", hidden = "hidden-_engine-";
  for (const auto& entry : fs::directory_iterator(directory)) {
    const std::string name = entry.path().filename().string();
    const std::string& from = hide ? shown : hidden;
    if (name.starts_with(from)) fs::rename(entry.path(), entry.path().parent_path() / ((hide ? hidden : shown) + name.substr(from.size())));
  }
}

// Bytes of the journal's records from `from` to the end: what open() replays after a snapshot.
annal::Result<std::uint64_t> replayed_bytes(const std::string& directory, std::uint64_t from) {
  // At the engine's index interval: at another, open() would distrust the sealed segments' index
  // files, scan them all and rewrite the files, and the next Engine::open would do it again.
  annal::journal::Options options = ae::Options{}.journal;
  options.index_interval_bytes = ae::Options{}.index_interval_bytes;
  auto journal = annal::journal::Journal::open(directory, options);
  if (!journal.ok()) return journal.status();
  auto reader = journal.value()->reader(from);
  if (!reader.ok()) return reader.status();
  std::uint64_t bytes = 0;
  for (;;) {
    const auto record = reader.value()->next();
    if (!record.ok()) return record.status();
    if (!record.value()) break;
    bytes += annal::journal::padded_record_bytes(record.value()->payload.size());
  }
  if (annal::Status closed = journal.value()->close(); !closed.ok()) return closed;
  return bytes;
}

// Time is open()'s, real time: the journal's recovery, the state snapshot, the replay, the start.
// replay_* divide what was replayed by that whole time.
void BM_EngineRecover(benchmark::State& state, bool snapshots) {
  static RecoverJournal journal;
  if (!journal.dir && journal.error.empty()) {
    if (annal::Status built = build_recover_journal(journal); !built.ok()) journal.error = built.to_string();
  }
  if (!journal.error.empty()) return state.SkipWithError(journal.error.c_str());
  ae::Options options;
  options.state_snapshot_every_events = 0;  // close() must not write a new one
  std::uint64_t replayed = 0, snapshot_at = 0;
  double seconds = 0;
  if (!snapshots) hide_state_snapshots(journal.dir->str(), true);
  for (auto _ : state) {
    const auto start = Clock::now();
    auto engine = ae::Engine::open(journal.dir->str(), options);
    const double opened = seconds_since(start);
    if (!engine.ok()) {
      state.SkipWithError(engine.status().to_string().c_str());
      break;
    }
    state.SetIterationTime(opened);
    seconds += opened;
    replayed = engine.value()->open_report().records_replayed;
    snapshot_at = engine.value()->open_report().state_snapshot;
    if (annal::Status closed = engine.value()->close(); !closed.ok()) {
      state.SkipWithError(closed.to_string().c_str());
      break;
    }
  }
  if (!snapshots) hide_state_snapshots(journal.dir->str(), false);
  if (state.iterations() == 0 || seconds == 0) return;
  if (!journal.bytes_from.contains(snapshot_at + 1)) {
    const auto bytes = replayed_bytes(journal.dir->str(), snapshot_at + 1);
    if (!bytes.ok()) return state.SkipWithError(bytes.status().to_string().c_str());
    journal.bytes_from[snapshot_at + 1] = bytes.value();
  }
  const std::uint64_t bytes = journal.bytes_from[snapshot_at + 1];
  const double per_open = seconds / static_cast<double>(state.iterations());
  state.counters["open_ms"] = per_open * 1e3;
  state.counters["records_replayed"] = static_cast<double>(replayed);
  state.counters["replayed_MB"] = static_cast<double>(bytes) / 1e6;
  state.counters["replay_events_per_second"] = static_cast<double>(replayed) / per_open;
  state.counters["replay_MBps"] = static_cast<double>(bytes) / per_open / 1e6;
  state.counters["journal_MB"] = static_cast<double>(journal.bytes) / 1e6;
  state.SetLabel(snapshots ? "state snapshot at sequence " + std::to_string(snapshot_at) + ", " +
                                 std::to_string(kRecoverTail) + " events after it (one default interval), page cache warm"
                           : "no snapshot: all " + std::to_string(kRecoverEvents) + " events, page cache warm");
}

// ---- engine_state_snapshot ---------------------------------------------------------------------

// What a state snapshot costs against the number of streams: encoding (under the sequencing lock,
// so appends wait for it) and decoding (open). Every stream named
// and indexed, one event type, the idempotency window full at its default size. Time is the encode.
void BM_EngineStateSnapshot(benchmark::State& state, std::uint64_t streams) {
  const ae::Options defaults;
  ae::Catalog catalog;
  ae::StreamIndex index;
  ae::IdempotencyWindow window(defaults.idempotency_window);
  for (std::uint64_t n = 0; n < streams; ++n) {
    if (annal::Status added = catalog.add_stream(catalog.next_stream_id(), "stream-" + std::to_string(n)); !added.ok()) {
      return state.SkipWithError(added.to_string().c_str());
    }
    index.put(ae::kNamedStreamBit | n, {.last_version = n % 100, .last_sequence = n + 1});
  }
  if (annal::Status added = catalog.add_type(catalog.next_type_id(), "Appended"); !added.ok()) {
    return state.SkipWithError(added.to_string().c_str());
  }
  for (std::uint64_t i = 1; i <= defaults.idempotency_window; ++i) {
    window.remember({.hi = i, .lo = i}, {.first_sequence = i, .last_sequence = i, .stream_id = ae::kNamedStreamBit}, 0);
  }
  double decode = 0;
  std::size_t bytes = 0;
  for (auto _ : state) {
    auto start = Clock::now();
    const std::vector<std::byte> encoded = ae::encode_engine_state(catalog, index, window);
    state.SetIterationTime(seconds_since(start));
    bytes = encoded.size();
    ae::Catalog decoded_catalog;
    ae::StreamIndex decoded_index;
    ae::IdempotencyWindow decoded_window(defaults.idempotency_window);
    start = Clock::now();
    const auto decoded = ae::decode_engine_state(encoded, decoded_catalog, decoded_index, decoded_window);
    decode += seconds_since(start);
    if (!decoded.ok()) return state.SkipWithError(decoded.status().to_string().c_str());
  }
  state.counters["decode_ms"] = decode / static_cast<double>(state.iterations()) * 1e3;
  state.counters["state_MB"] = static_cast<double>(bytes) / 1e6;
  state.SetLabel(std::to_string(streams) + " named streams, idempotency window of " +
                 std::to_string(defaults.idempotency_window) + "; time: encode (appends wait)");
}

// ---- engine_stream_index ----------------------------------------------------------------------

constexpr std::uint64_t kIndexStreams = 1'000'000;

// Each iteration: a new index; 1M streams inserted in the order the engine names them (ids
// kNamedStreamBit | n), 1M updates and 1M lookups (find, the readers' path, under the shared lock)
// of random streams, then the index destroyed. Each phase's time per operation is a counter.
template <template <class> class Allocator>
void BM_StreamIndex(benchmark::State& state, const std::string& heap) {
  std::mt19937_64 random(42);
  std::vector<std::uint64_t> picks(kIndexStreams);
  for (auto& pick : picks) pick = ae::kNamedStreamBit | (random() % kIndexStreams);
  double insert = 0, update = 0, lookup = 0, destroy = 0;
  std::uint64_t sum = 0;
  for (auto _ : state) {
    auto start = Clock::now();
    auto index = std::make_unique<ae::BasicStreamIndex<Allocator>>();
    for (std::uint64_t n = 0; n < kIndexStreams; ++n) index->put(ae::kNamedStreamBit | n, {0, n + 1});
    insert += seconds_since(start);
    start = Clock::now();
    for (std::uint64_t i = 0; i < kIndexStreams; ++i) index->put(picks[i], {i, kIndexStreams + i});
    update += seconds_since(start);
    start = Clock::now();
    for (const std::uint64_t pick : picks) sum += index->find(pick)->last_sequence;
    lookup += seconds_since(start);
    start = Clock::now();
    index.reset();
    destroy += seconds_since(start);
  }
  benchmark::DoNotOptimize(sum);
  const double operations = static_cast<double>(state.iterations()) * static_cast<double>(kIndexStreams);
  state.counters["insert_ns"] = insert / operations * 1e9;
  state.counters["update_ns"] = update / operations * 1e9;
  state.counters["lookup_ns"] = lookup / operations * 1e9;
  state.counters["destroy_ns"] = destroy / operations * 1e9;
  state.SetItemsProcessed(static_cast<std::int64_t>(3 * operations));  // inserts, updates, lookups
  state.SetLabel(heap + ", 1M streams; items = inserts + updates + lookups");
}

}  // namespace

int main(int argc, char** argv) {
  // The same work in every repetition of each writer benchmark: 100 x 8 x 64 appends. Left to
  // itself, Google Benchmark sizes the run on the main thread's CPU time (near zero here) and stops
  // only once a trial passes 5 x min_time of wall time, so a repetition ran either 100 or 1,000
  // iterations, whichever the disk's mood of the moment gave.
  for (const int threads : {1, 2}) {
    benchmark::RegisterBenchmark(("engine_saturate_64B/annal/threads:" + std::to_string(threads)).c_str(),
                                 BM_EngineSaturate64B, threads)
        ->Unit(benchmark::kMillisecond);
  }
  benchmark::RegisterBenchmark("journal_append_64B/group_commit", [](benchmark::State& state) {
    annal::bench::run_saturating(state, kSaturateEventBytes, {.durability = annal::journal::Durability::group_commit});
  })->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("journal_durable_8w/annal", annal::bench::BM_Durable8wAnnal,
                               annal::journal::IoKind::io_uring)
      ->Iterations(kWriterIterations)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("engine_append_8w/annal", BM_EngineAppend8w, ae::Sequencing::caller_lock, false)
      ->Iterations(kWriterIterations)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("engine_append_8w/annal_encrypted", BM_EngineAppend8w, ae::Sequencing::caller_lock, true)
      ->Iterations(kWriterIterations)
      ->Unit(benchmark::kMillisecond);
  // The alternative hand-off (docs/engine.md, "Appends"): measured, not assumed.
  benchmark::RegisterBenchmark("engine_append_8w/annal_sequencer_thread", BM_EngineAppend8w,
                               ae::Sequencing::sequencer_thread, false)
      ->Iterations(kWriterIterations)
      ->Unit(benchmark::kMillisecond);
  // Issue 5: the same appends with two projections following them, both gated on durability, and
  // with the order book eager.
  benchmark::RegisterBenchmark("engine_e2e_2proj/annal", BM_EngineE2e2Proj, ae::Gating::durable)
      ->Iterations(kWriterIterations)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("engine_e2e_2proj/annal_eager", BM_EngineE2e2Proj, ae::Gating::eager)
      ->Iterations(kWriterIterations)
      ->Unit(benchmark::kMillisecond);
  // At 100,000 single-event appends a second, and at half of what batches of 16 reach flat out.
  for (const bool projections : {false, true}) {
    const std::string contender = projections ? "annal_2proj" : "annal";
    for (const auto& [row, pace] : {std::pair{std::string("rate:100000"), Pace{.rate = 100'000, .batch = 1}},
                                    std::pair{std::string("half_saturation/batch:16"), Pace{.rate = 0, .batch = 16}}}) {
      benchmark::RegisterBenchmark(("engine_latency_at_rate/" + contender + "/" + row).c_str(), BM_EngineLatencyAtRate,
                                   pace, projections)
          ->Iterations(1)
          ->Unit(benchmark::kMillisecond);
    }
  }
  // Issue 18 goal 6: with two durable projections against without, at saturation.
  for (const bool projections : {false, true}) {
    benchmark::RegisterBenchmark(projections ? "engine_e2e_saturated/annal_2proj" : "engine_e2e_saturated/annal",
                                 BM_EngineE2eSaturated, projections)
        ->Iterations(3)
        ->Unit(benchmark::kMillisecond);
  }
  benchmark::RegisterBenchmark("engine_read_stream/annal", BM_EngineReadStream, std::uint64_t{10'000'000})
      ->Unit(benchmark::kMicrosecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark("engine_read_stream/annal_1M", BM_EngineReadStream, std::uint64_t{1'000'000})
      ->Unit(benchmark::kMicrosecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark("engine_recover_10M/snapshots", BM_EngineRecover, true)
      ->Unit(benchmark::kMillisecond)
      ->UseManualTime();
  benchmark::RegisterBenchmark("engine_recover_10M/full_replay", BM_EngineRecover, false)
      ->Unit(benchmark::kMillisecond)
      ->UseManualTime();
  for (const std::uint64_t streams : {10'000, 100'000, 1'000'000}) {
    const std::string name = "engine_state_snapshot/" + std::to_string(streams / 1000) + "k_streams";
    benchmark::RegisterBenchmark(name.c_str(), BM_EngineStateSnapshot, streams)
        ->Unit(benchmark::kMillisecond)
        ->UseManualTime();
  }
  // The engine's heap (mimalloc, loaded privately: engine/src/heap.h) against std::allocator, which
  // is glibc's malloc since nothing overrides it.
  benchmark::RegisterBenchmark("engine_stream_index/mimalloc", BM_StreamIndex<ae::HeapAllocator>,
                               std::string("heap=") + ae::heap().name)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("engine_stream_index/glibc", BM_StreamIndex<std::allocator>,
                               std::string("heap=glibc malloc (std::allocator)"))
      ->Unit(benchmark::kMillisecond);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
