// Real crashes of the engine: a child process appends from several threads, each to streams of its
// own, with expected versions, and reports through a pipe every append it has seen become durable
// (by wait_durable, durable_future or on_durable); the parent SIGKILLs it at a random moment timed
// from those reports (kill_timing.h), reopens the engine and checks that every reported append is
// there at the reported sequences, that every append is whole, that each stream's versions are
// contiguous and read the same forwards, backwards and in the global log. Then the next child carries on from there.
//
// Every event is a function of its stream and version (payload, type, ids, and how a stream's
// versions are cut into appends), so the parent checks bytes without being told them, and a
// child that starts after a crash can rebuild a stream's last append and retry it: the
// idempotency window, rebuilt from the journal at open, must answer with the original receipt.
//
// Each child also runs two projections, one gated on durability and one eager, snapshotted every
// 50 to 200 events, and notes in memory shared with the parent what they applied and when each
// snapshot was taken. After the kill the parent adds fresh instances and checks that each restored
// the newest snapshot at or below the recovered end of the log, replayed exactly the events after
// it, no more than the bound check_recovery derives, and reached the state of a from-scratch replay.
//
// The journal alternates direct_io and the io_uring/POSIX backends between children, so each hands
// its journal to the others. ANNAL_ENGINE_CRASH_KILLS sets the number of kills (default 40, a few
// seconds under ASan; each round reads every stream whole and replays the log into the
// projections, so 400 take about six minutes on two busy cores), the second half of them with
// encryption at rest on;
// ANNAL_ENGINE_CRASH_SEED the seed of the parent's choices and the children's (default: random,
// printed). The kill times depend on the scheduler, so a seed repeats a run's choices, not its
// exact interleaving.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <future>
#include <memory>
#include <new>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "annal/engine/engine.h"
#include "annal/snapshots/snapshot_format.h"
#include "counter_projection.h"
#include "kill_timing.h"
#include "master_keys.h"
#include "watchdog.h"

