// The event store's routes (server.h lists them), apart from the transport: a request in, an
// answer out, now or (a durable append) later.
#pragma once

#include <simdjson.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "annal/engine/engine.h"
#include "annal/server/access_keys.h"
#include "annal/server/server.h"
#include "event_feed.h"

namespace annal::server {

struct Answer {
  Answer() = default;
  Answer(unsigned answer_status, std::string answer_body, std::optional<std::uint64_t> answer_sequence = std::nullopt)
      : status(answer_status), body(std::move(answer_body)), sequence(answer_sequence) {}

  unsigned status = 200;
  std::string body;                       // JSON
  std::optional<std::uint64_t> sequence;  // the Annal-Sequence header: the append's last event
  std::shared_ptr<FeedSource> feed;       // GET /subscribe: the transport streams this instead
  std::vector<std::pair<std::string, std::string>> headers;  // more headers (WWW-Authenticate)
};

// Called once with the answer; from the engine's callback thread for a durable append.
using Reply = std::function<void(Answer)>;

struct Request {
  std::string_view method;  // "GET", "POST", ...
  std::string_view target;  // path and query, as sent
  std::string_view body;
  std::string_view last_event_id;  // the header a reconnecting EventSource sends
  std::string_view authorization;  // "Bearer ID.SECRET" when keys are in force
};

class StoreApi {
 public:
  StoreApi(engine::Engine& engine, const ServerOptions& options) : engine_(engine), options_(options) {}

  // Answers `request`, at once or later, always exactly once through `reply`. `parser` is the
  // calling thread's (simdjson reuses its buffers).
  void handle(const Request& request, simdjson::dom::parser& parser, Reply reply);

  // From now on, requests need a key from `keys` (nullptr: anyone may do anything). Any thread.
  void set_keys(std::shared_ptr<const AccessKeys> keys);

  // {"error": kind, "detail": detail} with `status`.
  [[nodiscard]] static Answer error(unsigned status, std::string_view kind, std::string_view detail);

 private:
  void append(std::string_view stream, std::string_view query, std::string_view body, simdjson::dom::parser& parser,
              Reply reply);
  [[nodiscard]] Answer read_stream(std::string_view stream, std::string_view query);
  [[nodiscard]] Answer read_all(std::string_view query);
  [[nodiscard]] Answer subscribe(std::string_view query, const Request& request);
  // The 401 or 403 answer if the request's key does not grant `need`.
  [[nodiscard]] std::optional<Answer> refused(const Request& request, const Need& need) const;

  engine::Engine& engine_;
  const ServerOptions options_;
  mutable std::mutex keys_mutex_;
  std::shared_ptr<const AccessKeys> keys_;  // under keys_mutex_; copied out to check a request
};

}  // namespace annal::server
