#include "connection.h"

#include <utility>

namespace annal::postgres {
namespace {

std::string where_of(PGconn* connection) {
  const char* host = PQhost(connection);
  const char* port = PQport(connection);
  const char* database = PQdb(connection);
  return std::string("PostgreSQL at ") + (host != nullptr ? host : "?") + ":" + (port != nullptr ? port : "?") +
         ", database " + (database != nullptr ? database : "?");
}

// SQLSTATE classes a later try can get past: 08 connection exception, 40 transaction rollback
// (serialization failure, deadlock), 53 insufficient resources, 57 operator intervention (shutdown,
// cannot connect now), 58 system error (an I/O error in the server).
bool retryable(std::string_view state) {
  for (const std::string_view kind : {"08", "40", "53", "57", "58"}) {
    if (state.starts_with(kind)) return true;
  }
  return false;
}

// libpq's message, without its trailing newline.
std::string message_of(const char* text) {
  std::string message = text != nullptr ? text : "";
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  return message;
}

}  // namespace

Result<std::unique_ptr<Connection>> Connection::open(const std::string& conninfo) {
  PGconn* connection = PQconnectdb(conninfo.c_str());
  if (connection == nullptr) return Status(ErrorCode::io_error, "PostgreSQL: libpq could not allocate a connection");
  if (PQstatus(connection) != CONNECTION_OK) {
    Status failed(ErrorCode::io_error, where_of(connection) + ": " + message_of(PQerrorMessage(connection)));
    PQfinish(connection);
    return failed;
  }
  // Server notices ("terminating connection due to immediate shutdown") are not the embedding
  // program's to see on its stderr: what matters reaches the caller as an error.
  PQsetNoticeProcessor(connection, [](void*, const char*) {}, nullptr);
  return std::unique_ptr<Connection>(new Connection(connection));
}

Connection::~Connection() { PQfinish(connection_); }

bool Connection::broken() const { return PQstatus(connection_) != CONNECTION_OK; }

std::string Connection::where() const { return where_of(connection_); }

Result<std::optional<std::string>> Connection::value(const std::string& sql,
                                                     const std::vector<std::optional<std::string>>& parameters,
                                                     bool& retry) {
  std::vector<const char*> values;
  values.reserve(parameters.size());
  for (const auto& parameter : parameters) values.push_back(parameter ? parameter->c_str() : nullptr);
  const std::unique_ptr<PGresult, void (*)(PGresult*)> result(
      PQexecParams(connection_, sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(), nullptr, nullptr, 0),
      PQclear);
  const ExecStatusType status = result ? PQresultStatus(result.get()) : PGRES_FATAL_ERROR;
  if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
    retry = false;
    if (status == PGRES_COMMAND_OK || PQntuples(result.get()) == 0 || PQgetisnull(result.get(), 0, 0)) {
      return std::optional<std::string>{};
    }
    return std::optional<std::string>(PQgetvalue(result.get(), 0, 0));
  }
  const char* state = result ? PQresultErrorField(result.get(), PG_DIAG_SQLSTATE) : nullptr;
  retry = broken() || state == nullptr || retryable(state);
  const std::string message = message_of(result ? PQresultErrorMessage(result.get()) : PQerrorMessage(connection_));
  return Status(retry ? ErrorCode::io_error : ErrorCode::invalid_argument,
                where() + ": " + (message.empty() ? message_of(PQerrorMessage(connection_)) : message) +
                    (state != nullptr ? std::string(" (SQLSTATE ") + state + ")" : std::string()));
}

Status Connection::run(const std::string& sql, const std::vector<std::optional<std::string>>& parameters, bool& retry) {
  auto ran = value(sql, parameters, retry);
  return ran.ok() ? Status() : ran.status();
}

}  // namespace annal::postgres
