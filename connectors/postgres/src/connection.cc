#include "connection.h"

#include <openssl/ssl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <charconv>
#include <system_error>
#include <utility>
#include <vector>

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
  if (state == "08P01") return false;  // protocol violation: a statement's parameters do not fit it
  // Lock timeout, and a read-only transaction (connected to a standby after a failover).
  if (state == "55P03" || state == "25006") return true;
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

// connect_timeout as the connection string or our default sets it, in libpq's terms (0 or less:
// none; 1 counts as 2): PQconnectPoll leaves timing the connection to its caller.
std::chrono::seconds connect_timeout_of(PGconn* connection) {
  long seconds = 0;
  PQconninfoOption* options = PQconninfo(connection);
  for (PQconninfoOption* option = options; option != nullptr && option->keyword != nullptr; ++option) {
    if (std::string_view(option->keyword) != "connect_timeout" || option->val == nullptr) continue;
    const std::string_view text = option->val;
    (void)std::from_chars(text.data(), text.data() + text.size(), seconds);  // libpq refused it already if not a number
  }
  PQconninfoFree(options);
  return std::chrono::seconds(seconds == 1 ? 2 : seconds);
}

// "a,b,c" as libpq splits its host, hostaddr and port lists.
std::vector<std::string> split_list(std::string_view text) {
  std::vector<std::string> items;
  for (std::size_t at = 0;;) {
    const std::size_t comma = text.find(',', at);
    items.emplace_back(text.substr(at, comma - at));
    if (comma == std::string_view::npos) return items;
    at = comma + 1;
  }
}

}  // namespace

Wakeup::Wakeup() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd for the PostgreSQL projection's stop");
}

Wakeup::~Wakeup() { ::close(fd_); }

void Wakeup::raise() const {
  const std::uint64_t one = 1;
  // Cannot block (EFD_NONBLOCK) and cannot fail short of 2^64 - 1 raises.
  [[maybe_unused]] const ssize_t written = ::write(fd_, &one, sizeof(one));
}

void Wakeup::clear() const {
  std::uint64_t raised = 0;
  [[maybe_unused]] const ssize_t read = ::read(fd_, &raised, sizeof(raised));  // EAGAIN when not raised
}

Result<std::unique_ptr<Connection>> Connection::open(const std::string& conninfo, const Wakeup* wakeup) {
  // libpq quotes a malformed string back in its error, password and all. (A bare word is a
  // database name, which libpq takes as it is.)
  const bool looks_like_conninfo = conninfo.find('=') != std::string::npos || conninfo.starts_with("postgres://") ||
                                   conninfo.starts_with("postgresql://");
  char* parse_error = nullptr;
  PQconninfoOption* parsed = looks_like_conninfo ? PQconninfoParse(conninfo.c_str(), &parse_error) : nullptr;
  if (looks_like_conninfo && parsed == nullptr) {
    PQfreemem(parse_error);
    return Status(ErrorCode::invalid_argument,
                  "PostgreSQL: the connection string is malformed (not shown: it may hold a password); libpq's forms are "
                  "host=... dbname=... or postgresql://...");
  }
  // Several hosts (failover): one attempt each, in order, each with its own connect_timeout, as
  // libpq does. (Its own move to the next host on a timeout happens only in its blocking connect.)
  std::vector<std::string> hosts, addresses, ports;
  for (PQconninfoOption* option = parsed; option != nullptr && option->keyword != nullptr; ++option) {
    const std::string_view keyword = option->keyword;
    if (option->val == nullptr) continue;
    if (keyword == "host") hosts = split_list(option->val);
    if (keyword == "hostaddr") addresses = split_list(option->val);
    if (keyword == "port") ports = split_list(option->val);
  }
  if (parsed != nullptr) PQconninfoFree(parsed);
  const std::size_t attempts = std::max({std::size_t{1}, hosts.size(), addresses.size()});
  Status failure;
  for (std::size_t i = 0; i < attempts; ++i) {
    // This attempt's entry of a list; nullptr leaves the string's (and a mismatch to libpq's error).
    const auto nth = [&](const std::vector<std::string>& list) -> const char* {
      if (attempts == 1 || list.empty()) return nullptr;
      if (list.size() == 1) return list[0].c_str();
      return list.size() == attempts ? list[i].c_str() : nullptr;
    };
    auto opened = open_one(conninfo, nth(hosts), nth(addresses), nth(ports), wakeup);
    if (opened.ok()) return opened;
    failure = opened.status();
    if (failure.code() == ErrorCode::failed) break;  // the wakeup came: stopping
  }
  return failure;
}

