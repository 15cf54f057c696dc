// annal over HTTP/1.1: an engine's event store API, served on a few threads of its own.
//
//   auto server = annal::server::Server::start(*engine, {.port = 2113});
//   std::printf("listening on port %u\n", server.value()->port());
//   ...                                   // until the process is told to stop
//   server.value()->stop();               // then close the engine
//
// Routes (JSON in and out; an error is {"error": "<kind>", "detail": "<what, and what to do>"}):
//   GET  /health                 200 while the process runs
//   GET  /ready                  200 once the engine is open and its journal takes appends
//   POST /streams/{stream}       one event {"type", "data", "id"?} or an array of them, appended as
//                                one atomic batch; ?expected_version=N|-1 (no stream yet)|any.
//                                201 once durable (202 once sequenced with ?durable=false), with
//                                {"stream", "first_sequence", "last_sequence", "first_version",
//                                "version", "duplicate"} and the header Annal-Sequence. 409 on a
//                                version conflict (with the stream's "version"); an exact retry
//                                (same ids) answers with the first receipt, "duplicate": true.
//   GET  /streams/{stream}       ?from=VERSION&direction=forward|backward&limit=N; 404: no stream
//   GET  /all                    ?from=SEQUENCE&limit=N: the global log
//   POST /events                 the seed documents' shape: one event {"eventType", ...}, its stream
//                                from "stream", or "orderId" (order-ID), or "refundId" (refund-ID);
//                                the object as sent is the event's data. Answers as POST /streams.
//   GET  /events                 ?from=SEQUENCE&limit=N: the log as an array of such objects (an
//                                event stored otherwise: {"eventType", "stream", "sequence", "event"})
//   GET  /projections            admin: each projection's status {"name", "applied", "lag",
//                                "restored_from", "replayed", "snapshots_written", "detached",
//                                "live", "error", "retrying"}; /projections/{name} one of them (404: none)
//   GET  /projections/{name}/state  read:*: the state of a projection that shows it as JSON
//                                (builtin_projections.h), once it has applied ?min_sequence=
//   GET  /metrics                admin: Prometheus text format (appends, bytes, durable sequence and
//                                lag, fdatasync latency, group sizes, snapshots, projections' lag,
//                                HTTP requests by route and status with their latency)
//   GET  /subscribe              Server-Sent Events, one per durable event from ?from=SEQUENCE (by
//                                default the next one), id: its sequence; ?stream=NAME for one
//                                stream; Last-Event-ID resumes after that event. 410: retention
//                                removed the position.
//
// A durable append never holds a server thread while it waits for the disk: the answer is written
// when the engine's durability callback comes, so every connection waiting shares one fdatasync.
// Limits, each a clear error: request body (413), header (431), a read that stalls (408, then the
// connection is closed), a client that takes no bytes (the connection is cut), connections and
// event feeds (503 past the limit).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "annal/base/status.h"
#include "annal/engine/engine.h"
#include "annal/server/access_keys.h"

namespace annal::server {

// A request as the routes see it, and their answer.
struct FeedSource;
struct Answer {
  Answer() = default;
  Answer(unsigned answer_status, std::string answer_body, std::optional<std::uint64_t> answer_sequence = std::nullopt)
      : status(answer_status), body(std::move(answer_body)), sequence(answer_sequence) {}

