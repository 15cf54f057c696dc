// One libpq connection, and PostgreSQL's errors as Status: which ones a retry can fix.
#pragma once

#include <libpq-fe.h>

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

// Asks the server to cancel what a connection is running (it then fails with SQLSTATE 57014).
// Any thread; outlives its connection harmlessly. Blocking: it connects to the server to ask.
class Canceller {
 public:
  explicit Canceller(PGcancel* handle) : handle_(handle) {}
  ~Canceller() {
    if (handle_ != nullptr) PQfreeCancel(handle_);
  }
  Canceller(const Canceller&) = delete;
  Canceller& operator=(const Canceller&) = delete;
  void cancel() const {
    char error[256];
    if (handle_ != nullptr) (void)PQcancel(handle_, error, sizeof(error));
  }

 private:
  PGcancel* handle_;
};

class Connection {
 public:
  // Connects; the error names the server (host, port, database), never the connection string,
  // which may hold a password. Timeouts the string does not set have defaults (connecting 10 s,
  // TCP keepalives), so that a host gone silent is noticed.
  static Result<std::unique_ptr<Connection>> open(const std::string& conninfo);
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
  [[nodiscard]] std::shared_ptr<const Canceller> canceller() const { return canceller_; }

 private:
  Connection(PGconn* connection, std::shared_ptr<const Canceller> canceller)
      : connection_(connection), canceller_(std::move(canceller)) {}
  // The error `result` (or the connection, for nullptr) reports, and whether a retry can fix it.
  Status error_of(const PGresult* result, bool& retry) const;
  PGconn* connection_;
  std::shared_ptr<const Canceller> canceller_;
  bool unusable_ = false;  // a pipelined batch failed: open a new connection
  std::unordered_map<std::string, std::string> prepared_;  // statement -> its prepared name here
};

}  // namespace annal::postgres