namespace annal::engine {
namespace {

using namespace std::chrono_literals;

constexpr int kThreads = 4;
constexpr int kStreamsPerThread = 24;
constexpr int kStreams = kThreads * kStreamsPerThread;
constexpr std::uint64_t kAppendEventsMax = 4;
// on_durable acknowledgements a thread leaves pending before it waits: appends in flight at a kill.
constexpr int kCallbacksPendingMax = 16;
constexpr std::size_t kIdempotencyWindow = 1u << 16;
// Every wait in the child; the parent kills it long before.
constexpr auto kChildWait = 30s;

std::uint64_t mix(std::uint64_t a, std::uint64_t b);

// The second half of the rounds run encrypted (Options::encryption): the store turns from clear to
// sealed between two kills (a kill may land while the open writes KEYS), and every later open,
// recovery and check reads sealed records and snapshots. The master key is made before the first
// fork, so the children share it; rounds from first_encrypted_kill on, set by the test.
int first_encrypted_kill = INT_MAX;
const std::shared_ptr<annal::test::MasterKeys> master_keys = std::make_shared<annal::test::MasterKeys>();

// The options of the child of round `kill`. Besides what alternates, the segment size (rollovers
// every few rounds, or fewer) and the event limit vary by round, so opens recover segments and
// events made under other limits than their own.
Options options_for(int kill) {
  Options options;
  options.journal.segment_bytes_max = mix(kill, 1) % 2 == 0 ? 1 << 20 : 3 << 19;
  options.journal.commit_bytes_max = 256 << 10;
  options.journal.direct_io = kill % 2 == 1;
  options.journal.io = kill % 4 < 2 ? journal::IoKind::io_uring : journal::IoKind::posix;
  options.event_bytes_max = mix(kill, 2) % 2 == 0 ? 32 << 10 : 24 << 10;  // payload_for needs 24 KiB
  options.idempotency_window = kIdempotencyWindow;
  // State snapshots often (a kill lands during one), rarely, or never: each open starts from the
  // newest one the kill left, or from the whole journal.
  options.state_snapshot_every_events = kill % 3 == 0 ? 0 : (kill % 3 == 1 ? 40 : 500);
  if (kill >= first_encrypted_kill) options.encryption = master_keys;
  return options;
}

// ---- Streams and their events, all functions of (stream key, version) ----

// Stream `key` belongs to thread key / kStreamsPerThread. Even keys are named, odd ones use an id.
bool named(int key) { return key % 2 == 0; }
const std::string& name_of(int key) {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (int k = 0; k < kStreams; ++k) {
      out.push_back("account-" + std::to_string(k / kStreamsPerThread) + "-" + std::to_string(k % kStreamsPerThread));
    }
    return out;
  }();
  return names[static_cast<std::size_t>(key)];
}
std::uint64_t id_of(int key) { return 1000 + static_cast<std::uint64_t>(key); }
StreamRef ref_for(int key) { return named(key) ? StreamRef(name_of(key)) : StreamRef::id(id_of(key)); }
std::string describe(int key) { return named(key) ? name_of(key) : "stream " + std::to_string(id_of(key)); }

std::uint64_t mix(std::uint64_t a, std::uint64_t b) {  // splitmix64's finaliser
  std::uint64_t z = a * 0x9E3779B97F4A7C15ull + b + 0x632BE59BD9B4E5C9ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
std::uint64_t mix(int key, std::uint64_t version) { return mix(static_cast<std::uint64_t>(key), version); }

// How a stream's versions are cut into appends: the one starting at `first` has this many events.
std::uint64_t append_events(int key, std::uint64_t first) { return 1 + mix(key, first) % kAppendEventsMax; }
// Whether the append starting at `first` carries event ids (a third do).
bool has_ids(int key, std::uint64_t first) { return (mix(key, first) >> 20) % 3 == 0; }
Id128 event_id_for(int key, std::uint64_t version) { return {.hi = 0xA22A1000u + static_cast<std::uint64_t>(key), .lo = version + 1}; }
Id128 correlation_for(int key, std::uint64_t version) {
  return mix(key, version) % 5 == 0 ? Id128{.hi = version + 1, .lo = mix(version, 77)} : Id128{};
}
std::string_view type_for(int key, std::uint64_t version) {
  static constexpr std::array<std::string_view, 5> kTypes = {"Opened", "Credited", "Debited", "Frozen", "Closed"};
  return kTypes[mix(version, static_cast<std::uint64_t>(key)) % kTypes.size()];
}
std::vector<std::byte> payload_for(int key, std::uint64_t version) {
  const std::uint64_t h = mix(key + 7919, version);
  // Mostly small; sometimes empty; sometimes larger than a ring slot and a stream read's chunk.
  const std::size_t size = h % 29 == 0 ? 0 : h % 53 == 0 ? 20000 + h % 4096 : 8 + h % 300;
  std::vector<std::byte> out(size);
  for (std::size_t i = 0; i < size; ++i) out[i] = static_cast<std::byte>((h >> (i % 7 * 8)) + i);
  return out;
}

// The append that starts at version `first`, with the storage its spans point into.
struct Append {
  std::uint64_t first = 0;
  std::vector<std::vector<std::byte>> payloads;
  std::vector<EventData> events;

  [[nodiscard]] std::uint64_t last() const { return first + events.size() - 1; }
  [[nodiscard]] ExpectedVersion expected() const {
    return first == 0 ? ExpectedVersion::no_stream() : ExpectedVersion::exactly(first - 1);
  }
};

Append append_for(int key, std::uint64_t first) {
  Append out;
  out.first = first;
  const std::uint64_t n = append_events(key, first);
  for (std::uint64_t v = first; v < first + n; ++v) out.payloads.push_back(payload_for(key, v));
  for (std::uint64_t v = first; v < first + n; ++v) {
    out.events.push_back({.type = type_for(key, v), .payload = out.payloads[v - first],
                          .event_id = has_ids(key, first) ? event_id_for(key, v) : Id128{},
                          .correlation_id = correlation_for(key, v)});
  }
  return out;
}

// The first version of the append that ends at `last`, or nullopt if no append ends there.
std::optional<std::uint64_t> append_ending_at(int key, std::uint64_t last) {
  std::uint64_t first = 0;
  while (first + append_events(key, first) - 1 < last) first += append_events(key, first);
  if (first + append_events(key, first) - 1 != last) return std::nullopt;
  return first;
}

// ---- What the child tells the parent ----

struct Report {
  static constexpr std::uint32_t kReady = 1;      // the engine is open, its projections added (no append)
  static constexpr std::uint32_t kDuplicate = 2;  // a retry answered with the original receipt

  std::uint32_t key = 0;
  std::uint32_t flags = 0;
  std::uint64_t stream_id = 0;
  std::uint64_t first_version = 0;
  std::uint64_t last_version = 0;
  std::uint64_t first_sequence = 0;
  std::uint64_t last_sequence = 0;
};
// One write() per report, so reports from any number of threads arrive whole.
static_assert(sizeof(Report) <= PIPE_BUF);

Report report_of(int key, const Receipt& receipt, std::uint32_t flags) {
  return {.key = static_cast<std::uint32_t>(key), .flags = flags, .stream_id = receipt.stream_id,
          .first_version = receipt.first_version, .last_version = receipt.last_version,
          .first_sequence = receipt.first_sequence, .last_sequence = receipt.last_sequence};
}

// ---- The projections every child runs ----

// One gated on durability, one eager (ahead of the durable log: its snapshots past the end a kill
// leaves must be discarded at the next open).
struct ProjectionSetup {
  std::string_view name;
  Gating gating;
};
constexpr std::array<ProjectionSetup, 2> kProjections = {{{"durable", Gating::durable}, {"eager", Gating::eager}}};
constexpr std::size_t kProjectionCount = kProjections.size();

// Snapshots every 50 to 200 events, varied by round and projection; never by time.
ProjectionOptions projection_options(int kill, std::size_t p) {
  return {.snapshot_every_events = 50 + mix(kill, p) % 151, .snapshot_every = 0ms, .snapshots_kept = 2,
          .gating = kProjections[p].gating};
}

// The most events a child has appended and not yet seen durable: a thread has at most
// kCallbacksPendingMax + 1 appends in flight (acknowledge() waits for them beyond that), each of at
// most kAppendEventsMax events. No group commit makes more durable at once: this is the largest
// "batch" a durable projection can find waiting after a kill while it keeps up (name records are
// not counted: a projection never applies them).
constexpr std::uint64_t kEventsInFlightMax = kThreads * (kCallbacksPendingMax + 1) * kAppendEventsMax;

// What a child's projection did, kept where the parent reads it after the kill: an anonymous
// shared mapping made before the first fork, whose pages outlive each child. One thread writes
// it (the projection's); the parent reads it after waitpid, when the child is gone.
struct ProjectionTrace {
  static constexpr std::size_t kTakenMax = 4096;  // far more than a child lives to take

  std::atomic<std::uint64_t> applied;  // the last event applied this session (0: none)
  std::atomic<std::uint64_t> taken;    // snapshots taken this session
  std::array<std::atomic<std::uint64_t>, kTakenMax> taken_at;  // their sequences, ascending

  void reset() {
    applied.store(0, std::memory_order_relaxed);
    taken.store(0, std::memory_order_relaxed);
  }
  void note_taken(std::uint64_t sequence) {
    const std::uint64_t n = taken.load(std::memory_order_relaxed);
    if (n < kTakenMax) taken_at[n].store(sequence, std::memory_order_relaxed);
    // Release: a kill between the two stores leaves the count short, never an unwritten entry.
    taken.store(n + 1, std::memory_order_release);
  }
  [[nodiscard]] std::span<const std::atomic<std::uint64_t>> taken_list() const {
    return std::span(taken_at).first(std::min<std::uint64_t>(taken.load(std::memory_order_acquire), kTakenMax));
  }
  // The newest snapshot taken at or below `sequence` (0: none).
  [[nodiscard]] std::uint64_t newest_taken_through(std::uint64_t sequence) const {
    std::uint64_t newest = 0;
    for (const auto& at : taken_list()) {
      if (at.load(std::memory_order_relaxed) <= sequence) newest = at.load(std::memory_order_relaxed);
    }
    return newest;
  }
  [[nodiscard]] bool took(std::uint64_t sequence) const {
    return std::ranges::any_of(taken_list(),
                               [&](const auto& at) { return at.load(std::memory_order_relaxed) == sequence; });
  }
};
// Atomics in memory two processes share must not hide a lock in one process's memory.
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
using Traces = std::array<ProjectionTrace, kProjectionCount>;

struct Unmap {
  void operator()(Traces* traces) const {
    traces->~Traces();
    ::munmap(traces, sizeof(Traces));
  }
};
using SharedTraces = std::unique_ptr<Traces, Unmap>;

SharedTraces map_traces() {
  void* memory = ::mmap(nullptr, sizeof(Traces), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) return nullptr;
  return SharedTraces(new (memory) Traces{});
}

// The child's projection: a Counter that notes each event it applies and each snapshot the engine
// takes of it. snapshot() runs on the projection's thread at the sequence it has applied, the one
// the snapshot file is named after, before the state goes to the snapshot writer.
class Traced final : public Projection {
 public:
  explicit Traced(ProjectionTrace& trace) : trace_(trace) {}

  void apply(const EventView& event) override {
    counter_.apply(event);
    trace_.applied.store(event.header.sequence, std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint32_t schema() const override { return counter_.schema(); }
  [[nodiscard]] std::vector<std::byte> snapshot() const override {
    std::vector<std::byte> state = counter_.snapshot();
    trace_.note_taken(trace_.applied.load(std::memory_order_relaxed));
    return state;
  }
  Status restore(std::span<const std::byte> state) override { return counter_.restore(state); }
  // The Counter's (its own snapshot() notes nothing).
  [[nodiscard]] std::optional<std::uint64_t> digest() const override {
    return static_cast<const Projection&>(counter_).digest();
  }

 private:
  test::Counter counter_;
  ProjectionTrace& trace_;
};

// ---- The child ----

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "engine crash child: %s\n", what.c_str());
  _exit(3);
}

void send(int fd, const Report& report) {
  if (::write(fd, &report, sizeof(report)) != static_cast<ssize_t>(sizeof(report))) {
    die(std::string("report pipe: ") + std::strerror(errno));
  }
}

std::string describe(const Receipt& r) {
  return "receipt versions " + std::to_string(r.first_version) + "-" + std::to_string(r.last_version) +
         " sequences " + std::to_string(r.first_sequence) + "-" + std::to_string(r.last_sequence) +
         " stream " + std::to_string(r.stream_id) + (r.duplicate ? " (duplicate)" : "");
}

// A killed process's io_uring may hold the directory lock for a moment after it dies.
Result<std::unique_ptr<Engine>> open_engine(const std::string& dir, const Options& options) {
  const auto deadline = std::chrono::steady_clock::now() + 60s;  // a hang guard
  for (;;) {
    auto engine = Engine::open(dir, options);
    const bool retry = engine.code() == ErrorCode::locked && std::chrono::steady_clock::now() < deadline;
    if (engine.ok() || !retry) return engine;
    std::this_thread::sleep_for(10ms);
  }
}

// One appending thread of the child, over the streams it owns: expected versions never conflict.
class Appender {
 public:
  Appender(Engine& engine, int thread, int fd, std::uint64_t seed)
      : engine_(engine), thread_(thread), fd_(fd), random_(mix(seed, static_cast<std::uint64_t>(thread))) {
    for (int k = 0; k < kStreamsPerThread; ++k) last_[k] = engine_.stream_version(ref_for(key(k)));
  }

  [[noreturn]] void run() {
    for (;;) append_next(key(static_cast<int>(random_() % kStreamsPerThread)));
  }

 private:
  [[nodiscard]] int key(int k) const { return thread_ * kStreamsPerThread + k; }

  void append_next(int key) {
    std::optional<std::uint64_t>& last = last_[key % kStreamsPerThread];
    const Append append = append_for(key, last ? *last + 1 : 0);
    if (random_() % 16 == 0) expect_conflict(key, append, last);
    const AppendResult result = engine_.append(ref_for(key), append.expected(), append.events);
    if (!result.ok()) die("append to " + describe(key) + " at version " + std::to_string(append.first) + ": " +
                          result.status().to_string());
    const Receipt& receipt = result.value();
    if (receipt.duplicate || receipt.first_version != append.first || receipt.last_version != append.last() ||
        receipt.last_sequence - receipt.first_sequence != append.last() - append.first ||
        receipt.stream_id != (named(key) ? engine_.find_stream(name_of(key)).value_or(0) : id_of(key))) {
      die("append to " + describe(key) + " at version " + std::to_string(append.first) + ": " + describe(receipt));
    }
    last = receipt.last_version;
    if (has_ids(key, append.first) && random_() % 4 == 0) expect_duplicate(key, append, receipt);
    acknowledge(key, receipt);
  }

  // A wrong expected version is refused and writes nothing; the append's ids stay unused.
  void expect_conflict(int key, const Append& append, std::optional<std::uint64_t> last) {
    const ExpectedVersion wrong = ExpectedVersion::exactly(last ? *last + 1 : 0);
    const AppendResult result = engine_.append(ref_for(key), wrong, append.events);
    if (result.code() != ErrorCode::conflict || result.current_version() != last) {
      die("append to " + describe(key) + " expecting " + wrong.to_string() + ": " +
          (result.ok() ? describe(result.value()) : result.status().to_string()));
    }
  }

  // The same append again (a client retrying): the original receipt, nothing written.
  void expect_duplicate(int key, const Append& append, const Receipt& original) {
    const AppendResult result = engine_.append(ref_for(key), append.expected(), append.events);
    if (!result.ok() || !result.value().duplicate || result.value().first_sequence != original.first_sequence ||
        result.value().last_sequence != original.last_sequence ||
        result.value().first_version != original.first_version ||
        result.value().last_version != original.last_version || result.value().stream_id != original.stream_id) {
      die("repeated append to " + describe(key) + " (original " + describe(original) + "): " +
          (result.ok() ? describe(result.value()) : result.status().to_string()));
    }
  }

  // Reports the receipt once it is durable, by one of the three ways the engine offers.
  void acknowledge(int key, const Receipt& receipt) {
    const Report report = report_of(key, receipt, 0);
    switch (random_() % 3) {
      case 0: return wait_durable(receipt, report);
      case 1: {
        auto future = engine_.durable_future(receipt);
        if (future.wait_for(kChildWait) != std::future_status::ready) die("durable_future: no answer");
        if (Status s = future.get(); !s.ok()) die("durable_future: " + s.to_string());
        return send(fd_, report);
      }
      default: {
        pending_.fetch_add(1, std::memory_order_relaxed);
        engine_.on_durable(receipt, [this, report](const Status& s) {
          if (!s.ok()) die("on_durable: " + s.to_string());
          send(fd_, report);
          pending_.fetch_sub(1, std::memory_order_relaxed);
        });
        // Bounds the appends in flight: the wait covers every earlier one too.
        if (pending_.load(std::memory_order_relaxed) > kCallbacksPendingMax) {
          if (Status s = engine_.wait_durable(receipt, Engine::Clock::now() + kChildWait); !s.ok()) {
            die("wait_durable: " + s.to_string());
          }
        }
      }
    }
  }

  void wait_durable(const Receipt& receipt, const Report& report) {
    if (Status s = engine_.wait_durable(receipt, Engine::Clock::now() + kChildWait); !s.ok()) {
      die("wait_durable: " + s.to_string());
    }
    send(fd_, report);
  }

  Engine& engine_;
  const int thread_;
  const int fd_;
  std::mt19937_64 random_;
  std::array<std::optional<std::uint64_t>, kStreamsPerThread> last_{};
  std::atomic<int> pending_{0};  // on_durable callbacks not yet run
};

// Retries the last append of stream `key`, as a client that never got its answer before the crash
// would: the idempotency window, rebuilt from the journal, must return the original receipt.
void retry_last_append(Engine& engine, int key, int fd) {
  const auto last = engine.stream_version(ref_for(key));
  if (!last) return;
  const auto first = append_ending_at(key, *last);
  if (!first) die(describe(key) + ": version " + std::to_string(*last) + " ends no whole append");
  if (!has_ids(key, *first)) return;
  const ReadStreamOptions newest{.from_version = *last, .direction = Direction::backwards, .max_count = 1};
  const auto read = engine.read_stream(ref_for(key), newest, Engine::Clock::now() + kChildWait);
  if (!read.ok() || read.value().size() != 1) die("read_stream " + describe(key) + ": " + read.status().to_string());
  const std::uint64_t last_sequence = read.value()[0].header.sequence;
  const std::uint64_t first_sequence = last_sequence - (*last - *first);
  // The window keeps the newest kIdempotencyWindow ids, and fewer ids than records came since.
  if (engine.last_sequence() - first_sequence >= kIdempotencyWindow) return;
  const Append append = append_for(key, *first);
  const AppendResult result = engine.append(ref_for(key), append.expected(), append.events);
  if (!result.ok() || !result.value().duplicate || result.value().first_sequence != first_sequence ||
      result.value().last_sequence != last_sequence || result.value().first_version != *first ||
      result.value().last_version != *last || result.value().stream_id != read.value()[0].header.stream_id) {
    die("retry after restart of " + describe(key) + " versions " + std::to_string(*first) + "-" +
        std::to_string(*last) + " at sequences " + std::to_string(first_sequence) + "-" +
        std::to_string(last_sequence) + ": " +
        (result.ok() ? describe(result.value()) : result.status().to_string()));
  }
  send(fd, report_of(key, result.value(), Report::kDuplicate));  // durable already: it was recovered
}

[[noreturn]] void child(const std::string& dir, int kill, Traces& traces, int fd, std::uint64_t seed) {
  auto opened = open_engine(dir, options_for(kill));
  if (!opened.ok()) die("open: " + opened.status().to_string());
  Engine& engine = *opened.value();
  for (std::size_t p = 0; p < kProjectionCount; ++p) {
    const Status added = engine.add_projection(kProjections[p].name, std::make_shared<Traced>(traces[p]),
                                               projection_options(kill, p));
    if (!added.ok()) die("add_projection " + std::string(kProjections[p].name) + ": " + added.to_string());
  }
  send(fd, Report{.flags = Report::kReady});
  // Retries first, before any thread appends, so the window cannot move under them.
  std::mt19937_64 random(seed);
  for (int key = 0; key < kStreams; ++key) {
    if (random() % 4 == 0) retry_last_append(engine, key, fd);
  }
  std::vector<std::unique_ptr<Appender>> appenders;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) appenders.push_back(std::make_unique<Appender>(engine, t, fd, seed));
  for (auto& appender : appenders) threads.emplace_back([&appender] { appender->run(); });
  for (auto& thread : threads) thread.join();
  die("the appenders returned");
}

// ---- The parent ----

// Reads one whole report, waiting up to `timeout` for it; nullopt at end of file or timeout.
std::optional<Report> read_report(int fd, std::chrono::milliseconds timeout) {
  Report report;
  if (!annal::test::read_exactly(fd, &report, sizeof(report), annal::test::KillTiming::Clock::now() + timeout)) {
    return std::nullopt;
  }
  return report;
}

// What the recoveries of one projection came to (check_recovery explains the terms).
struct RecoveryTotals {
  int from_snapshot = 0;                 // recoveries that restored a snapshot (not the log's start)
  int within_interval_and_append = 0;    // replayed at most snapshot_every_events + kAppendEventsMax
  int within_interval_and_commit = 0;    // replayed at most snapshot_every_events + kEventsInFlightMax
  int discarded = 0;                     // opens that removed a snapshot past the recovered log
  int writer_behind = 0;                 // kills with a snapshot taken but not yet in place
  std::uint64_t taken = 0;               // snapshots the children took
  std::uint64_t replayed_max = 0;
  std::uint64_t writer_lag_max = 0;      // events between the restored snapshot and the newest taken
  std::uint64_t projection_lag_max = 0;  // durable events the child's projection had not applied
};

struct Totals {
  std::uint64_t reports = 0;
  std::uint64_t duplicates = 0;   // retries after a restart answered from the recovered window
  int killed_while_opening = 0;   // kills before the child reported the engine open
  std::array<RecoveryTotals, kProjectionCount> projections{};
};

// Waits until a projection of the child has taken a snapshot, up to `timeout` (a hang guard: the
// child appends until killed, so one comes).
void wait_for_snapshot(const Traces& traces, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const auto taken = [&] {
    return std::ranges::any_of(traces,
                               [](const ProjectionTrace& t) { return t.taken.load(std::memory_order_acquire) > 0; });
  };
  while (!taken() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(50us);
}

// Runs one child and kills it at the point `timing` picks (kill_timing.h: after its first durable
// append, after its open, or inside its open, recovery included). A quarter of the rounds killed
// after the open aim at a snapshot being written instead: they kill within a millisecond of the
// child's first, when the file is most likely half-made. Returns the appends it reported durable.
void crash_one_child(const std::string& dir, int kill, Traces& traces, std::mt19937_64& random,
                     annal::test::KillTiming& timing, std::vector<Report>& reports, Totals& totals) {
  for (ProjectionTrace& trace : traces) trace.reset();
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  (void)::fcntl(fds[1], F_SETPIPE_SZ, 1 << 20);  // room for every report of a round, if allowed
  const pid_t parent = ::getpid();
  const std::uint64_t child_seed = random();
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(fds[0]);
    // Dies with the parent (a failed assertion, the watchdog) instead of appending forever.
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != parent) _exit(6);
    child(dir, kill, traces, fds[1], child_seed);
  }
  ::close(fds[1]);
  const auto forked = annal::test::KillTiming::Clock::now();
  const annal::test::KillPoint point = timing.point(kill);
  reports.clear();
  bool opened = false;
  if (point == annal::test::KillPoint::while_opening) {
    std::this_thread::sleep_for(timing.into_open());
  } else {
    const auto ready = read_report(fds[0], 120s);
    if (!ready || ready->flags != Report::kReady) ::kill(pid, SIGKILL);
    ASSERT_TRUE(ready && ready->flags == Report::kReady) << "the child did not open the engine";
    opened = true;
    timing.opened_after(annal::test::KillTiming::Clock::now() - forked);
    if (random() % 4 == 0) {
      wait_for_snapshot(traces, 120s);
      std::this_thread::sleep_for(std::chrono::microseconds(random() % 1000));
    } else {
      // Retries after the restart report duplicates first: wait for an append of this child.
      while (point == annal::test::KillPoint::after_durable &&
             (reports.empty() || (reports.back().flags & Report::kDuplicate) != 0)) {
        const auto report = read_report(fds[0], 300s);
        const std::string threads = report ? "" : annal::test::describe_threads(pid);
        if (!report) ::kill(pid, SIGKILL);
        ASSERT_TRUE(report) << "the child made nothing durable within 300 s; its threads wait in" << threads;
        reports.push_back(*report);
      }
      std::this_thread::sleep_for(timing.delay());
    }
  }
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the child exited by itself with " << WEXITSTATUS(status);
  while (const auto report = read_report(fds[0], 10s)) {
    if (report->flags == Report::kReady) {
      opened = true;
    } else {
      reports.push_back(*report);
    }
  }
  ::close(fds[0]);
  totals.killed_while_opening += opened ? 0 : 1;
  totals.reports += reports.size();
}

