// What the benchmark binaries share: a scratch directory on the disk being measured, latency
// percentiles, a run of N writer threads, and the journal's rows the engine is measured against:
// the 8-writer durable one (journal_durable_8w/annal) and the saturating producer
// (journal_append_<size>/<mode>). engine_bench registers them beside its own rows, so the engine
// is compared with the journal alone in the same run, interleaved, on the same disk weather.
#pragma once

#include <benchmark/benchmark.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "annal/crypto/key.h"
#include "annal/journal/journal.h"
#include "store_cipher.h"

namespace annal::bench {

inline constexpr std::size_t kEventBytes = 256;
inline constexpr int kWriters = 8;
inline constexpr std::uint64_t kAppendsPerWriter = 64;  // per writer thread per iteration (run_writers)

// A fresh directory for one benchmark run, removed afterwards. It lives under ANNAL_BENCH_DIR
// (default: the system temp directory), which must be on the disk being measured (not tmpfs).
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& name) {
    const char* base = std::getenv("ANNAL_BENCH_DIR");
    path_ = std::filesystem::path(base != nullptr ? base : std::filesystem::temp_directory_path().string()) /
            ("annal-bench-" + name + "-" + std::to_string(::getpid()));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() { std::filesystem::remove_all(path_); }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  [[nodiscard]] std::string str() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

// Percentiles of `samples` (sorted here), in the units they are in: the points of an HdrHistogram
// percentile curve (scripts/latency_plot draws them).
struct Percentiles {
  double p50 = 0, p90 = 0, p99 = 0, p999 = 0, p9999 = 0, max = 0;
};
inline Percentiles percentiles(std::vector<double>& samples) {
  if (samples.empty()) return {};
  std::sort(samples.begin(), samples.end());
  const auto at = [&](double p) { return samples[static_cast<std::size_t>(p * static_cast<double>(samples.size() - 1))]; };
  return {at(0.50), at(0.90), at(0.99), at(0.999), at(0.9999), samples.back()};
}

// The percentiles as counters named `prefix` + p50_us ... max_us.
inline void report_percentiles(benchmark::State& state, const std::string& prefix, std::vector<double>& latencies_us) {
  const Percentiles p = percentiles(latencies_us);
  state.counters[prefix + "p50_us"] = p.p50;
  state.counters[prefix + "p90_us"] = p.p90;
  state.counters[prefix + "p99_us"] = p.p99;
  state.counters[prefix + "p999_us"] = p.p999;
  state.counters[prefix + "p9999_us"] = p.p9999;
  state.counters[prefix + "max_us"] = p.max;
}

// How the run's segments were made ready (journal::Options::preparation, adaptive by default).
inline void report_preparation(benchmark::State& state, const journal::Stats& stats) {
  state.counters["segs_zeroed"] = static_cast<double>(stats.segments_zero_filled);
  state.counters["segs_allocated"] = static_cast<double>(stats.segments_allocated);
  state.counters["segs_unprepared"] = static_cast<double>(stats.segments_unprepared);
}

inline void report_latency(benchmark::State& state, std::vector<double>& latencies_us) {
  report_percentiles(state, "", latencies_us);
}

// What the whole process (every thread: callers, the journal's writer, io_uring's workers) has
// used so far: CPU seconds and context switches.
struct ProcessUsage {
  double cpu_seconds = 0;
  double context_switches = 0;
};
inline ProcessUsage process_usage() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  const auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
  return {seconds(usage.ru_utime) + seconds(usage.ru_stime), static_cast<double>(usage.ru_nvcsw + usage.ru_nivcsw)};
}

// Runs `writers` threads, each calling append_durable(thread, i) kAppendsPerWriter times per benchmark
// iteration, and reports events/s and latency percentiles on the wall clock, and the process's CPU
// time and context switches per event (what the work costs apart from waiting for the disk).
inline void run_writers(benchmark::State& state, int writers,
                        const std::function<bool(int, std::uint64_t)>& append_durable) {
  std::vector<std::vector<double>> latencies(static_cast<std::size_t>(writers));
  std::uint64_t round = 0;
  std::atomic<bool> failed{false};
  const ProcessUsage usage_started = process_usage();
  const auto started = std::chrono::steady_clock::now();
  for (auto _ : state) {
    std::vector<std::thread> threads;
    for (int t = 0; t < writers; ++t) {
      threads.emplace_back([&, t] {
        for (std::uint64_t i = 0; i < kAppendsPerWriter; ++i) {
          const auto begin = std::chrono::steady_clock::now();
          if (!append_durable(t, round * kAppendsPerWriter + i)) failed = true;
          latencies[static_cast<std::size_t>(t)].push_back(
              std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - begin).count());
        }
      });
    }
    for (auto& thread : threads) thread.join();
    ++round;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const ProcessUsage usage_ended = process_usage();
  if (failed) return state.SkipWithError("an append failed");
  std::vector<double> all;
  for (const auto& per_thread : latencies) all.insert(all.end(), per_thread.begin(), per_thread.end());
  state.counters["events_per_second"] = static_cast<double>(all.size()) / seconds;
  const auto events = static_cast<double>(all.size());
  state.counters["cpu_us_per_event"] = (usage_ended.cpu_seconds - usage_started.cpu_seconds) / events * 1e6;
  state.counters["switches_per_event"] = (usage_ended.context_switches - usage_started.context_switches) / events;
  report_latency(state, all);
}