Result<std::unique_ptr<Connection>> Connection::open_one(const std::string& conninfo, const char* host,
                                                         const char* hostaddr, const char* port, const Wakeup* wakeup) {
  // Defaults first: the string's own settings, expanded from "dbname", come after and win; then
  // the one host of a list this attempt is for. tcp_user_timeout: data sent and not acknowledged
  // (a host gone silent mid-statement), which keepalives do not cover.
  std::vector<const char*> keywords = {"connect_timeout",  "keepalives", "keepalives_idle", "keepalives_interval",
                                       "keepalives_count", "tcp_user_timeout", "dbname"};
  std::vector<const char*> values = {"10", "1", "10", "5", "3", "30000", conninfo.c_str()};
  for (const auto& [keyword, value] : {std::pair{"host", host}, std::pair{"hostaddr", hostaddr}, std::pair{"port", port}}) {
    if (value == nullptr) continue;
    keywords.push_back(keyword);
    values.push_back(value);
  }
  keywords.push_back(nullptr);
  values.push_back(nullptr);
  PGconn* connection = PQconnectStartParams(keywords.data(), values.data(), 1);
  if (connection == nullptr) return Status(ErrorCode::io_error, "PostgreSQL: libpq could not allocate a connection");
  std::unique_ptr<Connection> opened(new Connection(connection, wakeup));  // PQfinish from here on
  const auto failed = [&](const std::string& why) {
    return Status(opened->woken_ ? ErrorCode::failed : ErrorCode::io_error, opened->where() + ": " + why);
  };
  const std::chrono::seconds timeout = connect_timeout_of(connection);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  // libpq's loop: wait as the last poll asked (writing, before the first), poll again.
  for (PostgresPollingStatusType polled = PGRES_POLLING_WRITING; polled != PGRES_POLLING_OK;
       polled = PQconnectPoll(connection)) {
    if (polled == PGRES_POLLING_FAILED || PQstatus(connection) == CONNECTION_BAD) {
      return failed(message_of(PQerrorMessage(connection)));
    }
    if (!opened->wait(polled == PGRES_POLLING_READING ? POLLIN : POLLOUT, timeout.count() > 0 ? &deadline : nullptr)) {
      return failed(opened->woken_ ? "gave up connecting: the projection is stopping"
                                   : "no answer within connect_timeout (" + std::to_string(timeout.count()) + " s)");
    }
  }
  if (PQsetnonblocking(connection, 1) != 0) return failed(message_of(PQerrorMessage(connection)));
  // Server notices ("terminating connection due to immediate shutdown") are not the embedding
  // program's to see on its stderr: what matters reaches the caller as an error.
  PQsetNoticeProcessor(connection, [](void*, const char*) {}, nullptr);
  if (PQserverVersion(connection) >= 140000) {
    // A statement given up (Wakeup) may be waiting on a lock: with this, the server ends the
    // session (and frees the projection's advisory lock) within a second of the client leaving,
    // not once the lock comes free. Best effort: a server that cannot watch its clients' sockets
    // (no POLLRDHUP) refuses it, and only holds the lock longer.
    bool retry = false;
    (void)opened->run("SET client_connection_check_interval = 1000", retry);
    if (opened->broken()) return failed(message_of(PQerrorMessage(connection)));
  }
  return opened;
}

Connection::~Connection() { PQfinish(connection_); }

bool Connection::broken() const { return unusable_ || lost_ || PQstatus(connection_) != CONNECTION_OK; }

