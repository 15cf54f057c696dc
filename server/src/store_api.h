// The event store's routes (server.h lists them), apart from the transport: a request in, an
// answer out, now or (a durable append) later.
#pragma once

#include <simdjson.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "annal/engine/engine.h"
#include "annal/server/access_keys.h"
#include "annal/server/server.h"
#include "event_feed.h"
#include "metrics.h"
#include "query_pool.h"

namespace annal::server {

class StoreApi {
 public:
  StoreApi(engine::Engine& engine, const ServerOptions& options, std::function<Metrics::Transport()> transport)
      : engine_(engine),
        options_(options),
        metrics_(engine, options.projections),
        transport_(std::move(transport)),
        queries_(options.query_threads, options.queries_waiting_max, options.query_timeout) {}

  // Answers `request`, at once or later, always exactly once through `reply`. `parser` is the
  // calling thread's (simdjson reuses its buffers).
  void handle(const Request& request, simdjson::dom::parser& parser, Reply reply);

  // From now on, requests need a key from `keys` (nullptr: anyone may do anything). Any thread.
  void set_keys(std::shared_ptr<const AccessKeys> keys);
  // Answers the queries still waiting 503 and waits for the running ones: what the server does
  // before it waits for the answers it owes.
  void stop() { queries_.stop(); }
  // Queries running or waiting for a thread.
  [[nodiscard]] std::size_t queries() const { return queries_.pending(); }

 private:
  void append(std::string_view stream, std::string_view query, std::string_view body, simdjson::dom::parser& parser,
              Reply reply);
  // Appends `events` and answers with the receipt: once durable, or once sequenced.
  void commit(std::string_view stream, const engine::ExpectedVersion& expected, bool durable,
              std::span<const engine::EventData> events, Reply reply);
  // The seed documents' POST /events and GET /events.
  void post_event(const Request& request, std::string_view query, simdjson::dom::parser& parser, Reply reply);
  [[nodiscard]] Answer get_events(std::string_view query, simdjson::dom::parser& parser);
  [[nodiscard]] Answer read_stream(std::string_view stream, std::string_view query);
  // The global log from ?from= (default 1), up to ?limit= (at most read_limit_max).
  [[nodiscard]] Result<std::vector<engine::Event>> read_log(std::string_view query);
  [[nodiscard]] Answer read_all(std::string_view query);
  [[nodiscard]] Answer projections();
  // Answers on a query thread: it may wait for ?min_sequence=.
  void projection_state(const std::string& name, std::string_view target, Reply reply);
  [[nodiscard]] std::string projection_json(const std::string& name);
  [[nodiscard]] Answer subscribe(std::string_view query, const Request& request);
  // `reply`, counting the answer in the metrics under `route` (a fixed name).
  [[nodiscard]] Reply counted(std::string_view route, Reply reply);
  // The 401 or 403 answer if the request's key does not grant `need`.
  [[nodiscard]] std::optional<Answer> refused(const Request& request, const Need& need) const;

  engine::Engine& engine_;
  const ServerOptions options_;
  Metrics metrics_;
  const std::function<Metrics::Transport()> transport_;
  mutable std::mutex keys_mutex_;
  std::shared_ptr<const AccessKeys> keys_;  // under keys_mutex_; copied out to check a request
  QueryPool queries_;  // last: its threads use the rest
};

}  // namespace annal::server