  unsigned status = 200;
  std::string body;                       // JSON
  std::optional<std::uint64_t> sequence;  // the Annal-Sequence header: the append's last event
  std::shared_ptr<FeedSource> feed;       // the server's own: GET /subscribe streams this instead
  std::vector<std::pair<std::string, std::string>> headers;  // more headers (WWW-Authenticate)
  std::string content_type = "application/json";
};

// Called once with the answer, from any thread (a durable append's: the engine's callback thread).
using Reply = std::function<void(Answer)>;

struct Request {
  std::string_view method;  // "GET", "POST", ...
  std::string_view target;  // path and query, as sent
  std::string_view body;
  std::string_view last_event_id;  // the header a reconnecting EventSource sends
  std::string_view authorization;  // "Bearer ID.SECRET" when keys are in force
};

// What the request's key does not allow `need`, as the 401 or 403 answer; nullopt if it does (or
// the server has no keys).
using Refused = std::function<std::optional<Answer>(const Need& need)>;

// Replies with work(deadline)'s answer, worked out on one of the server's query threads: for what
// may wait (Engine::query with a min_sequence), which must not hold a connection's thread. The
// deadline is ServerOptions::query_timeout from the request (waiting for a thread counts): work
// waits no longer (504 if it never started). 503 when queries_waiting_max are already waiting.
// `work` must copy what it needs of the request.
using Later = std::function<void(std::function<Answer(std::chrono::steady_clock::time_point deadline)> work, Reply reply)>;

// An application's own routes (the orders example's /orders), asked before the store's: one that
// is its own answers through `reply` (exactly once, now or later) and returns true; any other
// returns false and leaves `reply` to the store's routes. Runs on a connection's thread: it must
// not wait (an append's durability: Engine::on_durable; a query that may wait: `later`).
// `refused` and `later` live only for the call: copy one to use it afterwards.
using Routes = std::function<bool(const Request& request, const Refused& refused, const Later& later, Reply& reply)>;

// {"error": kind, "detail": detail} with `status`.
[[nodiscard]] Answer error_answer(unsigned status, std::string_view kind, std::string_view detail);
// The value of query parameter `name` in a request target ("/orders?orderId=1"), percent-decoded;
// nullopt if it is absent or its escapes are broken.
[[nodiscard]] std::optional<std::string> query_parameter(std::string_view target, std::string_view name);
// The ?min_sequence= of a read-your-writes GET (a write's Annal-Sequence): 0 if absent.
// invalid_argument if it is not a number, or is past the last sequence `engine` has appended
// (waiting for it could only time out).
[[nodiscard]] Result<std::uint64_t> min_sequence_of(const engine::Engine& engine, std::string_view target);

struct ServerOptions {
  std::string address = "127.0.0.1";
  std::uint16_t port = 2113;  // 0: any free port (port() says which)
  unsigned threads = 2;       // they only parse, route and write: the engine does the rest
  std::size_t body_bytes_max = 1u << 20;
  std::size_t header_bytes_max = 16u << 10;
  std::chrono::milliseconds read_timeout{30'000};  // for a whole request, from its first byte
  std::size_t connections_max = 1024;
  std::size_t events_per_request_max = 1024;       // an array longer than this is refused (413)
  std::size_t event_bytes_max = engine::Options{}.event_bytes_max;  // an event's data past this: 413
  std::size_t requests_per_connection_max = 10'000;  // the last one's answer closes the connection
  std::size_t read_limit_max = 10'000;             // events one GET returns at most
  std::chrono::milliseconds write_timeout{30'000};  // a client that takes no bytes this long is cut off
  std::size_t feeds_max = 64;                      // GET /subscribe feeds at once (a thread each); 503 past it
  std::chrono::milliseconds feed_heartbeat{15'000};  // a quiet feed sends a comment this often
  // API keys (access_keys.h): every route but /health and /ready then needs a key that grants it.
  // Without a keys file the server is open to anyone who can connect, so it listens on a loopback
  // address only (start() refuses any other).
  std::string keys_file;
  // TLS (1.2 or later): a PEM certificate chain and its private key; both or neither.
  std::string tls_certificate_file;
  std::string tls_key_file;
  Routes routes;  // an application's, asked first (none by default)
  // The engine's projections that GET /projections reports (the application added them).
  std::vector<std::string> projections;
  // How long a query that may wait (GET /projections/{name}/state?min_sequence=, an application's
  // Later) has from its arrival, a wait for a query thread included (504 after).
  std::chrono::milliseconds query_timeout{10'000};
  // Threads for the queries that may wait (Later), and how many queries may wait for one (at
  // least 1; 503 past it).
  unsigned query_threads = 2;
  std::size_t queries_waiting_max = 1024;
};

class Server {
 public:
  // Binds and starts serving `engine`, which must outlive the server (stop() before closing it).
  static Result<std::unique_ptr<Server>> start(engine::Engine& engine, const ServerOptions& options);

  virtual ~Server() = default;
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  [[nodiscard]] virtual std::uint16_t port() const = 0;
  // Reads the keys file again (as on SIGHUP): the new keys hold from the next request. On an error
  // the old keys stay in force. invalid_argument if the server was started without one.
  virtual Status reload_keys() = 0;
  // Stops accepting, ends every connection, waits for answers still owed (durable appends) and
  // joins the threads. Idempotent; the destructor calls it.
  virtual void stop() = 0;

 protected:
  Server() = default;
};

}  // namespace annal::server