bool Connection::wait(short events, const std::chrono::steady_clock::time_point* deadline) {
  const int socket = PQsocket(connection_);
  if (socket < 0) return false;
  // Over TLS, OpenSSL may hold a record's rest already read from the socket, which poll() cannot
  // see (a server sending records larger than PostgreSQL's own 8 KB ones).
  if ((events & POLLIN) != 0) {
    if (const auto* tls = static_cast<const SSL*>(PQsslStruct(connection_, "OpenSSL")); tls != nullptr && SSL_pending(tls) > 0) {
      return true;
    }
  }
  for (;;) {
    pollfd ready[2] = {{socket, events, 0}, {wakeup_ != nullptr ? wakeup_->fd() : -1, POLLIN, 0}};
    int timeout = -1;
    if (deadline != nullptr) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      timeout = static_cast<int>(std::min<std::chrono::milliseconds::rep>(left.count(), INT_MAX));
    }
    const int count = ::poll(ready, 2, timeout);
    if (count < 0 && errno == EINTR) continue;
    if (ready[1].revents != 0) {
      woken_ = true;
      return false;
    }
    if (count < 0) return false;
    if (count > 0) return true;  // ready, or in error: libpq's next call says which
  }
}

bool Connection::flush() {
  for (;;) {
    const int unsent = PQflush(connection_);
    if (unsent == 0) return true;
    // Waiting to send, take in answers too: a server blocked sending them reads no more.
    if (unsent < 0 || !wait(POLLIN | POLLOUT) || PQconsumeInput(connection_) != 1) {
      lost_ = true;
      return false;
    }
  }
}

PGresult* Connection::next_result() {
  while (!lost_ && PQisBusy(connection_) == 1) {
    if (!wait(POLLIN) || PQconsumeInput(connection_) != 1) lost_ = true;
  }
  return lost_ ? nullptr : PQgetResult(connection_);
}

Connection::Owned Connection::exec(const std::string& sql, const std::vector<std::optional<std::string>>& parameters) {
  std::vector<const char*> values;
  values.reserve(parameters.size());
  for (const auto& parameter : parameters) values.push_back(parameter ? parameter->c_str() : nullptr);
  Owned last(nullptr, PQclear);
  if (PQsendQueryParams(connection_, sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(), nullptr,
                        nullptr, 0) != 1) {
    lost_ = true;
  }
  if (lost_ || !flush()) return last;
  while (PGresult* result = next_result()) last.reset(result);
  if (lost_) last.reset();
  return last;
}

std::string Connection::where() const { return where_of(connection_); }

Result<std::optional<std::string>> Connection::value(const std::string& sql,
                                                     const std::vector<std::optional<std::string>>& parameters,
                                                     bool& retry) {
  const Owned result = exec(sql, parameters);
  const ExecStatusType status = result ? PQresultStatus(result.get()) : PGRES_FATAL_ERROR;
  if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
    retry = false;
    if (status == PGRES_COMMAND_OK || PQntuples(result.get()) == 0 || PQgetisnull(result.get(), 0, 0)) {
      return std::optional<std::string>{};
    }
    return std::optional<std::string>(PQgetvalue(result.get(), 0, 0));
  }
  return error_of(result.get(), retry);
}

Status Connection::error_of(const PGresult* result, bool& retry) const {
  const char* state = result != nullptr ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
  // "Cached plan must not change result type": a table changed under a statement prepared in an
  // earlier batch. A new connection plans it again; there the same error is the statement's fault.
  const bool stale_plan = state != nullptr && std::string_view(state) == "0A000" && reusing_plans_;
  retry = broken() || state == nullptr || retryable(state) || stale_plan;
  std::string message = message_of(result != nullptr ? PQresultErrorMessage(result) : "");
  if (message.empty() && woken_) message = "gave up waiting for the server: the projection is stopping";
  if (message.empty()) message = message_of(PQerrorMessage(connection_));
  return Status(retry ? ErrorCode::io_error : ErrorCode::invalid_argument,
                where() + ": " + message + (state != nullptr ? std::string(" (SQLSTATE ") + state + ")" : std::string()));
}