// What the parent knows of the store between kills.
struct Model {
  std::array<std::optional<std::uint64_t>, kStreams> last{};  // each stream's last version
  std::array<std::uint64_t, kStreams> stream_id{};            // 0: no events yet
  // Each projection's newest snapshot file when the child started (the one it restored; 0: none).
  std::array<std::uint64_t, kProjectionCount> snapshot_at_start{};
};
// Each stream's event sequences by version, as recovered.
using Sequences = std::array<std::vector<std::uint64_t>, kStreams>;

void check_event(const Event& event, int key, std::uint64_t version, bool ids, std::uint64_t stream_id) {
  SCOPED_TRACE(describe(key) + " version " + std::to_string(version));
  ASSERT_EQ(event.header.stream_id, stream_id);
  ASSERT_EQ(event.header.version, version);
  ASSERT_EQ(event.header.stream_name, named(key) ? std::string_view(name_of(key)) : std::string_view());
  ASSERT_EQ(event.header.type, type_for(key, version));
  ASSERT_TRUE(event.header.event_id == (ids ? event_id_for(key, version) : Id128{}));
  ASSERT_TRUE(event.header.correlation_id == correlation_for(key, version));
  ASSERT_TRUE(event.header.causation_id.empty());
  ASSERT_EQ(event.payload, payload_for(key, version));
}

