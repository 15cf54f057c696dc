// annal export kafka DIR --brokers B --topic T --source S: the store's journal exported to a Kafka
// topic, exactly once (connectors/kafka), resuming where the topic stands. And annal import kafka
// DIR --brokers B --topic T --group G: a topic into the store's streams, each message once,
// resuming from the group's offsets. Both run until SIGINT or SIGTERM, or with --until-caught-up
// until nothing is left to do. The store is opened for writing (its lock held): to export or
// import while a process keeps the store open, embed KafkaExport or KafkaImport there.
#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "annal/engine/engine.h"
#include "annal/kafka/kafka_export.h"
#include "annal/kafka/kafka_import.h"
#include "arguments.h"
#include "commands.h"
#include "export_runner.h"
#include "output.h"

namespace annal::cli {
namespace {

struct ExportOptions {
  std::string directory;
  std::string key_file;
  kafka::KafkaExportOptions kafka;
  std::vector<std::string> settings;  // key=value
  bool until_caught_up = false;
};

int run_kafka_export(ExportOptions& options) {
  auto settings = key_values("--set", options.settings);
  if (!settings.ok()) return fail("export kafka", settings.status());
  options.kafka.settings = std::move(settings).value();
  auto exporter = std::make_shared<kafka::KafkaExport>(options.kafka);
  return run_export({.command = "export kafka",
                     .directory = options.directory,
                     .key_file = options.key_file,
                     .projection = "export_kafka",
                     .where = "topic " + options.kafka.topic,
                     .target = options.kafka.topic,
                     .source = options.kafka.source,
                     .start_timeout = options.kafka.start_timeout,
                     .until_caught_up = options.until_caught_up,
                     .exporter = exporter,
                     .delivered = [exporter] { return exporter->delivered(); },
                     .failure = [exporter] { return exporter->failure(); }});
}

struct ImportKafkaOptions {
  std::string directory;
  std::string key_file;
  kafka::KafkaImportOptions kafka;
  std::vector<std::string> settings;  // key=value
  bool skip_bad = false;
  bool until_caught_up = false;
};

int run_import(ImportKafkaOptions& options) {
  auto settings = key_values("--set", options.settings);
  if (!settings.ok()) return fail("import kafka", settings.status());
  options.kafka.settings = std::move(settings).value();
  options.kafka.on_bad = options.skip_bad ? kafka::KafkaImportOptions::OnBad::skip : kafka::KafkaImportOptions::OnBad::stop;
  options.kafka.on_skipped = [](const Status& skipped) {
    std::fprintf(stderr, "import kafka: skipped %s\n", skipped.message().c_str());
  };
  // Before the store is opened (and so made, if new): nothing is made for options it refuses.
  if (Status checked = kafka::KafkaImport::check(options.kafka); !checked.ok()) return fail("import kafka", checked);
  StopSignals signals;  // before any thread starts
  engine::Options opening;
  if (Status keys = use_key_file(options.key_file, opening); !keys.ok()) return fail("import kafka", keys);
  auto opened = engine::Engine::open(options.directory, opening);
  if (!opened.ok()) return fail("import kafka", opened.status());
  engine::Engine& store = *opened.value();
  // SIGINT or SIGTERM while the start waits for Kafka (up to its start timeout) ends it there.
  bool stopped_while_starting = false;
  options.kafka.stopping = [&] {
    stopped_while_starting = stopped_while_starting || signals.stopped(std::chrono::milliseconds(0));
    return stopped_while_starting;
  };
  std::fprintf(stderr, "import kafka: starting: reaching topic %s (up to %g s; SIGINT stops)\n",
               options.kafka.topic.c_str(), static_cast<double>(options.kafka.start_timeout.count()) / 1000.0);
  auto import = kafka::KafkaImport::start(store, options.kafka);
  if (stopped_while_starting) {
    std::fprintf(stderr, "import kafka: stopped while starting\n");
    if (import.ok()) (void)import.value()->stop();
    const Status closed = store.close();
    return closed.ok() ? kOk : fail("import kafka", closed);
  }
  if (!import.ok()) {
    (void)store.close();
    return fail("import kafka", import.status());
  }
  std::fprintf(stderr, "import kafka: topic %s into %s as group %s\n", options.kafka.topic.c_str(),
               options.directory.c_str(), options.kafka.group.c_str());
  std::string retrying_reported;
  ProgressLines lines("import kafka");
  for (;;) {
    const kafka::KafkaImport::Progress progress = import.value()->progress();
    if (progress.retrying.message() != retrying_reported) {
      if (progress.retrying.ok()) std::fprintf(stderr, "import kafka: Kafka answers again\n");
      retrying_reported = progress.retrying.message();
      if (!retrying_reported.empty()) std::fprintf(stderr, "import kafka: retrying: %s\n", retrying_reported.c_str());
    }
    lines.report("imported " + grouped(progress.imported) + " (" + grouped(progress.duplicates) +
                     " already in the store, " + grouped(progress.skipped) + " skipped), lag " + grouped(progress.lag) +
                     (progress.caught_up ? ", caught up" : ""),
                 progress.caught_up);
    if (!progress.error.ok() || (options.until_caught_up && progress.caught_up)) break;
    if (signals.stopped(std::chrono::milliseconds(200))) break;
  }
  const Status stopped = import.value()->stop();
  const kafka::KafkaImport::Progress done = import.value()->progress();
  std::printf("imported %s events from topic %s, %s already in the store, %s skipped\n", grouped(done.imported).c_str(),
              options.kafka.topic.c_str(), grouped(done.duplicates).c_str(), grouped(done.skipped).c_str());
  int exit_code = stopped.ok() ? kOk : fail("import kafka", stopped);
  if (Status closed = store.close(); !closed.ok() && exit_code == kOk) exit_code = fail("import kafka", closed);
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
  add_key_file(*kafka, options->key_file);
  kafka->add_option("--brokers", options->kafka.brokers, "Kafka's bootstrap servers, host:port,...")->required();
  kafka->add_option("--topic", options->kafka.topic, "The topic, created beforehand")->required();
  kafka->add_option("--source", options->kafka.source,
                    "This store's name in the records (annal.source): the same every run, no other store's")
      ->required();
  kafka->add_option("--set", options->settings, "A librdkafka setting, key=value (security.protocol, sasl.*, linger.ms ...)");
  add_start_timeout(*kafka, options->kafka.start_timeout, "reach Kafka and read the topic back");
  kafka->add_flag("--until-caught-up", options->until_caught_up,
                  "Stop once every durable event is acknowledged (else run until SIGINT or SIGTERM)");
  kafka->callback([&exit_code, options] { exit_code = run_kafka_export(*options); });
}

void add_import_kafka(CLI::App& import, int& exit_code) {
  auto options = std::make_shared<ImportKafkaOptions>();
  auto* kafka = import.add_subcommand(
      "kafka", "Append each message of a Kafka topic as one event, once, resuming from the consumer group's offsets");
  kafka->add_option("directory", options->directory, "The store (opened for writing: its lock is taken)")->required();
  add_key_file(*kafka, options->key_file);
  kafka->add_option("--brokers", options->kafka.brokers, "Kafka's bootstrap servers, host:port,...")->required();
  kafka->add_option("--topic", options->kafka.topic, "The topic")->required();
  kafka->add_option("--group", options->kafka.group, "The consumer group: its committed offsets are where it resumes")
      ->required();
  kafka->add_option("--stream-field", options->kafka.stream_field,
                    "The JSON field naming a message's stream (default: the message's key)");
  kafka->add_option("--stream-prefix", options->kafka.stream_prefix, "Put before --stream-field's value (order-)");
  kafka->add_option("--type-field", options->kafka.type_field, "The JSON field of the event type, without a header annal.type")
      ->capture_default_str();
  kafka->add_flag("--skip-bad", options->skip_bad, "Skip bad messages (each reported) instead of stopping at the first");
  kafka->add_option("--set", options->settings, "A librdkafka setting, key=value (security.protocol, sasl.* ...)");
  add_start_timeout(*kafka, options->kafka.start_timeout, "reach Kafka and the topic");
  kafka->add_flag("--until-caught-up", options->until_caught_up,
                  "Stop once every partition is read to its end and committed (else run until SIGINT or SIGTERM)");
  kafka->callback([&exit_code, options] { exit_code = run_import(*options); });
}

}  // namespace annal::cli
