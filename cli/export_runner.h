// What every `annal export TARGET` shares: the store opened for writing, the exporter added as a
// projection, progress shown until every durable event is acknowledged (--until-caught-up) or
// SIGINT/SIGTERM, and one line saying where the export stands.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "annal/base/status.h"
#include "annal/engine/projection.h"

namespace annal::cli {

struct ExportRun {
  std::string command;      // "export kafka": the prefix of its messages
  std::string directory;    // the store
  std::string key_file;     // its master keys (--key-file), if it is encrypted
  std::string projection;   // the exporter's projection name ("export_kafka")
  std::string where;        // "topic orders": what the first line names
  std::string target;       // "orders": what the last line names
  std::string source;
  std::chrono::milliseconds start_timeout{0};  // how long the exporter's start may take
  bool until_caught_up = false;
  std::shared_ptr<engine::Projection> exporter;
  std::function<std::uint64_t()> delivered;  // the exporter's acknowledged sequence
  std::function<Status()> failure;           // its fatal error, ok while none
};

// Runs the export; the process's exit code. Makes the StopSignals itself, before the engine's
// threads start.
int run_export(const ExportRun& run);

}  // namespace annal::cli