// Reads a stream both ways and checks every event, and that its appends are whole and contiguous.
void check_stream(Engine& engine, int key, Model& model, Sequences& sequences) {
  SCOPED_TRACE(describe(key));
  const auto last = engine.stream_version(ref_for(key));
  const auto forwards = engine.read_stream(ref_for(key), {});
  ASSERT_TRUE(forwards.ok()) << forwards.status().to_string();
  sequences[key].clear();
  if (!last) {
    ASSERT_FALSE(model.last[key].has_value()) << "the stream lost all its events";
    ASSERT_TRUE(forwards.value().empty());
    if (named(key)) {
      ASSERT_FALSE(engine.find_stream(name_of(key)).has_value()) << "a name without events";
    }
    return;
  }
  ASSERT_GE(*last, model.last[key].value_or(0)) << "the stream lost events";
  const std::vector<Event>& events = forwards.value();
  ASSERT_EQ(events.size(), *last + 1);
  const std::uint64_t id = events[0].header.stream_id;
  ASSERT_EQ(id, named(key) ? engine.find_stream(name_of(key)).value_or(0) : id_of(key));
  if (model.stream_id[key] != 0) {
    ASSERT_EQ(id, model.stream_id[key]) << "the stream changed ids";
  }
  for (std::uint64_t first = 0; first <= *last; first += append_events(key, first)) {
    const std::uint64_t n = append_events(key, first);
    ASSERT_LE(first + n - 1, *last) << "the append at version " << first << " is torn";
    for (std::uint64_t v = first; v < first + n; ++v) {
      ASSERT_NO_FATAL_FAILURE(check_event(events[v], key, v, has_ids(key, first), id));
      ASSERT_EQ(events[v].header.sequence, events[first].header.sequence + (v - first))
          << "the append at version " << first << " is not contiguous in the log";
    }
    if (first > 0) {
      ASSERT_GT(events[first].header.sequence, events[first - 1].header.sequence);
    }
  }
  const auto backwards = engine.read_stream(ref_for(key), {.from_version = kFromEnd, .direction = Direction::backwards});
  ASSERT_TRUE(backwards.ok()) << backwards.status().to_string();
  ASSERT_EQ(backwards.value().size(), events.size());
  for (std::size_t i = 0; i < events.size(); ++i) {
    const Event& event = backwards.value()[events.size() - 1 - i];
    ASSERT_EQ(event.header.sequence, events[i].header.sequence);
    ASSERT_EQ(event.header.version, events[i].header.version);
    ASSERT_EQ(event.payload, events[i].payload);
  }
  for (const Event& event : events) sequences[key].push_back(event.header.sequence);
  model.last[key] = *last;
  model.stream_id[key] = id;
}