Status Connection::run_pipelined(std::span<const Query> queries, std::size_t& failed, bool& retry) {
  // Answers outstanding at most: bounds what the server and this side buffer (libpq's output
  // buffer grows without end in non-blocking mode; the server stops reading once its answers fill
  // the socket).
  constexpr std::size_t kWindow = 256;
  constexpr std::size_t kPreparedMax = 256;
  failed = queries.size();
  retry = true;
  reusing_plans_ = !prepared_.empty();
  if (PQenterPipelineMode(connection_) != 1) return error_of(nullptr, retry);
  Status error;
  std::size_t received = 0;
  std::vector<std::size_t> query_of;  // for each command sent (a PREPARE or an execution), its query
  query_of.reserve(queries.size() + 8);
  const auto receive = [&](std::size_t upto) {
    while (!lost_ && received < upto) {
      PGresult* result = next_result();
      if (result == nullptr) {
        lost_ = true;
        break;
      }
      const ExecStatusType status = PQresultStatus(result);
      if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK && status != PGRES_PIPELINE_ABORTED && error.ok()) {
        error = error_of(result, retry);
        failed = query_of[received];
      }
      PQclear(result);
      PQclear(next_result());  // the null that ends each query's answers
      ++received;
    }
  };
  std::size_t sent = 0;
  const auto sent_one = [&](std::size_t query) {
    query_of.push_back(query);
    if (++sent - received < kWindow) return true;
    if (PQsendFlushRequest(connection_) != 1 || !flush()) return false;
    receive(sent);
    return true;
  };
  std::vector<const char*> values;
  for (std::size_t i = 0; i < queries.size() && !lost_; ++i) {
    const Query& query = queries[i];
    values.clear();
    for (const auto& parameter : *query.parameters) values.push_back(parameter ? parameter->c_str() : nullptr);
    const int count = static_cast<int>(values.size());
    // Each statement is parsed and planned once per connection: the batch only executes it. Up to
    // a bound: SQL with values written into it would otherwise grow both sides without end.
    auto prepared = prepared_.find(*query.sql);
    if (prepared == prepared_.end() && prepared_.size() < kPreparedMax) {
      prepared = prepared_.emplace(*query.sql, "annal_" + std::to_string(prepared_.size())).first;
      if (PQsendPrepare(connection_, prepared->second.c_str(), query.sql->c_str(), count, nullptr) != 1 || !sent_one(i)) {
        lost_ = true;
        break;
      }
    }
    const int queued = prepared != prepared_.end()
                           ? PQsendQueryPrepared(connection_, prepared->second.c_str(), count, values.data(), nullptr, nullptr, 0)
                           : PQsendQueryParams(connection_, query.sql->c_str(), count, nullptr, values.data(), nullptr, nullptr, 0);
    if (queued != 1 || !sent_one(i)) lost_ = true;
  }
  if (!lost_ && PQpipelineSync(connection_) == 1 && flush()) {
    receive(sent);
    PGresult* synced = next_result();
    if (synced == nullptr) lost_ = true;
    PQclear(synced);
  } else {
    lost_ = true;
  }
  if (lost_ || PQexitPipelineMode(connection_) != 1) {
    if (error.ok()) {
      error = error_of(nullptr, retry);
      retry = true;
      failed = received < query_of.size() ? query_of[received] : queries.size();
    }
  }
  // After any failure the connection is not used again: a pipeline left half-read is of no further
  // use, whether its COMMIT took effect is known only to a new connection that reads the
  // checkpoint, and a PREPARE the failure skipped would be missing on this one.
  if (!error.ok()) unusable_ = true;
  return error;
}

Result<std::vector<std::vector<std::string>>> Connection::rows(const std::string& sql, bool& retry) {
  const Owned result = exec(sql, {});
  if (!result || PQresultStatus(result.get()) != PGRES_TUPLES_OK) return error_of(result.get(), retry);
  retry = false;
  std::vector<std::vector<std::string>> out(static_cast<std::size_t>(PQntuples(result.get())));
  for (int row = 0; row < PQntuples(result.get()); ++row) {
    for (int column = 0; column < PQnfields(result.get()); ++column) {
      out[static_cast<std::size_t>(row)].emplace_back(PQgetvalue(result.get(), row, column));
    }
  }
  return out;
}

Status Connection::run(const std::string& sql, const std::vector<std::optional<std::string>>& parameters, bool& retry) {
  auto ran = value(sql, parameters, retry);
  return ran.ok() ? Status() : ran.status();
}

}  // namespace annal::postgres