// The master key of the *_encrypted rows (Options::encryption), made for the run.
class RunMasterKey final : public crypto::KeyProvider {
 public:
  std::uint32_t current_version() override { return 1; }
  Result<crypto::Key> master_key(std::uint32_t) override { return key_.clone(); }

 private:
  const crypto::Key key_ = crypto::Key::random().value();
};

// journal_durable_8w/annal: 8 threads, each appending one 256-byte event to the journal and waiting
// until it is durable, then the next.
inline void BM_Durable8wAnnal(benchmark::State& state, journal::IoKind io) {
  ScratchDir dir("annal8w");
  auto journal = journal::Journal::open(dir.str(), {.io = io});
  if (!journal.ok()) return state.SkipWithError(journal.status().to_string().c_str());
  const std::vector<std::byte> payload(kEventBytes, std::byte{0x5A});
  // One event before the clock starts: a new journal's first write waits for its first segment to
  // be prepared (64 MiB written and synced), a one-off that is not the steady state measured here.
  // From that write on the next segment is prepared in the background, as in a running journal.
  const journal::RecordInput first{.stream_id = kWriters, .payload = payload};
  const auto warmed = journal.value()->append(std::span(&first, 1));
  if (!warmed.ok() ||
      !journal.value()->wait_durable(warmed.value().last, journal::Journal::Clock::now() + std::chrono::minutes(1)).ok()) {
    return state.SkipWithError("the first append did not become durable");
  }
  run_writers(state, kWriters, [&](int t, std::uint64_t i) {
    const journal::RecordInput record{.stream_id = static_cast<std::uint64_t>(t), .stream_version = i,
                                      .payload = payload};
    const auto receipt = journal.value()->append(std::span(&record, 1));
    return receipt.ok() &&
           journal.value()->wait_durable(receipt.value().last, journal::Journal::Clock::now() + std::chrono::minutes(1)).ok();
  });
  // What group commit made of the load: records a durable advance acknowledged, and a sync's time
  // from queued (behind the round's writes) to done, both means over the whole run (the warm-up's
  // one included).
  const journal::Stats stats = journal.value()->stats();
  if (stats.group_records.count != 0 && stats.sync_ns.count != 0) {
    state.counters["group_mean"] = static_cast<double>(stats.group_records.sum) / static_cast<double>(stats.group_records.count);
    state.counters["sync_mean_us"] = static_cast<double>(stats.sync_ns.sum) / static_cast<double>(stats.sync_ns.count) / 1e3;
  }
  state.SetLabel(std::string("durability=group_commit io=") + (io == journal::IoKind::io_uring ? "io_uring" : "posix") +
                 " wait=blocking");
}

// The engine's record cipher for a journal in `directory`, as Options::encryption makes it: a
// key store there, this open numbered, one stream's key (every record here is stream 1's).
inline std::shared_ptr<journal::RecordCipher> engine_cipher(const std::string& directory) {
  auto store = engine::StoreCipher::open(directory, std::make_shared<RunMasterKey>());
  if (!store.ok() || !store.value()->begin_writing(journal::kFirstSequence).ok()) return nullptr;
  return store.value()->records();
}

// A record of `payload`'s bytes. Encrypted, laid out as the engine's are (its cipher keeps an
// event's first 9 bytes, the flags and back pointer, in clear): the same bytes, split.
inline journal::RecordInput record_of(std::span<const std::byte> payload, bool encrypted) {
  constexpr std::size_t kClearBytes = 9;
  if (!encrypted) return journal::RecordInput{.stream_id = 1, .payload = payload};
  return journal::RecordInput{.stream_id = 1, .prefix = payload.first(kClearBytes), .payload = payload.subspan(kClearBytes)};
}