// A slice of a stream, either way, is the matching part of the whole.
void check_slice(Engine& engine, int key, const Sequences& sequences, std::mt19937_64& random) {
  const std::vector<std::uint64_t>& all = sequences[key];
  if (all.empty()) return;
  const std::uint64_t from = random() % all.size();
  const std::size_t count = 1 + random() % 8;
  for (const Direction direction : {Direction::forwards, Direction::backwards}) {
    const auto slice = engine.read_stream(ref_for(key), {.from_version = from, .direction = direction, .max_count = count});
    ASSERT_TRUE(slice.ok()) << slice.status().to_string();
    const std::uint64_t expected_count = direction == Direction::forwards ? std::min<std::uint64_t>(count, all.size() - from)
                                                                          : std::min<std::uint64_t>(count, from + 1);
    ASSERT_EQ(slice.value().size(), expected_count) << describe(key) << " from " << from;
    for (std::size_t i = 0; i < slice.value().size(); ++i) {
      const std::uint64_t version = direction == Direction::forwards ? from + i : from - i;
      ASSERT_EQ(slice.value()[i].header.version, version);
      ASSERT_EQ(slice.value()[i].header.sequence, all[version]);
    }
  }
}

// Every reported append is there, whole, at the sequences the child was told.
void check_reports(const std::vector<Report>& reports, const Model& model, const Sequences& sequences) {
  for (const Report& report : reports) {
    ASSERT_LT(report.key, static_cast<std::uint32_t>(kStreams));
    const int key = static_cast<int>(report.key);
    SCOPED_TRACE(describe(key) + " reported versions " + std::to_string(report.first_version) + "-" +
                 std::to_string(report.last_version) + " at sequences " + std::to_string(report.first_sequence) +
                 "-" + std::to_string(report.last_sequence));
    ASSERT_LT(report.last_version, sequences[key].size()) << "an acknowledged append is lost";
    ASSERT_EQ(report.stream_id, model.stream_id[key]);
    ASSERT_EQ(append_ending_at(key, report.last_version), report.first_version);
    ASSERT_EQ(sequences[key][report.first_version], report.first_sequence);
    ASSERT_EQ(sequences[key][report.last_version], report.last_sequence);
  }
}

