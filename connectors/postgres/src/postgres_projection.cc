#include "annal/postgres/postgres_projection.h"

#include <algorithm>
#include <stdexcept>
#include <utility>

#include "connection.h"

namespace annal::postgres {
namespace {

constexpr const char* kCheckpointTable =
    "CREATE TABLE IF NOT EXISTS annal_checkpoints (projection text PRIMARY KEY, sequence bigint NOT NULL)";
constexpr const char* kReadCheckpoint = "SELECT sequence FROM annal_checkpoints WHERE projection = $1";
// One writer per projection: a session-level advisory lock, released when the session ends. Its
// key is a 64-bit hash of the name (hashtext's 32 bits collide within some 10^5 names).
constexpr const char* kLock = "SELECT pg_try_advisory_lock(hashtextextended('annal_checkpoints:' || $1, 0))";
constexpr const char* kWriteCheckpoint =
    "INSERT INTO annal_checkpoints (projection, sequence) VALUES ($1, $2) "
    "ON CONFLICT (projection) DO UPDATE SET sequence = EXCLUDED.sequence";

}  // namespace

Result<std::vector<Checkpoint>> read_checkpoints(const std::string& conninfo) {
  auto connection = Connection::open(conninfo);
  if (!connection.ok()) return connection.status();
  bool retry = false;
  const auto exists = connection.value()->value("SELECT to_regclass('annal_checkpoints') IS NOT NULL", {}, retry);
  if (!exists.ok()) return exists.status();
  std::vector<Checkpoint> checkpoints;
  if (exists.value() != std::optional<std::string>("t")) return checkpoints;
  auto rows = connection.value()->rows("SELECT projection, sequence FROM annal_checkpoints ORDER BY projection", retry);
  if (!rows.ok()) return rows.status();
  for (const auto& row : rows.value()) checkpoints.push_back({row[0], std::stoull(row[1])});
  return checkpoints;
}

PostgresProjection::PostgresProjection(std::string name, PostgresOptions options)
    : name_(std::move(name)), options_(std::move(options)), wakeup_(std::make_unique<const Wakeup>()) {}

PostgresProjection::~PostgresProjection() = default;

PostgresProjection& PostgresProjection::on(std::string type, Handler handler) {
  handlers_[std::move(type)] = std::move(handler);
  return *this;
}

Status PostgresProjection::last_error() const {
  std::lock_guard lock(mutex_);
  return last_error_;
}

Status PostgresProjection::refusal() const {
  std::lock_guard lock(mutex_);
  return refused_;
}

std::uint64_t PostgresProjection::checkpoint() const {
  std::lock_guard lock(mutex_);
  return checkpoint_;
}

bool PostgresProjection::wait_for(std::uint64_t sequence, std::chrono::steady_clock::time_point deadline) const {
  std::unique_lock lock(mutex_);
  changed_.wait_until(lock, deadline, [&] { return checkpoint_ >= sequence || stopping_ || !refused_.ok(); });
  return checkpoint_ >= sequence;
}

Status PostgresProjection::connect() {
  if (connection_ && !connection_->broken()) return {};
  disconnect();
  auto opened = Connection::open(options_.conninfo, wakeup_.get());
  if (!opened.ok()) return opened.status();
  bool retry = false;
  const auto locked = opened.value()->value(kLock, {name_}, retry);
  if (!locked.ok()) return locked.status();
  if (locked.value() != std::optional<std::string>("t")) {
    return Status(ErrorCode::locked, opened.value()->where() + ": projection " + name_ +
                                           " is locked by another session: one whose process died (PostgreSQL ends it "
                                           "shortly), a second process keeping the same projection, or an earlier "
                                           "PostgresProjection of that name still alive in this one");
  }
  connection_ = std::move(opened).value();
  return {};
}

void PostgresProjection::disconnect() { connection_.reset(); }

Result<std::optional<std::uint64_t>> PostgresProjection::resume_after() {
  // The object may be added again after an engine closed: nothing of that run carries over.
  disconnect();
  pending_.clear();
  pending_events_ = 0;
  outcome_unknown_ = false;
  {
    std::lock_guard lock(mutex_);
    stopping_ = false;
    wakeup_->clear();
    last_error_ = Status();
    refused_ = Status();
  }
  const auto fail = [&](const Status& status) {
    disconnect();  // a failed transaction may be left open on it
    return Status(status.code(), "projection " + name_ + ": " + status.message());
  };
  // A process that died may still have a session holding the lock: PostgreSQL ends it soon.
  const auto give_up = std::chrono::steady_clock::now() + options_.lock_wait;
  std::chrono::milliseconds delay = options_.retry_first;
  for (Status connected = connect(); !connected.ok(); connected = connect()) {
    if (std::chrono::steady_clock::now() >= give_up || connected.code() != ErrorCode::locked) {
      return fail(connected);
    }
    if (!back_off(delay)) return fail(connected);
  }
  bool retry = false;
  if (Status begun = connection_->run("BEGIN", retry); !begun.ok()) return fail(begun);
  for (const std::string& statement : options_.schema) {
    if (Status made = connection_->run(statement, retry); !made.ok()) return fail(made);
  }
  if (Status made = connection_->run(kCheckpointTable, retry); !made.ok()) return fail(made);
  const auto stored = connection_->value(kReadCheckpoint, {name_}, retry);
  if (!stored.ok()) return fail(stored.status());
  if (Status committed = connection_->run("COMMIT", retry); !committed.ok()) return fail(committed);
  std::uint64_t sequence = 0;
  if (stored.value()) sequence = std::stoull(*stored.value());
  committed_ = sequence;
  std::lock_guard lock(mutex_);
  checkpoint_ = sequence;
  return std::optional<std::uint64_t>(sequence);
}

void PostgresProjection::apply(const engine::EventView& event) {
  if (const auto handler = handlers_.find(event.header.type); handler != handlers_.end()) {
    Statements out;
    handler->second(event, out);
    for (Statements::Statement& statement : out.statements_) {
      pending_.push_back({event.header.sequence, std::string(event.header.type), std::move(statement)});
    }
  }
  if (++pending_events_ >= options_.batch_events_max) commit(event.header.sequence);
}

void PostgresProjection::end_of_batch(std::uint64_t applied) { commit(applied); }

void PostgresProjection::stop_requested() {
  std::lock_guard lock(mutex_);
  stopping_ = true;
  changed_.notify_all();
  // Whatever the projection thread waits for (an answer, a lock, a host gone silent, a connection
  // being made) it stops waiting: the statement in flight is given up, and the next open learns
  // from the checkpoint whether its batch committed. (No PQcancel: it connects to the server,
  // blocking, and is lost on a statement not yet begun.)
  wakeup_->raise();
}

void PostgresProjection::commit(std::uint64_t sequence) {
  if (sequence <= committed_ && pending_.empty()) return;
  std::chrono::milliseconds delay = options_.retry_first;
  for (;;) {
    bool retry = false;
    const Status committed = try_commit(sequence, retry);
    if (committed.ok()) break;
    if (!retry) {
      {
        std::lock_guard lock(mutex_);
        refused_ = committed;
        changed_.notify_all();
      }
      throw std::runtime_error(committed.message());
    }
    {
      std::lock_guard lock(mutex_);
      last_error_ = committed;
    }
    if (!back_off(delay)) {
      // Stopping: the next open replays from the checkpoint. Closed now, the session of a batch
      // given up ends on the server within a second (client_connection_check_interval).
      disconnect();
      return;
    }
  }
  pending_.clear();
  pending_events_ = 0;
  committed_ = sequence;
  std::lock_guard lock(mutex_);
  checkpoint_ = sequence;
  last_error_ = Status();
  changed_.notify_all();
}

Status PostgresProjection::try_commit(std::uint64_t sequence, bool& retry) {
  retry = true;
  if (Status connected = connect(); !connected.ok()) return connected;
  if (outcome_unknown_) {
    // The last try may have committed before its answer was lost: the checkpoint says, read on a
    // connection holding the lock, so no session of that try is still running.
    const auto stored = connection_->value(kReadCheckpoint, {name_}, retry);
    if (!stored.ok()) return stored.status();
    outcome_unknown_ = false;
    const std::uint64_t held = stored.value() ? std::stoull(*stored.value()) : 0;
    if (held >= sequence) return {};
    // An earlier, shorter batch may have committed (one given up when the engine began to close):
    // what it held must not be sent again.
    std::erase_if(pending_, [&](const Pending& pending) { return pending.sequence <= held; });
  }
  // One transaction, pipelined: BEGIN, the events' statements, the checkpoint, COMMIT.
  static const std::string kBegin = "BEGIN";
  static const std::string kCommit = "COMMIT";
  static const std::string kWrite = kWriteCheckpoint;
  static const std::vector<std::optional<std::string>> kNone;
  const std::vector<std::optional<std::string>> checkpoint{name_, std::to_string(sequence)};
  std::vector<Connection::Query> queries;
  queries.reserve(pending_.size() + 3);
  queries.push_back({&kBegin, &kNone});
  for (const Pending& pending : pending_) queries.push_back({&pending.statement.sql, &pending.statement.parameters});
  queries.push_back({&kWrite, &checkpoint});
  queries.push_back({&kCommit, &kNone});
  std::size_t failed = 0;
  const Status ran = connection_->run_pipelined(queries, failed, retry);
  if (ran.ok()) return {};
  outcome_unknown_ = true;  // and the connection is not used again (run_pipelined)
  if (retry || failed == 0 || failed > pending_.size()) return ran;
  const Pending& poison = pending_[failed - 1];
  return Status(ran.code(), "PostgreSQL refused the statement for event " + std::to_string(poison.sequence) + " (" +
                                poison.type + "): " + ran.message());
}

bool PostgresProjection::back_off(std::chrono::milliseconds& delay) {
  std::unique_lock lock(mutex_);
  const bool stopping = changed_.wait_for(lock, delay, [&] { return stopping_; });
  delay = std::min(delay * 2, options_.retry_max);
  return !stopping;
}

}  // namespace annal::postgres
