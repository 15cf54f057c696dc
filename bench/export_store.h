// The store the export benchmarks replay (kafka_bench, rabbitmq_bench): `events` events of
// `payload_bytes` bytes over `streams` streams, appended and durable before any timing; and the
// same events read back, for the baselines that send them without the engine. Each iteration
// opens the store anew (open()) and closes it after: an exporter left on one engine from an
// earlier iteration would go on running beside the next (librdkafka's threads, say) and slow it.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "annal/engine/engine.h"
#include "temp_directory.h"

namespace annal::bench {

struct ExportStore {
  ExportStore(int events, int streams, std::size_t payload_bytes) {
    const std::unique_ptr<engine::Engine> engine = open();
    const std::vector<std::byte> payload(payload_bytes, std::byte{'x'});
    for (int i = 0; i < events; ++i) {
      const engine::EventData event{.type = "Counted", .payload = payload};
      last = engine->append("s" + std::to_string(i % streams), engine::ExpectedVersion::any(), {&event, 1}).value();
    }
    if (!engine->wait_durable(last, engine::Engine::Clock::now() + std::chrono::minutes(1)).ok()) {
      throw std::runtime_error("not durable");
    }
    if (!engine->close().ok()) throw std::runtime_error("close failed");
  }
  [[nodiscard]] std::unique_ptr<engine::Engine> open() const {
    auto opened = engine::Engine::open(dir.path(), {});
    if (!opened.ok()) throw std::runtime_error(opened.status().to_string());
    return std::move(opened).value();
  }
  // Every event, in order.
  [[nodiscard]] std::vector<engine::Event> read_back() const {
    const std::unique_ptr<engine::Engine> engine = open();
    std::vector<engine::Event> all;
    for (std::uint64_t from = 1;;) {
      auto read = engine->read_all(from, 10'000);
      if (!read.ok() || read.value().empty()) break;
      from = read.value().back().header.sequence + 1;
      for (auto& event : read.value()) all.push_back(std::move(event));
    }
    return all;
  }

  annal::test::TempDirectory dir;
  engine::Receipt last;
};

}  // namespace annal::bench