// The recovered log as the projections' checks need it: every event's sequence, and a Counter
// that applied them all from scratch.
struct Replay {
  std::vector<std::uint64_t> sequences;  // ascending
  test::Counter counter;

  // How many events there are in (after, through].
  [[nodiscard]] std::uint64_t events_in(std::uint64_t after, std::uint64_t through) const {
    if (through <= after) return 0;
    return static_cast<std::uint64_t>(std::ranges::upper_bound(sequences, through) -
                                      std::ranges::upper_bound(sequences, after));
  }
};

// The global log holds exactly the streams' events, each stream's in version order. Fills `replay`.
void check_log(Engine& engine, const Model& model, const Sequences& sequences, Replay& replay) {
  std::unordered_map<std::uint64_t, int> key_of;
  for (int key = 0; key < kStreams; ++key) {
    if (model.stream_id[key] != 0) key_of[model.stream_id[key]] = key;
  }
  std::array<std::uint64_t, kStreams> seen{};
  std::uint64_t previous = 0;
  for (;;) {
    const auto events = engine.read_all(previous + 1, 4096);
    ASSERT_TRUE(events.ok()) << events.status().to_string();
    if (events.value().empty()) break;
    for (const Event& event : events.value()) {
      ASSERT_GT(event.header.sequence, previous);
      previous = event.header.sequence;
      const auto found = key_of.find(event.header.stream_id);
      ASSERT_NE(found, key_of.end()) << "sequence " << previous << ": an event of unknown stream "
                                     << event.header.stream_id;
      const int key = found->second;
      ASSERT_EQ(event.header.version, seen[key]) << describe(key) << " at sequence " << previous;
      ASSERT_EQ(event.header.sequence, sequences[key][seen[key]]) << describe(key);
      ++seen[key];
      replay.sequences.push_back(event.header.sequence);
      replay.counter.apply(EventView{.header = event.header, .payload = event.payload});
    }
  }
  for (int key = 0; key < kStreams; ++key) ASSERT_EQ(seen[key], sequences[key].size()) << describe(key);
  ASSERT_LE(previous, engine.last_sequence());
}

// The newest of projection `name`'s snapshot files in `dir` (0: none).
std::uint64_t newest_snapshot_file(const std::string& dir, std::string_view name) {
  std::uint64_t newest = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const auto sequence = snapshots::parse_snapshot_file_name(entry.path().filename().string(), name);
    newest = std::max(newest, sequence.value_or(0));
  }
  return newest;
}

