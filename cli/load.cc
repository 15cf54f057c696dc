// annal load DIR --events N [--payload BYTES] [--writers W] [--streams S] [--durability MODE]: a load
// generator for benchmarks and crash tests. Writers append to streams of their own with exact
// expected versions; each payload is load_payload(stream, version), so `annal verify --payloads`
// can check every byte. Prints "opened at sequence SEQ" once the store is open (recovered), then
// "durable SEQ" whenever what the engine confirmed durable moves on, each line flushed: a test
// that SIGKILLs it times its kills from them and checks every such sequence is there after a
// restart.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "annal/engine/engine.h"
#include "arguments.h"
#include "commands.h"
#include "output.h"

namespace annal::cli {
namespace {

using Clock = engine::Engine::Clock;

struct LoadOptions {
  std::string directory;
  std::uint64_t events = 0;
  std::size_t payload = 100;
  unsigned writers = 4;
  std::uint64_t streams = 1000;
  std::string durability = "group_commit";
  bool accept_data_loss = false;
  std::string key_file;
};

// Limits of one run: the tool keeps a latency per event (8 bytes) and a version per stream.
constexpr std::uint64_t kEventsMax = 100'000'000;
constexpr std::uint64_t kStreamsMax = 10'000'000;

// Each writer waits for its appends to be durable every this many, so the disk sets the pace and
// the callbacks waiting stay bounded.
constexpr std::uint64_t kInFlightMax = 1024;

// The highest sequence confirmed durable, and a thread that prints it as it moves (the engine's
// callbacks come in sequence order, on its notifier thread, which must not be slowed by output).
class DurableReporter {
 public:
  DurableReporter() : thread_([this] { run(); }) {}
  ~DurableReporter() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    changed_.notify_one();
    thread_.join();
  }
  void confirm(std::uint64_t sequence) {
    std::lock_guard lock(mutex_);
    durable_ = std::max(durable_, sequence);
    changed_.notify_one();
  }

 private:
  void run() {
    std::uint64_t printed = 0;
    std::unique_lock lock(mutex_);
    for (;;) {
      changed_.wait(lock, [&] { return stopping_ || durable_ > printed; });
      if (durable_ > printed) {
        printed = durable_;
        lock.unlock();
        std::printf("durable %llu\n", static_cast<unsigned long long>(printed));
        std::fflush(stdout);
        lock.lock();
      } else if (stopping_) {
        return;
      }
    }
  }
  std::mutex mutex_;
  std::condition_variable changed_;
  std::uint64_t durable_ = 0;
  bool stopping_ = false;
  std::thread thread_;
};

double percentile(std::vector<double>& values, double p) {
  if (values.empty()) return 0;
  const auto at = static_cast<std::size_t>(p * static_cast<double>(values.size() - 1));
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(at), values.end());
  return values[at];
}

