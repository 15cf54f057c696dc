// GET /metrics: the Prometheus text exposition of the engine's metrics (read from Engine::metrics()
// and each named projection's status at every scrape) and of the server's own requests, counted
// as they are answered. prometheus-cpp (Debian's prometheus-cpp-dev) holds the request counters and
// histograms and writes the text format.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "annal/engine/engine.h"

namespace annal::server {

class Metrics {
 public:
  Metrics(engine::Engine& engine, std::vector<std::string> projections);

  // One request answered: its route (a fixed name, not the path), status and time taken.
  void answered(std::string_view route, unsigned status, std::chrono::steady_clock::duration took);

  // The transport's own figures, read at each scrape.
  struct Transport {
    std::size_t connections = 0;  // open now
    std::size_t feeds = 0;
    std::size_t queries = 0;      // running or waiting for a query thread
    std::uint64_t accept_errors = 0;  // since start
  };
  // The exposition, text format 0.0.4.
  [[nodiscard]] std::string scrape(const Transport& transport) const;

 private:
  engine::Engine& engine_;
  const std::vector<std::string> projections_;
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& durations_;
};

}  // namespace annal::server
