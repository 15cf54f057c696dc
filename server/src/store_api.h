// The event store's routes (server.h lists them), apart from the transport: a request in, an
// answer out, now or (a durable append) later.
#pragma once

#include <simdjson.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "annal/engine/engine.h"
#include "annal/server/server.h"

namespace annal::server {

struct Answer {
  unsigned status = 200;
  std::string body;                       // JSON
  std::optional<std::uint64_t> sequence;  // the Annal-Sequence header: the append's last event
};

// Called once with the answer; from the engine's callback thread for a durable append.
using Reply = std::function<void(Answer)>;

struct Request {
  std::string_view method;  // "GET", "POST", ...
  std::string_view target;  // path and query, as sent
  std::string_view body;
};

class StoreApi {
 public:
  StoreApi(engine::Engine& engine, const ServerOptions& options) : engine_(engine), options_(options) {}

  // Answers `request`, at once or later, always exactly once through `reply`. `parser` is the
  // calling thread's (simdjson reuses its buffers).
  void handle(const Request& request, simdjson::dom::parser& parser, Reply reply);

  // {"error": kind, "detail": detail} with `status`.
  [[nodiscard]] static Answer error(unsigned status, std::string_view kind, std::string_view detail);

 private:
  void append(std::string_view stream, std::string_view query, std::string_view body, simdjson::dom::parser& parser,
              Reply reply);
  [[nodiscard]] Answer read_stream(std::string_view stream, std::string_view query);
  [[nodiscard]] Answer read_all(std::string_view query);

  engine::Engine& engine_;
  const ServerOptions options_;
};

}  // namespace annal::server
