// annal example: past one machine. Two annal instances each own half of the order streams and
// export their journals to one Kafka topic; a third process builds the global revenue read model
// from the topic. scripts/demo-cluster runs them, kills each once at random, and checks that the
// global totals are the sum of the instances' own.
//
//   cluster broker
//       A Kafka cluster for the demo: librdkafka's mock cluster (the Kafka protocol, three brokers
//       on loopback, in this process; Debian packages no Kafka broker), topic "orders" of 4
//       partitions. Prints "brokers HOST:PORT,..." and runs until SIGTERM or SIGINT.
//   cluster instance --dir=PATH --brokers=LIST --source=NAME --orders=N
//       An annal instance: its store in PATH, its streams order-NAME-<i>. Appends orders (each
//       OrderCreated and OrderPaid in one append) until the store holds N, one a millisecond (a
//       pace for the demo, which kills it mid-run; the engine takes far more),
//       exports them (KafkaExport), waits until Kafka has every one, prints "totals ..." (its own
//       revenue model) and exits. Restarted after a crash, it goes on where its store stands.
//   cluster revenue --dir=PATH --brokers=LIST [--events=N]
//       The global revenue model, driven from the topic (KafkaProjectionRunner), its snapshots in
//       PATH. Prints its progress; with --events, exits once it has applied N events, printing
//       "totals ..."; without, runs until SIGTERM or SIGINT.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>

#include <annal/engine/engine.h>
#include <annal/kafka/kafka_export.h>
#include <annal/kafka/kafka_projection_runner.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>

#include "revenue.h"

namespace {

using namespace std::chrono_literals;
namespace ae = annal::engine;

constexpr const char* kTopic = "orders";
constexpr int kPartitions = 4;

// --name=value arguments after the command.
std::map<std::string, std::string> arguments(int argc, char** argv) {
  std::map<std::string, std::string> out;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    const std::size_t eq = arg.find('=');
    if (arg.rfind("--", 0) != 0 || eq == std::string::npos) throw std::invalid_argument("not --name=value: " + arg);
    out[arg.substr(2, eq - 2)] = arg.substr(eq + 1);
  }
  return out;
}

std::string required(const std::map<std::string, std::string>& args, const std::string& name) {
  const auto found = args.find(name);
  if (found == args.end() || found->second.empty()) throw std::invalid_argument("--" + name + "=... is needed");
  return found->second;
}

// SIGTERM and SIGINT, taken by sigtimedwait rather than by a handler.
sigset_t stop_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // before any thread starts: they inherit it
  return signals;
}

bool stop_signalled(const sigset_t& signals, std::chrono::milliseconds wait) {
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(wait);
  const timespec timeout{.tv_sec = seconds.count(), .tv_nsec = std::chrono::nanoseconds(wait - seconds).count()};
  return sigtimedwait(&signals, nullptr, &timeout) > 0;
}

int broker() {
  const sigset_t signals = stop_signals();
  char error[256];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "log_level", "0", error, sizeof(error));
  const std::unique_ptr<rd_kafka_t, void (*)(rd_kafka_t*)> host(rd_kafka_new(RD_KAFKA_PRODUCER, conf, error, sizeof(error)),
                                                                 rd_kafka_destroy);
  if (!host) {
    std::fprintf(stderr, "cluster broker: %s\n", error);
    return 1;
  }
  rd_kafka_mock_cluster_t* cluster = rd_kafka_mock_cluster_new(host.get(), 3);
  rd_kafka_mock_topic_create(cluster, kTopic, kPartitions, 3);
  std::printf("brokers %s\n", rd_kafka_mock_cluster_bootstraps(cluster));
  std::fflush(stdout);
  while (!stop_signalled(signals, 1s)) {
  }
  rd_kafka_mock_cluster_destroy(cluster);
  return 0;
}

