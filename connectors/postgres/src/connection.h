// One libpq connection, used without blocking (so a stop is noticed at any point), and
// PostgreSQL's errors as Status: which ones a retry can fix.
#pragma once

#include <libpq-fe.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "annal/base/status.h"

namespace annal::postgres {

// A stop that a thread waiting on PostgreSQL notices at once: poll() watches it beside the
// connection's socket. raise() never blocks, so any thread may call it (the engine's closing one).
class Wakeup {
 public:
  Wakeup();  // throws std::system_error if the kernel has no eventfd to give
  ~Wakeup();
  Wakeup(const Wakeup&) = delete;
  Wakeup& operator=(const Wakeup&) = delete;
  void raise() const;
  void clear() const;  // before the next run: a raised Wakeup stays raised until then
  [[nodiscard]] int fd() const { return fd_; }

 private:
  int fd_;
};

class Connection {
 public:
  // Connects; the error names the server (host, port, database), never the connection string,
  // which may hold a password. Timeouts the string does not set have defaults (connecting 10 s,
  // TCP keepalives), so that a host gone silent is noticed.
  //
  // Every wait, connecting or for an answer, also watches `wakeup` (if given): once it is raised,
  // the call gives up at once with an error that retry allows, and the connection is not used
  // again. The statement it abandons may still run to its end on the server, or not: the caller
  // learns which only from a new connection. The server notices a client gone within a second
  // even while a statement waits on a lock (client_connection_check_interval, PostgreSQL 14+).
  // Not watched: the host name's lookup (getaddrinfo blocks; hostaddr= avoids it).
  static Result<std::unique_ptr<Connection>> open(const std::string& conninfo, const Wakeup* wakeup = nullptr);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Runs `sql` with text parameters (nullopt: NULL). On an error, `retry` says whether trying
  // again later can succeed: the connection broke, the server is shutting down or starting, out of
  // resources, or the transaction lost a serialization race. Otherwise the statement itself is at
  // fault (a constraint, bad SQL, a wrong type).
  Status run(const std::string& sql, const std::vector<std::optional<std::string>>& parameters, bool& retry);
  Status run(const std::string& sql, bool& retry) { return run(sql, {}, retry); }
  // A statement of a pipelined batch.
  struct Query {
    const std::string* sql;
    const std::vector<std::optional<std::string>>* parameters;
  };
  // Runs `queries` in order, pipelined (libpq's pipeline mode): sent without waiting for each
  // answer, answers read a window at a time, so a batch costs a few round trips, not one per
  // statement. Stops at the first that fails: its error, `failed` its index, `retry` as run()'s
  // (the rest are not run). The caller's statements include BEGIN and COMMIT: a failed batch
  // leaves a failed transaction, to be rolled back.
  Status run_pipelined(std::span<const Query> queries, std::size_t& failed, bool& retry);
  // Every row of a query, each a vector of its columns as text (NULL as "").
  Result<std::vector<std::vector<std::string>>> rows(const std::string& sql, bool& retry);
  // The first column of the first row of a query; nullopt for no row or NULL.
  Result<std::optional<std::string>> value(const std::string& sql, const std::vector<std::optional<std::string>>& parameters,
                                           bool& retry);
  // Whether the connection is gone, or broke off a pipeline half-way (then it is opened again).
  [[nodiscard]] bool broken() const;
  // "PostgreSQL at HOST:PORT, database DB", for messages.
  [[nodiscard]] std::string where() const;

 private:
  using Owned = std::unique_ptr<PGresult, void (*)(PGresult*)>;
  Connection(PGconn* connection, const Wakeup* wakeup) : connection_(connection), wakeup_(wakeup) {}
  // One attempt, at the one host given (nullptr: as the string says). ErrorCode::failed if the
  // wakeup came.
  static Result<std::unique_ptr<Connection>> open_one(const std::string& conninfo, const char* host,
                                                      const char* hostaddr, const char* port, const Wakeup* wakeup);
  // Waits until the socket is ready for `events` (POLLIN, POLLOUT) or, with a deadline, until
  // then. False if the wakeup came first (woken_) or the deadline passed.
  bool wait(short events, const std::chrono::steady_clock::time_point* deadline = nullptr);
  // Sends what libpq holds; false if the connection broke or the wakeup came.
  bool flush();
  // The next result, or nullptr at the end of a query's results. lost_ once the connection broke or
  // the wakeup came (nullptr then too).
  PGresult* next_result();
  // Runs one statement and returns its (last) result; nullptr if the connection was lost.
  Owned exec(const std::string& sql, const std::vector<std::optional<std::string>>& parameters);
  // The error `result` (or the connection, for nullptr) reports, and whether a retry can fix it.
  Status error_of(const PGresult* result, bool& retry) const;
  PGconn* connection_;
  const Wakeup* wakeup_;
  bool woken_ = false;     // a wait gave up for the wakeup
  bool lost_ = false;      // the connection broke, or was given up: answers may be missing
  bool unusable_ = false;  // a statement failed or was given up: open a new connection
  bool reusing_plans_ = false;  // the batch running executes statements an earlier one prepared
  std::unordered_map<std::string, std::string> prepared_;  // statement -> its prepared name here
};

}  // namespace annal::postgres
