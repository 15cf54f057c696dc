#include "export_runner.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "annal/engine/engine.h"
#include "arguments.h"
#include "output.h"

namespace annal::cli {

int run_export(const ExportRun& run) {
  StopSignals signals;  // before any thread starts
  engine::Options opening;
  if (Status keys = use_key_file(run.key_file, opening); !keys.ok()) return fail(run.command, keys);
  // An export reads a store: a misspelt directory would be made, empty, and "exported".
  if (std::error_code error; !std::filesystem::is_directory(run.directory, error)) {
    return fail(run.command, run.directory + ": no store there (an export reads an existing store)");
  }
  auto opened = engine::Engine::open(run.directory, opening);
  if (!opened.ok()) return fail(run.command, opened.status());
  engine::Engine& store = *opened.value();
  // SIGINT or SIGTERM while the exporter starts (reaching the server, reading back what it holds,
  // for up to its start timeout) stops it there: the start is watched from a thread of its own.
  std::atomic<bool> starting{true};
  std::atomic<bool> stopped_while_starting{false};
  // Asked again until the start ends: a stop asked before the exporter's start has begun would be
  // forgotten by it (a start clears what an earlier run was asked).
  std::thread watcher([&] {
    while (starting.load(std::memory_order_acquire)) {
      if (!stopped_while_starting.load(std::memory_order_acquire) && !signals.stopped(std::chrono::milliseconds(200))) {
        continue;
      }
      stopped_while_starting.store(true, std::memory_order_release);
      run.exporter->stop_requested();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });
  // Said before the start, which may wait for the server up to its timeout: what it waits for, and
  // that a stop ends the wait.
  std::fprintf(stderr, "%s: starting: reaching %s and reading back what source %s exported there (up to %g s; SIGINT stops)\n",
               run.command.c_str(), run.where.c_str(), run.source.c_str(),
               static_cast<double>(run.start_timeout.count()) / 1000.0);
  const Status added = store.add_projection(run.projection, run.exporter, {});
  starting.store(false, std::memory_order_release);
  // Said before the watcher is joined (it may wait 200 ms more for a signal): where the export
  // resumed, before it has published much past it (a test times its kills from this line).
  if (added.ok() && !stopped_while_starting.load(std::memory_order_acquire)) {
    std::fprintf(stderr, "%s: %s to %s as source %s, from sequence %s\n", run.command.c_str(), run.directory.c_str(),
                 run.where.c_str(), run.source.c_str(), grouped(run.delivered() + 1).c_str());
  }
  watcher.join();
  if (stopped_while_starting.load(std::memory_order_acquire)) {
    std::fprintf(stderr, "%s: stopped while starting\n", run.command.c_str());
    const Status closed = store.close();
    return closed.ok() ? kOk : fail(run.command, closed);
  }
  if (!added.ok()) {
    (void)store.close();
    return fail(run.command, added);
  }
  int exit_code = kOk;
  // Its progress on stderr, as lines (a terminal's or a log's): what the target has acknowledged,
  // how far behind the store that is, and the rate since this run resumed; a line a second at most
  // while it changes, and one once it has caught up.
  const std::uint64_t resumed_at = run.delivered();
  const auto started = std::chrono::steady_clock::now();
  ProgressLines lines(run.command);
  for (;;) {
    const std::uint64_t durable = store.durable_sequence();
    const std::uint64_t delivered = run.delivered();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    const double rate = seconds > 0 ? static_cast<double>(delivered - std::min(delivered, resumed_at)) / seconds : 0;
    lines.report("acknowledged up to sequence " + grouped(delivered) + " of " + grouped(durable) + " (" +
                     grouped(durable - std::min(durable, delivered)) + " behind)" +
                     (delivered >= durable ? ", caught up" : ""),
                 delivered >= durable, ", " + grouped(static_cast<std::uint64_t>(rate)) + "/s");
    if (const auto status = store.projection_status(run.projection); status.ok() && !status.value().error.ok()) {
      exit_code = fail(run.command, status.value().error);
      break;
    }
    // A fatal error seen while no event was left to send: the projection has not thrown it yet.
    if (Status failed = run.failure(); !failed.ok()) {
      exit_code = fail(run.command, failed);
      break;
    }
    if (run.until_caught_up && delivered >= durable) break;
    if (signals.stopped(std::chrono::seconds(1))) break;
  }
  const std::uint64_t delivered = run.delivered();
  const std::uint64_t durable = store.durable_sequence();
  const Status health = run.exporter->health();
  std::printf("exported to %s: acknowledged up to sequence %s of %s (%s behind)%s\n", run.target.c_str(),
              grouped(delivered).c_str(), grouped(durable).c_str(), grouped(durable - std::min(durable, delivered)).c_str(),
              health.ok() ? "" : ("; " + health.to_string()).c_str());
  if (Status closed = store.close(); !closed.ok() && exit_code == kOk) exit_code = fail(run.command, closed);
  return exit_code;
}

}  // namespace annal::cli