// Projection p's recovery after a kill, against what the child's trace says happened before it.
//
// The child's runner took a snapshot every N = snapshot_every_events events, at the event it had
// applied, and handed it to a writer thread that keeps only the newest one pending (a newer one
// replaces it unwritten) and puts each in place by a rename. The kill came when the child had
// applied up to A; the recovered log ends at L. Let M = min(A, L) (an eager projection may have
// applied past L; its snapshots there are discarded at open), T the newest snapshot taken at or
// below M (or the one the child started from), and S the one recovery restored. Then
//   replayed = events in (S, L] = events in (S, T] + events in (T, M] + events in (M, L]
// and only the middle term is the engine's to bound: at most N, as the runner takes a snapshot
// before it applies the (N+1)th event since the last. The first is the writer's lag: snapshots
// taken but not yet renamed into place at the kill (the one being written, the pending one, any
// the pending one replaced), i.e. the events applied while the writer was busy with the newest
// snapshot it finished and the one it was on. The last is the projection's lag: durable events it
// had not applied yet (0 for an eager one that ran ahead). Neither has a bound that a kill at a
// random moment must respect, so the bound asserted is
//   replayed <= N + writer lag + projection lag,
// with both lags measured. The "one interval plus one batch" is the case where the writer
// had caught up and the projection was within a batch of the log's end; the totals count how
// often replayed stayed within N plus one append and within N plus one group commit.
struct Recovery {
  std::uint64_t restored = 0;  // S
  std::uint64_t replayed = 0;
  std::uint64_t writer_lag = 0;
  std::uint64_t projection_lag = 0;
};

void check_against_trace(std::size_t p, std::uint64_t end, std::uint64_t snapshot_every_events,
                         std::uint64_t started_from, const ProjectionTrace& trace, const Replay& replay,
                         Recovery& recovery) {
  const std::uint64_t applied = std::max(started_from, trace.applied.load(std::memory_order_relaxed));  // A
  if (kProjections[p].gating == Gating::durable) {
    ASSERT_LE(applied, end) << "the durable projection applied an event the crash took back";
  }
  ASSERT_LE(trace.taken.load(std::memory_order_acquire), ProjectionTrace::kTakenMax);
  const std::uint64_t reached = std::min(applied, end);                                        // M
  const std::uint64_t taken = std::max(started_from, trace.newest_taken_through(reached));      // T
  ASSERT_GE(recovery.restored, started_from) << "the snapshot the child started from is gone";
  ASSERT_LE(recovery.restored, taken) << "newer than the newest taken at or below " << reached;
  ASSERT_TRUE(recovery.restored == started_from || trace.took(recovery.restored))
      << "restored a snapshot the child never took: " << recovery.restored;
  ASSERT_LE(replay.events_in(taken, reached), snapshot_every_events)
      << "the child went more than an interval without a snapshot: the last at " << taken << ", applied " << reached;
  recovery.writer_lag = replay.events_in(recovery.restored, taken);
  recovery.projection_lag = replay.events_in(reached, end);
  ASSERT_LE(recovery.replayed, snapshot_every_events + recovery.writer_lag + recovery.projection_lag);
}

// The live state equals a from-scratch replay's, by value and by digest, and the engine's own
// consistency check agrees.
void check_against_replay(Engine& engine, std::string_view name, const test::Counter& state, const Replay& replay) {
  ASSERT_EQ(state.total, replay.counter.total);
  ASSERT_EQ(state.digest, replay.counter.digest);
  ASSERT_EQ(state.per_stream, replay.counter.per_stream);
  test::Counter fresh;
  const auto report = engine.check_projection(name, fresh, 30s);
  ASSERT_TRUE(report.ok()) << report.status().to_string();
  ASSERT_EQ(report.value().sequence, replay.sequences.empty() ? 0 : replay.sequences.back());
  ASSERT_TRUE(report.value().consistent()) << report.value().live_digest << " vs " << report.value().rebuilt_digest;
  ASSERT_EQ(report.value().live_digest, static_cast<const Projection&>(replay.counter).digest());
}

// The parent's fresh instance of projection p, added after the kill when the newest snapshot file
// was `newest_file`: it restored that one and replayed exactly the events after it.
void check_recovery(Engine& engine, std::size_t p, const ProjectionOptions& options, std::uint64_t newest_file,
                    std::uint64_t started_from, const ProjectionTrace& trace, const Replay& replay,
                    RecoveryTotals& totals) {
  const std::string_view name = kProjections[p].name;
  SCOPED_TRACE("projection " + std::string(name) + ", a snapshot every " +
               std::to_string(options.snapshot_every_events) + " events");
  const std::uint64_t end = engine.last_sequence();
  const std::uint64_t last_event = replay.sequences.empty() ? 0 : replay.sequences.back();
  const auto state = query<test::Counter>(engine, name, last_event, [](const test::Counter& c) { return c; }, 30s);
  ASSERT_TRUE(state.ok()) << state.status().to_string();
  const auto status = engine.projection_status(name);
  ASSERT_TRUE(status.ok()) << status.status().to_string();
  Recovery recovery{.restored = status.value().restored_from, .replayed = status.value().replayed};
  ASSERT_EQ(recovery.restored, newest_file) << "not the newest snapshot at or below the log's end " << end;
  ASSERT_EQ(recovery.replayed, replay.events_in(recovery.restored, end)) << "restored from " << recovery.restored;
  ASSERT_NO_FATAL_FAILURE(
      check_against_trace(p, end, options.snapshot_every_events, started_from, trace, replay, recovery));
  ASSERT_NO_FATAL_FAILURE(check_against_replay(engine, name, state.value(), replay));

  totals.from_snapshot += recovery.restored != 0;
  totals.within_interval_and_append += recovery.replayed <= options.snapshot_every_events + kAppendEventsMax;
  totals.within_interval_and_commit += recovery.replayed <= options.snapshot_every_events + kEventsInFlightMax;
  totals.writer_behind += recovery.writer_lag > 0;
  totals.taken += trace.taken.load(std::memory_order_acquire);
  totals.replayed_max = std::max(totals.replayed_max, recovery.replayed);
  totals.writer_lag_max = std::max(totals.writer_lag_max, recovery.writer_lag);
  totals.projection_lag_max = std::max(totals.projection_lag_max, recovery.projection_lag);
}

