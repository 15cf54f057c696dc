// annal export rabbitmq DIR --url amqp://... --stream S --source N: the store's journal exported
// to a RabbitMQ stream, exactly once (connectors/rabbitmq), resuming where the stream stands. Runs
// until SIGINT or SIGTERM, or with --until-caught-up until every durable event is confirmed. The
// store is opened for writing (its lock held): to export while a process keeps the store open,
// embed RabbitExport there.
#include <memory>
#include <string>

#include "annal/rabbitmq/rabbit_export.h"
#include "arguments.h"
#include "commands.h"
#include "export_runner.h"

namespace annal::cli {
namespace {

struct RabbitOptions {
  std::string directory;
  std::string key_file;
  rabbitmq::RabbitExportOptions rabbit;
  bool until_caught_up = false;
};

int run_rabbitmq_export(const RabbitOptions& options) {
  auto exporter = std::make_shared<rabbitmq::RabbitExport>(options.rabbit);
  return run_export({.command = "export rabbitmq",
                     .directory = options.directory,
                     .key_file = options.key_file,
                     .projection = "export_rabbitmq",
                     .where = "stream " + options.rabbit.stream,
                     .target = options.rabbit.stream,
                     .source = options.rabbit.source,
                     .start_timeout = options.rabbit.start_timeout,
                     .until_caught_up = options.until_caught_up,
                     .exporter = exporter,
                     .delivered = [exporter] { return exporter->delivered(); },
                     .failure = [exporter] { return exporter->failure(); }});
}

}  // namespace

void add_export_rabbitmq(CLI::App& export_command, int& exit_code) {
  auto options = std::make_shared<RabbitOptions>();
  auto* rabbit = export_command.add_subcommand(
      "rabbitmq",
      "Publish every durable event to a RabbitMQ stream (headers: annal.*), with confirms, resuming where the stream stands");
  rabbit->add_option("directory", options->directory, "The store (opened for writing: its lock is taken)")->required();
  add_key_file(*rabbit, options->key_file);
  rabbit->add_option("--url", options->rabbit.url, "The server, amqp://user:password@host:port/vhost (%2f for /)")->required();
  rabbit->add_option("--stream", options->rabbit.stream, "The stream queue (declared if absent)")->required();
  rabbit->add_option("--source", options->rabbit.source,
                     "This store's name in the messages (annal.source): the same every run, no other store's")
      ->required();
  add_start_timeout(*rabbit, options->rabbit.start_timeout, "connect and read the stream back");
  rabbit->add_flag("--until-caught-up", options->until_caught_up,
                   "Stop once every durable event is confirmed (else run until SIGINT or SIGTERM)");
  rabbit->callback([&exit_code, options] { exit_code = run_rabbitmq_export(*options); });
}

}  // namespace annal::cli