int run(const LoadOptions& load) {
  engine::Options options;
  if (load.durability == "group_commit") {
    options.journal.durability = journal::Durability::group_commit;
  } else if (load.durability == "interval") {
    options.journal.durability = journal::Durability::interval;
  } else if (load.durability == "none") {
    options.journal.durability = journal::Durability::none;
  } else {
    return fail("load", "--durability must be group_commit, interval or none, not " + load.durability);
  }
  options.journal.accept_data_loss = load.accept_data_loss;
  if (Status keys = use_key_file(load.key_file, options); !keys.ok()) return fail("load", keys);
  auto opened = engine::Engine::open(load.directory, options);
  if (!opened.ok()) return fail("load", opened.status());
  engine::Engine& store = *opened.value();
  std::printf("opened at sequence %llu\n", static_cast<unsigned long long>(store.last_sequence()));
  std::fflush(stdout);
  const unsigned writers = std::max(1u, load.writers);
  const std::uint64_t streams = std::max<std::uint64_t>(load.streams, writers);

  std::vector<double> latency_ms(load.events, 0.0);  // per event, written once by its callback
  std::atomic<std::uint64_t> appended{0};
  std::mutex failure_mutex;
  Status failure;
  DurableReporter reporter;
  Progress progress("load", load.events);
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  for (unsigned w = 0; w < writers; ++w) {
    threads.emplace_back([&, w] {
      // Writer w owns streams w, w + writers, ...: it alone appends to them, so it knows each
      // next version (from the store, if an earlier run left some).
      std::vector<std::uint64_t> next_version;
      for (std::uint64_t s = w; s < streams; s += writers) {
        const auto version = store.stream_version("load-" + std::to_string(s));
        next_version.push_back(version ? *version + 1 : 0);
      }
      engine::Receipt last;
      for (std::uint64_t i = w, n = 0; i < load.events; i += writers, ++n) {
        const std::size_t slot = static_cast<std::size_t>(n % next_version.size());
        const std::uint64_t stream = w + slot * writers;
        const std::string name = "load-" + std::to_string(stream);
        const std::uint64_t version = next_version[slot];
        const auto payload = load_payload(name, version, load.payload);
        const engine::EventData event{.type = "Loaded", .payload = payload};
        const auto began = Clock::now();
        const auto expected = version == 0 ? engine::ExpectedVersion::no_stream() : engine::ExpectedVersion::exactly(version - 1);
        auto receipt = store.append(name, expected, {&event, 1});
        if (!receipt.ok()) {
          std::lock_guard lock(failure_mutex);
          failure = receipt.status();
          return;
        }
        next_version[slot] = version + 1;
        last = receipt.value();
        store.on_durable(last, [&, i, began, sequence = last.last_sequence](const Status& status) {
          if (!status.ok()) return;
          latency_ms[i] = std::chrono::duration<double, std::milli>(Clock::now() - began).count();
          reporter.confirm(sequence);
        });
        const std::uint64_t done = appended.fetch_add(1, std::memory_order_relaxed) + 1;
        if (w == 0) progress.update(done);
        if ((n + 1) % kInFlightMax == 0) (void)store.wait_durable(last, Clock::now() + std::chrono::seconds(60));
      }
      if (last.last_sequence != 0) (void)store.wait_durable(last, Clock::now() + std::chrono::seconds(60));
    });
  }
  for (auto& thread : threads) thread.join();
  progress.finish();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (!failure.ok()) return fail("load", failure);
  if (Status closed = store.close(); !closed.ok()) return fail("load", closed);
  std::vector<double> latencies(latency_ms.begin(), latency_ms.end());
  const double events = static_cast<double>(load.events);
  std::printf("loaded %s events of %zu bytes with %u writers (%s) in %.2f s: %s events/s, %.1f MB/s; "
              "append to durable p50 %.2f ms, p99 %.2f ms, p999 %.2f ms\n",
              grouped(load.events).c_str(), load.payload, writers, load.durability.c_str(), seconds,
              grouped(static_cast<std::uint64_t>(events / seconds)).c_str(),
              events * static_cast<double>(load.payload) / seconds / 1e6, percentile(latencies, 0.5),
              percentile(latencies, 0.99), percentile(latencies, 0.999));
  return kOk;
}

}  // namespace

void add_load(CLI::App& app, int& exit_code) {
  auto* command = app.add_subcommand("load", "Append generated events (benchmarks, crash tests)");
  auto load = std::make_shared<LoadOptions>();
  command->add_option("dir", load->directory, "The store's directory (created if missing)")->required();
  command->add_option("--events", load->events, "How many events")->required()->check(whole_number(1, kEventsMax));
  command->add_option("--payload", load->payload, "Payload bytes per event")->capture_default_str()->check(whole_number(0, 1 << 20));
  command->add_option("--writers", load->writers, "Appending threads")->capture_default_str()->check(whole_number(1, 256));
  command->add_option("--streams", load->streams, "Streams the events are spread over")
      ->capture_default_str()
      ->check(whole_number(1, kStreamsMax));
  command->add_option("--durability", load->durability, "group_commit, interval or none")->capture_default_str();
  add_accept_data_loss(*command, load->accept_data_loss);
  add_key_file(*command, load->key_file);
  command->callback([&exit_code, load] { exit_code = run(*load); });
}

}  // namespace annal::cli