void check_after_crash(const std::string& dir, int kill, const std::vector<Report>& reports, const Traces& traces,
                       Model& model, std::mt19937_64& random, Totals& totals) {
  std::array<std::uint64_t, kProjectionCount> newest_before_open{};
  for (std::size_t p = 0; p < kProjectionCount; ++p) {
    newest_before_open[p] = newest_snapshot_file(dir, kProjections[p].name);
  }
  // Its own limit, far below the events it reads back (up to 24 KiB): limits are for appends.
  Options options = options_for(kill + 1);
  options.event_bytes_max = 1024;
  auto opened = open_engine(dir, options);
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  Engine& engine = *opened.value();
  ASSERT_EQ(engine.durable_sequence(), engine.last_sequence());
  // Fresh instances catch up while the streams are checked.
  std::array<std::uint64_t, kProjectionCount> newest_file{};
  for (std::size_t p = 0; p < kProjectionCount; ++p) {
    newest_file[p] = newest_snapshot_file(dir, kProjections[p].name);
    ASSERT_LE(newest_file[p], engine.last_sequence()) << "a snapshot of " << kProjections[p].name
                                                      << " past the end of the recovered log was kept";
    totals.projections[p].discarded += newest_before_open[p] > engine.last_sequence();
    const Status added = engine.add_projection(kProjections[p].name, std::make_shared<test::Counter>(),
                                               projection_options(kill, p));
    ASSERT_TRUE(added.ok()) << added.to_string();
  }
  Sequences sequences;
  for (int key = 0; key < kStreams; ++key) ASSERT_NO_FATAL_FAILURE(check_stream(engine, key, model, sequences));
  ASSERT_NO_FATAL_FAILURE(check_slice(engine, static_cast<int>(random() % kStreams), sequences, random));
  ASSERT_NO_FATAL_FAILURE(check_reports(reports, model, sequences));
  Replay replay;
  ASSERT_NO_FATAL_FAILURE(check_log(engine, model, sequences, replay));
  for (std::size_t p = 0; p < kProjectionCount; ++p) {
    ASSERT_NO_FATAL_FAILURE(check_recovery(engine, p, projection_options(kill, p), newest_file[p],
                                           model.snapshot_at_start[p], traces[p], replay, totals.projections[p]));
  }
  for (const Report& report : reports) totals.duplicates += (report.flags & Report::kDuplicate) != 0;
  ASSERT_TRUE(engine.close().ok());
  // The next child starts from what this session left (it snapshots as it catches up).
  for (std::size_t p = 0; p < kProjectionCount; ++p) {
    model.snapshot_at_start[p] = newest_snapshot_file(dir, kProjections[p].name);
  }
}

TEST(EngineCrash, SigkillAtRandomMomentsLosesNoAcknowledgedAppend) {
  const auto kills = static_cast<int>(annal::test::env_or("ANNAL_ENGINE_CRASH_KILLS", 40));
  first_encrypted_kill = kills / 2;
  const std::uint64_t seed = annal::test::env_or("ANNAL_ENGINE_CRASH_SEED", std::random_device{}());
  std::printf("seed %llu (ANNAL_ENGINE_CRASH_SEED=%llu repeats its choices)\n", static_cast<unsigned long long>(seed),
              static_cast<unsigned long long>(seed));
  std::fflush(stdout);  // before any fork: the children must not inherit it unwritten
  SCOPED_TRACE("seed " + std::to_string(seed));
  const std::string dir = (std::filesystem::temp_directory_path() /
                           ("annal-engine-crash-" + std::to_string(::getpid()))).string();
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::mt19937_64 random(seed);
  annal::test::KillTiming timing(seed, 20ms);
  const SharedTraces traces = map_traces();
  ASSERT_NE(traces, nullptr) << std::strerror(errno);
  Model model;
  Totals totals;
  std::vector<Report> reports;
  const auto start = std::chrono::steady_clock::now();
  for (int kill = 0; kill < kills; ++kill) {
    SCOPED_TRACE("kill " + std::to_string(kill) + " in " + dir);
    // Longer than the round's own waits (300 s at most), so those fail with their message first.
    const annal::test::Watchdog watchdog("engine crash round " + std::to_string(kill), 600s);
    ASSERT_NO_FATAL_FAILURE(crash_one_child(dir, kill, *traces, random, timing, reports, totals));
    ASSERT_NO_FATAL_FAILURE(check_after_crash(dir, kill, reports, *traces, model, random, totals));
  }
  std::uint64_t events = 0;
  for (const auto& last : model.last) events += last ? *last + 1 : 0;
  std::printf("%d kills (%d while opening) in %.1f s: %llu durable appends reported and found, %llu of them "
              "retries after a restart; %llu events in %d streams at the end\n",
              kills, totals.killed_while_opening,
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
              static_cast<unsigned long long>(totals.reports), static_cast<unsigned long long>(totals.duplicates),
              static_cast<unsigned long long>(events), kStreams);
  for (std::size_t p = 0; p < kProjectionCount; ++p) {
    const RecoveryTotals& t = totals.projections[p];
    std::printf("projection %s: %d of %d recoveries from a snapshot, replaying at most %llu events; within an "
                "interval plus one append %d, plus one group commit (%llu events) %d; %d kills with a snapshot not "
                "yet in place (writer lag up to %llu events), projection lag up to %llu; %d opens discarded a "
                "snapshot past the log; the children took %llu snapshots\n",
                std::string(kProjections[p].name).c_str(), t.from_snapshot, kills,
                static_cast<unsigned long long>(t.replayed_max), t.within_interval_and_append,
                static_cast<unsigned long long>(kEventsInFlightMax), t.within_interval_and_commit, t.writer_behind,
                static_cast<unsigned long long>(t.writer_lag_max),
                static_cast<unsigned long long>(t.projection_lag_max),
                t.discarded, static_cast<unsigned long long>(t.taken));
  }
  EXPECT_GT(totals.reports, 0u);
  if (kills > 1) {
    EXPECT_TRUE(std::filesystem::exists(dir + "/KEYS"));  // the last half ran encrypted
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace annal::engine