int instance(const std::map<std::string, std::string>& args) {
  const std::string dir = required(args, "dir");
  const std::string source = required(args, "source");
  const std::uint64_t orders = std::stoull(required(args, "orders"));
  auto opened = ae::Engine::open(dir, {});
  if (!opened.ok()) throw std::runtime_error(opened.status().to_string());
  const std::unique_ptr<ae::Engine> engine = std::move(opened).value();
  auto revenue = std::make_shared<cluster::Revenue>();
  if (const annal::Status added = engine->add_projection("revenue", revenue, {}); !added.ok()) {
    throw std::runtime_error(added.to_string());
  }
  auto exporter = std::make_shared<annal::kafka::KafkaExport>(annal::kafka::KafkaExportOptions{
      .brokers = required(args, "brokers"), .topic = kTopic, .source = source});
  if (const annal::Status added = engine->add_projection("export_kafka", exporter, {}); !added.ok()) {
    throw std::runtime_error(added.to_string());
  }
  const auto totals = [&](std::uint64_t at) {
    auto read = ae::query<cluster::Revenue>(*engine, "revenue", at, [](const cluster::Revenue& r) { return r.totals(); }, 1min);
    if (!read.ok()) throw std::runtime_error(read.status().to_string());
    return read.value();
  };
  const std::uint64_t from = totals(engine->durable_sequence()).orders;
  std::fprintf(stderr, "instance %s: appending orders %llu to %llu, exporting from sequence %llu\n", source.c_str(),
               static_cast<unsigned long long>(from), static_cast<unsigned long long>(orders),
               static_cast<unsigned long long>(exporter->delivered() + 1));
  std::optional<ae::Receipt> appended_last;
  for (std::uint64_t i = from; i < orders; ++i) {
    const std::string order = "order-" + source + "-" + std::to_string(i);
    const std::string payload = "{\"orderId\":\"" + order + "\",\"amount\":" + std::to_string(100 + std::hash<std::string>{}(order) % 9900) + "}";
    const auto bytes = std::as_bytes(std::span(payload));
    const ae::EventData events[] = {{.type = "OrderCreated", .payload = {bytes.begin(), bytes.end()}},
                                    {.type = "OrderPaid", .payload = {bytes.begin(), bytes.end()}}};
    auto appended = engine->append(order, ae::ExpectedVersion::no_stream(), events);
    if (!appended.ok()) throw std::runtime_error(appended.status().to_string());
    appended_last = appended.value();
    // Paced, so that the demo's kills land mid-run; progress for the script to time them by.
    if ((i + 1) % 100 == 0) std::fprintf(stderr, "instance %s: appended %llu orders\n", source.c_str(), static_cast<unsigned long long>(i + 1));
    std::this_thread::sleep_for(1ms);
  }
  if (appended_last) {
    if (const annal::Status durable = engine->wait_durable(*appended_last, ae::Engine::Clock::now() + 1min); !durable.ok()) {
      throw std::runtime_error(durable.to_string());
    }
  }
  const std::uint64_t last = engine->durable_sequence();
  if (!exporter->wait_delivered(last, std::chrono::steady_clock::now() + 2min)) {
    throw std::runtime_error("Kafka has not acknowledged every event: " + exporter->health().to_string());
  }
  std::printf("totals %s\n", cluster::describe(totals(last)).c_str());
  const annal::Status closed = engine->close();
  if (!closed.ok()) throw std::runtime_error(closed.to_string());
  return 0;
}

int global_revenue(const std::map<std::string, std::string>& args) {
  const sigset_t signals = stop_signals();
  const auto wanted = args.contains("events") ? std::stoull(args.at("events")) : 0;
  auto revenue = std::make_shared<cluster::Revenue>();
  // SIGTERM while the start waits for Kafka ends it there, as it would later.
  bool stopped_while_starting = false;
  auto runner = annal::kafka::KafkaProjectionRunner::start(
      revenue, {.brokers = required(args, "brokers"),
                .topic = kTopic,
                .name = "revenue",
                .directory = required(args, "dir"),
                .snapshot_every_events = 1000,
                .stopping = [&] {
                  stopped_while_starting = stopped_while_starting || stop_signalled(signals, 0ms);
                  return stopped_while_starting;
                }});
  if (stopped_while_starting) {
    std::fprintf(stderr, "revenue: stopped while starting\n");
    return 0;
  }
  if (!runner.ok()) throw std::runtime_error(runner.status().to_string());
  const auto totals = [&] {
    auto read = runner.value()->query<cluster::Revenue>({}, [](const cluster::Revenue& r) { return r.totals(); }, 1min);
    if (!read.ok()) throw std::runtime_error(read.status().to_string());
    return read.value();
  };
  std::fprintf(stderr, "revenue: restored %llu events from its snapshot\n",
               static_cast<unsigned long long>(runner.value()->progress().restored));
  const auto deadline = std::chrono::steady_clock::now() + 5min;
  std::uint64_t shown = ~0ull;
  while (!stop_signalled(signals, 200ms)) {
    const auto progress = runner.value()->progress();
    if (!progress.error.ok()) throw std::runtime_error(progress.error.to_string());
    const cluster::Revenue::Totals now = totals();
    if (now.events != shown) {
      std::fprintf(stderr, "revenue: %s, %llu behind\n", cluster::describe(now).c_str(),
                   static_cast<unsigned long long>(progress.lag));
      shown = now.events;
    }
    if (wanted != 0 && progress.caught_up && now.events >= wanted) break;
    if (wanted != 0 && std::chrono::steady_clock::now() > deadline) {
      throw std::runtime_error("applied " + std::to_string(now.events) + " events of " + std::to_string(wanted) +
                               " in 5 minutes");
    }
  }
  const cluster::Revenue::Totals last = totals();
  if (const annal::Status stopped = runner.value()->stop(); !stopped.ok()) throw std::runtime_error(stopped.to_string());
  const auto progress = runner.value()->progress();
  std::printf("totals %s\n", cluster::describe(last).c_str());
  std::fprintf(stderr, "revenue: %llu duplicate records passed over, %llu foreign\n",
               static_cast<unsigned long long>(progress.duplicates), static_cast<unsigned long long>(progress.foreign));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string command = argc > 1 ? argv[1] : "";
  try {
    if (command == "broker") return broker();
    if (command == "instance") return instance(arguments(argc, argv));
    if (command == "revenue") return global_revenue(arguments(argc, argv));
    std::fprintf(stderr, "usage: cluster broker | instance --dir= --brokers= --source= --orders= | "
                         "revenue --dir= --brokers= [--events=]\n");
    return 2;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "cluster %s: %s\n", command.c_str(), error.what());
    return 1;
  }
}
