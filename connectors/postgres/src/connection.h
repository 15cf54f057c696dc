// One libpq connection, and PostgreSQL's errors as Status: which ones a retry can fix.
#pragma once

#include <libpq-fe.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "annal/base/status.h"

namespace annal::postgres {

class Connection {
 public:
  // Connects; the error names the server (host, port, database), never the connection string,
  // which may hold a password.
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
  // The first column of the first row of a query; nullopt for no row or NULL.
  Result<std::optional<std::string>> value(const std::string& sql, const std::vector<std::optional<std::string>>& parameters,
                                           bool& retry);
  // Whether the connection is gone (then it is opened again).
  [[nodiscard]] bool broken() const;
  // "PostgreSQL at HOST:PORT, database DB", for messages.
  [[nodiscard]] std::string where() const;

 private:
  explicit Connection(PGconn* connection) : connection_(connection) {}
  PGconn* connection_;
};

}  // namespace annal::postgres
