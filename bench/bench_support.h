// What the benchmark binaries share: a scratch directory on the disk being measured, latency
// percentiles, a run of N writer threads, and the journal's 8-writer durable benchmark
// (journal_durable_8w/annal). engine_bench registers that one beside engine_append_8w/annal, so
// the engine is compared with the journal alone in the same run, interleaved, on the same disk
// weather.
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

// Percentiles of `samples` (sorted here), in the units they are in.
struct Percentiles {
  double p50 = 0, p99 = 0, p999 = 0;
};
inline Percentiles percentiles(std::vector<double>& samples) {
  if (samples.empty()) return {};
  std::sort(samples.begin(), samples.end());
  const auto at = [&](double p) { return samples[static_cast<std::size_t>(p * static_cast<double>(samples.size() - 1))]; };
  return {at(0.50), at(0.99), at(0.999)};
}

inline void report_latency(benchmark::State& state, std::vector<double>& latencies_us) {
  const Percentiles p = percentiles(latencies_us);
  state.counters["p50_us"] = p.p50;
  state.counters["p99_us"] = p.p99;
  state.counters["p999_us"] = p.p999;
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
  // What group commit made of the load: records a durable advance acknowledged, and an fdatasync's
  // time, both means over the whole run (the warm-up's one included).
  const journal::Stats stats = journal.value()->stats();
  if (stats.group_records.count != 0 && stats.sync_ns.count != 0) {
    state.counters["group_mean"] = static_cast<double>(stats.group_records.sum) / static_cast<double>(stats.group_records.count);
    state.counters["sync_mean_us"] = static_cast<double>(stats.sync_ns.sum) / static_cast<double>(stats.sync_ns.count) / 1e3;
  }
  state.SetLabel(std::string("durability=group_commit io=") + (io == journal::IoKind::io_uring ? "io_uring" : "posix") +
                 " wait=blocking");
}

}  // namespace annal::bench
