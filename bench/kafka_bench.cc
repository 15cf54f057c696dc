// Events per second exported to Kafka: the journal's export (connectors/kafka: an idempotent,
// gapless producer fed by a projection, with the read-back at start) against a plain librdkafka
// producer loop sending the same records (key, 256 B value, the same headers) with the same
// producer settings, and no journal. Both go to librdkafka's mock cluster (three brokers in this
// process; Debian packages no Kafka broker), a new topic of 4 partitions each iteration, and are
// timed from creating the producer to the last record acknowledged. The events are in the journal
// already: a catch-up figure. 200,000 of them: twice what librdkafka's producer holds by default
// (queue.buffering.max.messages), so the export's wait for room is part of the figure, and an
// iteration lasts long enough (about 0.6 s) that one scheduling hiccup on 2 cores does not decide
// it. Compare medians of interleaved repetitions (docs/benchmarks.md has the command).
//
// kafka_lag/append_to_remote_apply: end-to-end latency, from an append in one engine (exporting)
// to the apply of that event in a read model driven from the topic (KafkaProjectionRunner), at a
// steady rate well below the throughput; p50/p99/max per event.
#include <benchmark/benchmark.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <stdexcept>
#include <string>
#include <vector>

#include "annal/engine/engine.h"
#include "annal/kafka/kafka_export.h"
#include "annal/kafka/kafka_projection_runner.h"
#include "export_store.h"
#include "temp_directory.h"

namespace {

using annal::engine::Engine;
using annal::engine::EventData;
using annal::engine::ExpectedVersion;

constexpr int kEvents = 200'000;
constexpr int kStreams = 100;
constexpr std::size_t kPayloadBytes = 256;
constexpr int kPartitions = 4;
// The producer settings both sides use; the export adds none that change the work.
const std::vector<std::pair<std::string, std::string>> kProducerSettings = {
    {"enable.idempotence", "true"}, {"enable.gapless.guarantee", "true"}, {"message.timeout.ms", "0"},
    {"max.in.flight.requests.per.connection", "1"}, {"linger.ms", "5"}, {"log_level", "0"}};

class Cluster {
 public:
  Cluster() {
    char error[256];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "0", error, sizeof(error));
    host_.reset(rd_kafka_new(RD_KAFKA_PRODUCER, conf, error, sizeof(error)));
    cluster_ = rd_kafka_mock_cluster_new(host_.get(), 3);
  }
  ~Cluster() { rd_kafka_mock_cluster_destroy(cluster_); }
  [[nodiscard]] std::string bootstraps() const { return rd_kafka_mock_cluster_bootstraps(cluster_); }
  std::string new_topic() {
    const std::string topic = "bench" + std::to_string(topics_++);
    rd_kafka_mock_topic_create(cluster_, topic.c_str(), kPartitions, 3);
    return topic;
  }

 private:
  std::unique_ptr<rd_kafka_t, void (*)(rd_kafka_t*)> host_{nullptr, rd_kafka_destroy};
  rd_kafka_mock_cluster_t* cluster_ = nullptr;
  int topics_ = 0;
};

Cluster& cluster() {
  static Cluster the_cluster;
  return the_cluster;
}

annal::bench::ExportStore& store() {
  static annal::bench::ExportStore the_store(kEvents, kStreams, kPayloadBytes);
  return the_store;
}

void kafka_export_annal(benchmark::State& state) {
  annal::bench::ExportStore& events = store();
  double start_ms = 0;  // of which: add_projection (metadata, the read-back)
  for (auto _ : state) {
    annal::kafka::KafkaExportOptions options;
    options.brokers = cluster().bootstraps();
    options.topic = cluster().new_topic();
    options.source = "bench";
    for (const auto& [name, value] : kProducerSettings) {
      if (name == "linger.ms" || name == "log_level") options.settings[name] = value;
    }
    auto exporter = std::make_shared<annal::kafka::KafkaExport>(options);
    const std::unique_ptr<annal::engine::Engine> engine = events.open();
    const auto started = std::chrono::steady_clock::now();
    const annal::Status added = engine->add_projection("kafka", exporter, {});
    if (!added.ok()) throw std::runtime_error(added.to_string());
    start_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
    if (!exporter->wait_delivered(events.last.last_sequence, std::chrono::steady_clock::now() + std::chrono::minutes(5))) {
      throw std::runtime_error("not delivered: " + exporter->health().to_string());
    }
    state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    if (!engine->close().ok()) throw std::runtime_error("close failed");
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * kEvents);
  state.counters["start_ms"] = start_ms / static_cast<double>(state.iterations());
  state.SetLabel("KafkaExport: the journal replayed into an idempotent, gapless producer; read-back at start");
}

