#include "metrics.h"

#include <prometheus/text_serializer.h>

#include <cmath>

namespace annal::server {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

const prometheus::Histogram::BucketBoundaries kRequestSeconds{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                              0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5, 10};

MetricFamily family(std::string name, std::string help, MetricType type) {
  return {std::move(name), std::move(help), type, {}};
}

ClientMetric value(MetricType type, double number, std::vector<ClientMetric::Label> labels = {}) {
  ClientMetric metric;
  metric.label = std::move(labels);
  if (type == MetricType::Counter) {
    metric.counter.value = number;
  } else {
    metric.gauge.value = number;
  }
  return metric;
}

MetricFamily single(std::string name, std::string help, MetricType type, double number) {
  MetricFamily out = family(std::move(name), std::move(help), type);
  out.metric.push_back(value(type, number));
  return out;
}

// A base histogram, its bounds and sum divided by `per_unit` (1e9: nanoseconds to seconds).
MetricFamily histogram(std::string name, std::string help, const HistogramSnapshot& snapshot, double per_unit) {
  MetricFamily out = family(std::move(name), std::move(help), MetricType::Histogram);
  ClientMetric metric;
  metric.histogram.sample_count = snapshot.count;
  metric.histogram.sample_sum = static_cast<double>(snapshot.sum) / per_unit;
  for (const HistogramSnapshot::Bucket& bucket : snapshot.buckets) {
    const double bound = bucket.upper_bound == UINT64_MAX ? INFINITY : static_cast<double>(bucket.upper_bound) / per_unit;
    metric.histogram.bucket.push_back({bucket.cumulative, bound});
  }
  out.metric.push_back(std::move(metric));
  return out;
}

}  // namespace

Metrics::Metrics(engine::Engine& engine, std::vector<std::string> projections)
    : engine_(engine),
      projections_(std::move(projections)),
      registry_(std::make_shared<prometheus::Registry>()),
      requests_(prometheus::BuildCounter()
                    .Name("annal_http_requests_total")
                    .Help("HTTP requests answered, by route and status")
                    .Register(*registry_)),
      durations_(prometheus::BuildHistogram()
                     .Name("annal_http_request_duration_seconds")
                     .Help("From a request read whole to its answer handed to the connection, by route")
                     .Register(*registry_)) {}

void Metrics::answered(std::string_view route, unsigned status, std::chrono::steady_clock::duration took) {
  const std::string name(route);
  requests_.Add({{"route", name}, {"status", std::to_string(status)}}).Increment();
  durations_.Add({{"route", name}}, kRequestSeconds).Observe(std::chrono::duration<double>(took).count());
}

std::string Metrics::scrape(const Transport& transport) const {
  std::vector<MetricFamily> families = registry_->Collect();
  const engine::Metrics m = engine_.metrics();
  const auto add = [&](MetricFamily f) { families.push_back(std::move(f)); };
  add(single("annal_appends_total", "Batches appended to the journal (an append of several events is one)",
             MetricType::Counter, static_cast<double>(m.journal.appends)));
  add(single("annal_records_total", "Records appended: events, and the engine's own (names)", MetricType::Counter,
             static_cast<double>(m.journal.records)));
  add(single("annal_journal_bytes_total", "Bytes appended to the journal, headers and padding included",
             MetricType::Counter, static_cast<double>(m.journal.bytes)));
  add(single("annal_last_sequence", "The last sequence appended", MetricType::Gauge, static_cast<double>(m.last_sequence)));
  add(single("annal_durable_sequence", "The last sequence durable", MetricType::Gauge,
             static_cast<double>(m.durable_sequence)));
  add(single("annal_durable_lag", "Sequences appended and not yet durable", MetricType::Gauge,
             static_cast<double>(m.last_sequence - std::min(m.last_sequence, m.durable_sequence))));
  add(single("annal_streams", "Streams with events", MetricType::Gauge, static_cast<double>(m.streams)));
  add(single("annal_fdatasyncs_total", "fdatasyncs of the journal completed", MetricType::Counter,
             static_cast<double>(m.journal.syncs)));
  add(histogram("annal_fdatasync_seconds", "Each journal fdatasync, from queued to completed", m.journal.sync_ns, 1e9));
  add(histogram("annal_group_commit_records", "Records each durable advance acknowledged (group commit's groups)",
                m.journal.group_records, 1));
  add(histogram("annal_state_snapshot_seconds", "Each snapshot of the engine's own state, encoded and written",
                m.state_snapshot_ns, 1e9));

  MetricFamily applied = family("annal_projection_applied_sequence", "The last sequence a projection applied", MetricType::Gauge);
  MetricFamily lag = family("annal_projection_lag", "Durable sequences a projection has not applied yet", MetricType::Gauge);
  MetricFamily live = family("annal_projection_live", "1 while a projection reads the ring, 0 while it reads the journal",
                             MetricType::Gauge);
  MetricFamily failed = family("annal_projection_failed", "1 once a projection has stopped on an error", MetricType::Gauge);
  MetricFamily retrying = family("annal_projection_retrying",
                                 "1 while a projection retries something outside (a database it cannot reach)", MetricType::Gauge);
  MetricFamily snapshots = family("annal_projection_snapshots_total", "Snapshots a projection wrote", MetricType::Counter);
  MetricFamily snapshot_seconds = family("annal_projection_snapshot_write_seconds_total",
                                         "Time a projection's snapshot writes took, all told", MetricType::Counter);
  MetricFamily last_snapshot = family("annal_projection_last_snapshot_write_seconds",
                                      "How long a projection's last snapshot write took", MetricType::Gauge);
  for (const std::string& name : projections_) {
    const auto status = engine_.projection_status(name);
    if (!status.ok()) continue;
    const engine::ProjectionStatus& s = status.value();
    const std::vector<ClientMetric::Label> labels{{"projection", name}};
    applied.metric.push_back(value(MetricType::Gauge, static_cast<double>(s.applied), labels));
    lag.metric.push_back(
        value(MetricType::Gauge, static_cast<double>(m.durable_sequence - std::min(m.durable_sequence, s.applied)), labels));
    live.metric.push_back(value(MetricType::Gauge, s.live ? 1 : 0, labels));
    failed.metric.push_back(value(MetricType::Gauge, s.error.ok() ? 0 : 1, labels));
    retrying.metric.push_back(value(MetricType::Gauge, s.retrying.ok() ? 0 : 1, labels));
    snapshots.metric.push_back(value(MetricType::Counter, static_cast<double>(s.snapshots_written), labels));
    snapshot_seconds.metric.push_back(value(MetricType::Counter, static_cast<double>(s.snapshot_write_ns_total) / 1e9, labels));
    last_snapshot.metric.push_back(value(MetricType::Gauge, static_cast<double>(s.snapshot_write_ns_last) / 1e9, labels));
  }
  for (MetricFamily* f : {&applied, &lag, &live, &failed, &retrying, &snapshots, &snapshot_seconds, &last_snapshot}) {
    add(std::move(*f));
  }
  add(single("annal_http_connections", "HTTP connections open", MetricType::Gauge, static_cast<double>(transport.connections)));
  add(single("annal_http_feeds", "GET /subscribe event feeds open", MetricType::Gauge, static_cast<double>(transport.feeds)));
  add(single("annal_http_queries", "projection queries running or waiting for a query thread", MetricType::Gauge,
             static_cast<double>(transport.queries)));
  add(single("annal_http_accept_errors_total", "Connections the server could not accept (out of descriptors or memory)",
             MetricType::Counter, static_cast<double>(transport.accept_errors)));
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace annal::server
