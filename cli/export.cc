// annal export kafka DIR --brokers B --topic T --source S: the store's journal exported to a Kafka
// topic, exactly once (connectors/kafka), resuming where the topic stands. Runs until SIGINT or
// SIGTERM, or with --until-caught-up until every durable event is acknowledged. The store is opened
// for writing (its lock held): to export a store a process keeps open, embed KafkaExport there.
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "annal/engine/engine.h"
#include "annal/kafka/kafka_export.h"
#include "commands.h"
#include "output.h"

namespace annal::cli {
namespace {

struct ExportOptions {
  std::string directory;
  kafka::KafkaExportOptions kafka;
  std::vector<std::string> settings;  // key=value
  bool until_caught_up = false;
};

int run_export(ExportOptions& options) {
  for (const std::string& setting : options.settings) {
    const auto equals = setting.find('=');
    if (equals == std::string::npos || equals == 0) {
      return fail("export kafka", "--set " + setting + ": a librdkafka setting is key=value");
    }
    options.kafka.settings[setting.substr(0, equals)] = setting.substr(equals + 1);
  }
  // Before any thread starts: SIGINT and SIGTERM are taken by sigtimedwait below, not by default.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  auto opened = engine::Engine::open(options.directory, {});
  if (!opened.ok()) return fail("export kafka", opened.status());
  engine::Engine& store = *opened.value();
  auto exporter = std::make_shared<kafka::KafkaExport>(options.kafka);
  if (Status added = store.add_projection("export_kafka", exporter, {}); !added.ok()) {
    (void)store.close();
    return fail("export kafka", added);
  }
  std::fprintf(stderr, "export kafka: %s to topic %s as source %s, from sequence %s\n", options.directory.c_str(),
               options.kafka.topic.c_str(), options.kafka.source.c_str(), grouped(exporter->delivered() + 1).c_str());
  int exit_code = kOk;
  Progress progress("export kafka", store.durable_sequence());
  for (;;) {
    const std::uint64_t durable = store.durable_sequence();
    const std::uint64_t delivered = exporter->delivered();
    progress.update(delivered);
    if (const auto status = store.projection_status("export_kafka"); status.ok() && !status.value().error.ok()) {
      exit_code = fail("export kafka", status.value().error);
      break;
    }
    // A fatal error seen while no event was left to send: the projection has not thrown it yet.
    if (Status failed = exporter->failure(); !failed.ok()) {
      exit_code = fail("export kafka", failed);
      break;
    }
    if (options.until_caught_up && delivered >= durable) break;
    const timespec second{1, 0};
    if (sigtimedwait(&stop, nullptr, &second) > 0) break;
  }
  progress.finish();
  const std::uint64_t delivered = exporter->delivered();
  const std::uint64_t durable = store.durable_sequence();
  std::printf("exported to %s: acknowledged up to sequence %s of %s (%s behind)%s\n", options.kafka.topic.c_str(),
              grouped(delivered).c_str(), grouped(durable).c_str(), grouped(durable - std::min(durable, delivered)).c_str(),
              exporter->health().ok() ? "" : ("; " + exporter->health().to_string()).c_str());
  if (Status closed = store.close(); !closed.ok() && exit_code == kOk) exit_code = fail("export kafka", closed);
  return exit_code;
}

}  // namespace

void add_export(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<ExportOptions>();
  auto* command = app.add_subcommand("export", "Export the store's journal to another system, exactly once");
  command->require_subcommand(1);
  auto* kafka = command->add_subcommand(
      "kafka", "Produce every durable event to a Kafka topic (key: stream; headers: annal.*), resuming where the topic stands");
  kafka->add_option("directory", options->directory, "The store (opened for writing: its lock is taken)")->required();
  kafka->add_option("--brokers", options->kafka.brokers, "Kafka's bootstrap servers, host:port,...")->required();
  kafka->add_option("--topic", options->kafka.topic, "The topic, created beforehand")->required();
  kafka->add_option("--source", options->kafka.source,
                    "This store's name in the records (annal.source): the same every run, no other store's")
      ->required();
  kafka->add_option("--set", options->settings, "A librdkafka setting, key=value (security.protocol, sasl.*, linger.ms ...)");
  kafka->add_flag("--until-caught-up", options->until_caught_up,
                  "Stop once every durable event is acknowledged (else run until SIGINT or SIGTERM)");
  kafka->callback([&exit_code, options] { exit_code = run_export(*options); });
}

}  // namespace annal::cli
