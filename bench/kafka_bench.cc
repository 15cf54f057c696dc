// Events per second exported to Kafka: the journal's export (connectors/kafka: an idempotent,
// gapless producer fed by a projection, with the read-back at start) against a plain librdkafka
// producer loop sending the same records (key, 256 B value, the same headers) with the same
// producer settings, and no journal. Both go to librdkafka's mock cluster (three brokers in this
// process; Debian packages no Kafka broker), a new topic of 4 partitions each iteration, and are
// timed from creating the producer to the last record acknowledged. The events are in the journal
// already: a catch-up figure.
#include <benchmark/benchmark.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "annal/engine/engine.h"
#include "annal/kafka/kafka_export.h"
#include "temp_directory.h"

namespace {

using annal::engine::Engine;
using annal::engine::EventData;
using annal::engine::ExpectedVersion;

constexpr int kEvents = 50'000;
constexpr int kStreams = 100;
constexpr std::size_t kPayloadBytes = 256;
constexpr int kPartitions = 4;
// The producer settings both sides use; the export adds none that change the work.
const std::vector<std::pair<std::string, std::string>> kProducerSettings = {
    {"enable.idempotence", "true"}, {"enable.gapless.guarantee", "true"}, {"message.timeout.ms", "0"},
    {"linger.ms", "5"},             {"log_level", "0"}};

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

// The store: kEvents events of kPayloadBytes over kStreams streams, durable.
struct Store {
  Store() {
    auto opened = Engine::open(dir.path(), {});
    if (!opened.ok()) throw std::runtime_error(opened.status().to_string());
    engine = std::move(opened).value();
    const std::vector<std::byte> payload(kPayloadBytes, std::byte{'x'});
    for (int i = 0; i < kEvents; ++i) {
      const EventData event{.type = "Counted", .payload = payload};
      last = engine->append("s" + std::to_string(i % kStreams), ExpectedVersion::any(), {&event, 1}).value();
    }
    if (!engine->wait_durable(last, Engine::Clock::now() + std::chrono::minutes(1)).ok()) throw std::runtime_error("not durable");
  }
  annal::test::TempDirectory dir;
  std::unique_ptr<Engine> engine;
  annal::engine::Receipt last;
};

Store& store() {
  static Store the_store;
  return the_store;
}

void kafka_export_annal(benchmark::State& state) {
  (void)cluster();  // made first, so destroyed last: the exporters still on the store outlive no broker
  Store& events = store();
  static int run = 0;
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
    const auto started = std::chrono::steady_clock::now();
    const annal::Status added = events.engine->add_projection("kafka" + std::to_string(run++), exporter, {});
    if (!added.ok()) throw std::runtime_error(added.to_string());
    start_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
    if (!exporter->wait_delivered(events.last.last_sequence, std::chrono::steady_clock::now() + std::chrono::minutes(5))) {
      throw std::runtime_error("not delivered: " + exporter->health().to_string());
    }
    state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * kEvents);
  state.counters["start_ms"] = start_ms / static_cast<double>(state.iterations());
  state.SetLabel("KafkaExport: the journal replayed into an idempotent, gapless producer; read-back at start");
}

void kafka_export_librdkafka_producer(benchmark::State& state) {
  Store& events = store();
  // The same records: read once from the journal, outside the timing.
  std::vector<annal::engine::Event> records;
  for (std::uint64_t from = 1;;) {
    auto read = events.engine->read_all(from, 10'000);
    if (!read.ok() || read.value().empty()) break;
    from = read.value().back().header.sequence + 1;
    for (auto& event : read.value()) records.push_back(std::move(event));
  }
  for (auto _ : state) {
    const std::string topic = cluster().new_topic();
    const auto started = std::chrono::steady_clock::now();
    char error[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", cluster().bootstraps().c_str(), error, sizeof(error));
    for (const auto& [name, value] : kProducerSettings) rd_kafka_conf_set(conf, name.c_str(), value.c_str(), error, sizeof(error));
    rd_kafka_t* producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, error, sizeof(error));
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
                                        {"annal.delivered", sequence}}) {
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
        rd_kafka_poll(producer, 10);
      }
    }
    if (rd_kafka_flush(producer, 300'000) != RD_KAFKA_RESP_ERR_NO_ERROR) throw std::runtime_error("not flushed");
    state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    rd_kafka_topic_destroy(handle);
    rd_kafka_destroy(producer);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * kEvents);
  state.SetLabel("a plain librdkafka producer loop, the same records and settings, no journal");
}

BENCHMARK(kafka_export_annal)->Name("kafka_export/annal")->UseManualTime()->Iterations(3)->Unit(benchmark::kMillisecond);
BENCHMARK(kafka_export_librdkafka_producer)
    ->Name("kafka_export/librdkafka_producer")
    ->UseManualTime()
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