// Delivery reports counted on librdkafka's background thread, as the export takes them, and a
// wait for the count to move (for room in a full producer), bounded as the export's is.
struct Reports {
  void wait_for_more(std::chrono::milliseconds bound) {
    std::unique_lock lock(mutex);
    const std::int64_t before = count;
    moved.wait_for(lock, bound, [&] { return count != before; });
  }
  std::mutex mutex;
  std::condition_variable moved;
  std::int64_t count = 0;  // under mutex
};
void count_delivery_reports(rd_kafka_t*, rd_kafka_event_t* event, void* opaque) {
  if (rd_kafka_event_type(event) == RD_KAFKA_EVENT_DR) {
    auto* reports = static_cast<Reports*>(opaque);
    std::int64_t taken = 0;
    while (rd_kafka_event_message_next(event) != nullptr) ++taken;
    {
      std::lock_guard lock(reports->mutex);
      reports->count += taken;
    }
    reports->moved.notify_all();
  }
  rd_kafka_event_destroy(event);
}

// state.range(0): 1 to take a delivery report for each record (what the export needs to know
// what Kafka holds), 0 for none (fire and forget, flushed at the end).
void kafka_export_librdkafka_producer(benchmark::State& state) {
  const bool reports = state.range(0) != 0;
  Reports reported;
  annal::bench::ExportStore& events = store();
  // The same records: read once from the journal, outside the timing.
  const std::vector<annal::engine::Event> records = events.read_back();
  for (auto _ : state) {
    const std::string topic = cluster().new_topic();
    const auto started = std::chrono::steady_clock::now();
    char error[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", cluster().bootstraps().c_str(), error, sizeof(error));
    for (const auto& [name, value] : kProducerSettings) rd_kafka_conf_set(conf, name.c_str(), value.c_str(), error, sizeof(error));
    if (reports) {
      rd_kafka_conf_set_opaque(conf, &reported);
      rd_kafka_conf_set_events(conf, RD_KAFKA_EVENT_DR);
      rd_kafka_conf_set_background_event_cb(conf, &count_delivery_reports);
    }
    rd_kafka_t* producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, error, sizeof(error));
    if (reports) {
      rd_kafka_queue_t* main = rd_kafka_queue_get_main(producer);
      rd_kafka_queue_t* background = rd_kafka_queue_get_background(producer);
      rd_kafka_queue_forward(main, background);
      rd_kafka_queue_destroy(background);
      rd_kafka_queue_destroy(main);
    }
    rd_kafka_topic_t* handle = rd_kafka_topic_new(producer, topic.c_str(), nullptr);
    for (const annal::engine::Event& event : records) {
      const annal::engine::EventHeader& h = event.header;
      const std::string key(h.stream_name);
      const std::string sequence = std::to_string(h.sequence);
      const std::string version = std::to_string(h.version);
      const std::string timestamp = std::to_string(h.timestamp_ns);
      rd_kafka_headers_t* headers = rd_kafka_headers_new(8);
      for (const auto& [name, value] : {std::pair<const char*, std::string_view>{"annal.sequence", sequence},
                                        {"annal.version", version},
                                        {"annal.type", h.type},
                                        {"annal.timestamp_ns", timestamp},
                                        {"annal.source", "bench"},
                                        {"annal.delivered", sequence},
                                        {"annal.partitions", "4"}}) {
        rd_kafka_header_add(headers, name, -1, value.data(), static_cast<ssize_t>(value.size()));
      }
      rd_kafka_vu_t fields[5] = {};
      fields[0].vtype = RD_KAFKA_VTYPE_RKT;
      fields[0].u.rkt = handle;
      fields[1].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
      fields[1].u.i = RD_KAFKA_MSG_F_COPY;
      fields[2].vtype = RD_KAFKA_VTYPE_KEY;
      fields[2].u.mem = {const_cast<char*>(key.data()), key.size()};
      fields[3].vtype = RD_KAFKA_VTYPE_VALUE;
      fields[3].u.mem = {const_cast<std::byte*>(event.payload.data()), event.payload.size()};
      fields[4].vtype = RD_KAFKA_VTYPE_HEADERS;
      fields[4].u.headers = headers;
      for (;;) {
        rd_kafka_error_t* failed = rd_kafka_produceva(producer, fields, 5);
        if (failed == nullptr) break;
        const bool full = rd_kafka_error_code(failed) == RD_KAFKA_RESP_ERR__QUEUE_FULL;
        rd_kafka_error_destroy(failed);
        if (!full) throw std::runtime_error("produce failed");
        // Room comes with acknowledgements. With reports on, wait for the background thread to
        // take some (rd_kafka_poll here would take them itself, and drop them uncounted); the
        // bound covers room that came with a report already counted.
        if (reports) {
          reported.wait_for_more(std::chrono::milliseconds(100));
        } else {
          rd_kafka_poll(producer, 10);
        }
      }
    }
    // In event mode flush() returns once every report event has been destroyed, which is after
    // the background thread counted it: the count is complete here (checked at the end).
    if (rd_kafka_flush(producer, 300'000) != RD_KAFKA_RESP_ERR_NO_ERROR) throw std::runtime_error("not flushed");
    state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    rd_kafka_topic_destroy(handle);
    rd_kafka_destroy(producer);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * kEvents);
  if (reports && reported.count != static_cast<std::int64_t>(state.iterations()) * kEvents) {
    throw std::runtime_error("delivery reports missing");
  }
  state.SetLabel(reports ? "a plain librdkafka producer loop, the same records and settings, no journal; a delivery report "
                           "for each record, on the background thread"
                         : "a plain librdkafka producer loop, the same records and settings, no journal; no delivery reports");
}

// A read model that notes, for each event, how long ago it was appended: the payload's first 8
// bytes are the steady clock at the append (the engine and the model share this process's clock).
class LagProbe final : public annal::engine::Projection {
 public:
  void apply(const annal::engine::EventView& event) override {
    std::int64_t appended = 0;
    std::memcpy(&appended, event.payload.data(), sizeof(appended));
    lags_ns.push_back(std::chrono::steady_clock::now().time_since_epoch().count() - appended);
  }
  std::vector<std::int64_t> lags_ns;  // the runner's thread's until it stops
};

void kafka_lag(benchmark::State& state) {
  constexpr int kLagEvents = 3'000;
  constexpr auto kInterval = std::chrono::microseconds(500);  // 2,000 events a second
  for (auto _ : state) {
    const std::string topic = cluster().new_topic();
    annal::test::TempDirectory dir;
    auto opened = Engine::open(dir.path(), {});
    if (!opened.ok()) throw std::runtime_error(opened.status().to_string());
    const std::unique_ptr<Engine> engine = std::move(opened).value();
    auto exporter = std::make_shared<annal::kafka::KafkaExport>(annal::kafka::KafkaExportOptions{
        .brokers = cluster().bootstraps(), .topic = topic, .source = "lag", .settings = {{"linger.ms", "1"}, {"log_level", "0"}}});
    if (const annal::Status added = engine->add_projection("kafka", exporter, {}); !added.ok()) {
      throw std::runtime_error(added.to_string());
    }
    auto probe = std::make_shared<LagProbe>();
    auto runner = annal::kafka::KafkaProjectionRunner::start(probe, {.brokers = cluster().bootstraps(),
                                                                     .topic = topic,
                                                                     .name = "lag",
                                                                     .settings = {{"fetch.wait.max.ms", "5"}, {"log_level", "0"}}});
    if (!runner.ok()) throw std::runtime_error(runner.status().to_string());
    std::vector<std::byte> payload(kPayloadBytes, std::byte{'x'});
    auto next = std::chrono::steady_clock::now();
    for (int i = 0; i < kLagEvents; ++i) {
      std::this_thread::sleep_until(next);
      next += kInterval;
      const std::int64_t now = std::chrono::steady_clock::now().time_since_epoch().count();
      std::memcpy(payload.data(), &now, sizeof(now));
      const EventData event{.type = "Timed", .payload = payload};
      if (!engine->append("s" + std::to_string(i % kStreams), ExpectedVersion::any(), {&event, 1}).ok()) {
        throw std::runtime_error("append failed");
      }
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(2);
    while (runner.value()->progress().applied < kLagEvents && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (const annal::Status stopped = runner.value()->stop(); !stopped.ok() || probe->lags_ns.size() != kLagEvents) {
      throw std::runtime_error("the read model applied " + std::to_string(probe->lags_ns.size()) + " events: " +
                               stopped.to_string());
    }
    std::vector<std::int64_t>& lags = probe->lags_ns;
    std::sort(lags.begin(), lags.end());
    const auto at = [&](double q) { return static_cast<double>(lags[static_cast<std::size_t>(q * static_cast<double>(lags.size() - 1))]) / 1e6; };
    state.counters["p50_ms"] = at(0.50);
    state.counters["p99_ms"] = at(0.99);
    state.counters["max_ms"] = at(1.0);
    if (!engine->close().ok()) throw std::runtime_error("close failed");
  }
  state.SetLabel("append -> journal (group commit, fdatasync) -> KafkaExport (linger.ms=1) -> mock cluster -> "
                 "KafkaProjectionRunner (fetch.wait.max.ms=5); 2,000 events/s; blocking waits");
}

BENCHMARK(kafka_export_annal)->Name("kafka_export/annal")->UseManualTime()->Iterations(3)->Unit(benchmark::kMillisecond);
BENCHMARK(kafka_export_librdkafka_producer)
    ->Name("kafka_export/librdkafka_producer")
    ->Arg(0)
    ->Arg(1)
    ->ArgName("reports")
    ->UseManualTime()
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(kafka_lag)->Name("kafka_lag/append_to_remote_apply")->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