inline std::string mode_name(journal::Durability mode) {
  switch (mode) {
    case journal::Durability::none: return "none";
    case journal::Durability::group_commit: return "group_commit";
    case journal::Durability::interval: return "interval";
  }
  return "?";
}

// One producer appends batches of 16 events (as the engine's journaler hands over a batch from the
// ring) as fast as the journal takes them; back-pressure comes from its staging buffers. An
// observer thread waits for every advance of the durable sequence, as a waiting client would, and
// notes when it saw it. Append-to-durable latency of a batch is the time from append() returning
// to the observer seeing a durable sequence that covers it.
// `io`: the backend to open the journal on (null: the one options.io names).
inline void run_saturating(benchmark::State& state, std::size_t payload_bytes, journal::Options options,
                           bool encrypted = false, std::shared_ptr<journal::IoBackend> io = nullptr) {
  ScratchDir dir("append");
  if (encrypted && !(options.cipher = engine_cipher(dir.str()))) return state.SkipWithError("no cipher");
  auto opened = io ? journal::Journal::open(dir.str(), options, std::move(io)) : journal::Journal::open(dir.str(), options);
  if (!opened.ok()) return state.SkipWithError(opened.status().to_string().c_str());
  journal::Journal& journal = *opened.value();
  constexpr std::size_t kBatch = 16, kAppendsPerIteration = 64;
  const std::vector<std::byte> payload(payload_bytes, std::byte{0x5A});
  const std::vector<journal::RecordInput> batch(kBatch, record_of(payload, encrypted));
  using Clock = std::chrono::steady_clock;
  std::vector<std::pair<std::uint64_t, Clock::time_point>> appended, durable;  // one writer each
  appended.reserve(1 << 20);
  durable.reserve(1 << 20);
  std::atomic<std::uint64_t> final_sequence{UINT64_MAX};
  std::thread observer([&] {
    std::uint64_t seen = 0;
    while (seen < final_sequence.load(std::memory_order_acquire)) {
      if (!journal.wait_durable(seen + 1, journal::Journal::Clock::now() + std::chrono::milliseconds(100)).ok()) continue;
      seen = journal.durable_sequence();
      durable.emplace_back(seen, Clock::now());
    }
  });
  std::uint64_t last = 0;
  bool failed = false;
  const auto started = Clock::now();
  for (auto _ : state) {
    for (std::size_t i = 0; i < kAppendsPerIteration && !failed; ++i) {
      const auto receipt = journal.append(batch);
      failed = !receipt.ok();
      if (failed) break;
      last = receipt.value().last;
      appended.emplace_back(last, Clock::now());
    }
  }
  const bool durable_in_time = journal.wait_durable(last, journal::Journal::Clock::now() + std::chrono::minutes(1)).ok();
  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  final_sequence.store(durable_in_time && !failed ? last : 0, std::memory_order_release);
  observer.join();
  if (failed || !durable_in_time) return state.SkipWithError("an append failed or did not become durable");
  std::vector<double> latencies_us;
  latencies_us.reserve(appended.size());
  auto covering = durable.begin();
  for (const auto& [sequence, at] : appended) {
    while (covering->first < sequence) ++covering;  // the observer saw `last`, so this stops
    latencies_us.push_back(std::chrono::duration<double, std::micro>(covering->second - at).count());
  }
  const double events = static_cast<double>(last);
  // The bytes written: a sealed record is the cipher's overhead longer.
  const std::size_t stored = payload_bytes + (options.cipher ? options.cipher->overhead() : 0);
  state.counters["bytes_per_second"] = events * static_cast<double>(journal::padded_record_bytes(stored)) / seconds;
  state.counters["payload_MBps"] = events * static_cast<double>(payload_bytes) / seconds / 1e6;
  state.counters["events_per_second"] = events / seconds;
  report_latency(state, latencies_us);
  const journal::Stats stats = journal.stats();
  report_preparation(state, stats);
  // Group commit's round size: what each fdatasync covered, on average.
  state.counters["KiB_per_sync"] = static_cast<double>(stats.bytes) / static_cast<double>(std::max<std::uint64_t>(stats.syncs, 1)) / 1024;
  state.SetLabel("durability=" + mode_name(options.durability) + (options.direct_io ? " direct_io" : "") +
                 (encrypted ? " AES-256-GCM" : "") + " io=io_uring batch=16 wait=blocking");
}

}  // namespace annal::bench
