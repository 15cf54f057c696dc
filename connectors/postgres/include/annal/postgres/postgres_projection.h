// A read model in PostgreSQL, applied exactly once: a projection whose state is tables in a
// PostgreSQL database, changed by the SQL the application gives per event type.
//
//   annal::postgres::PostgresProjection orders("orders", {
//       .conninfo = "host=/run/postgresql dbname=shop",   // libpq's forms; "" for PG* variables
//       .schema = {"CREATE TABLE IF NOT EXISTS orders (id bigint PRIMARY KEY, amount bigint)"}});
//   orders.on("OrderCreated", [](const EventView& event, Statements& out) {
//     out.add("INSERT INTO orders (id, amount) VALUES ($1, $2)", {id_of(event), amount_of(event)});
//   });
//   engine->add_projection("orders", std::shared_ptr<PostgresProjection>(...), {});
//
// The guarantee: the tables hold exactly the effect of the durable log up to the checkpoint, each
// event once, whatever crashes (of this process or of PostgreSQL) come in between.
//
// How. Each batch of events the engine hands over (those ready at once, at most batch_events_max)
// goes in ONE transaction together with the checkpoint row (projection, sequence) in the table
// annal_checkpoints. At start (Projection::resume_after) the checkpoint is read back from
// PostgreSQL and the engine replays the log from the next event, so a crash before a commit
// replays that batch and a crash after it does not. A commit whose outcome the connection lost is
// settled by reading the checkpoint again, on a new connection that first takes the projection's
// advisory lock: a session still running an earlier batch (its client died or lost it) holds that
// lock until it ends, so the checkpoint read is never older than a transaction still in flight.
// The lock is a session's: connect directly, or through a pooler in session mode (in transaction
// mode, PgBouncer would run the batches on other server sessions than the one holding it).
//
// PostgreSQL down or restarting: the commit is retried with backoff (last_error() says why) while
// the engine goes on appending; the projection falls behind, leaves the ring and catches up from the
// journal once PostgreSQL is back. A statement PostgreSQL refuses for a reason retrying cannot fix
// (a constraint, bad SQL, a type) stops this projection, naming the event's sequence and type and
// PostgreSQL's message; nothing else stops.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "annal/base/status.h"
#include "annal/engine/projection.h"

namespace annal::postgres {

class Connection;
class Wakeup;

// The statements one event turns into: SQL with $1, $2, ... parameters, sent as text (nullopt is
// NULL), run in order in the batch's transaction.
class Statements {
 public:
  void add(std::string sql, std::vector<std::optional<std::string>> parameters = {}) {
    statements_.push_back({std::move(sql), std::move(parameters)});
  }

 private:
  friend class PostgresProjection;
  struct Statement {
    std::string sql;
    std::vector<std::optional<std::string>> parameters;
  };
  std::vector<Statement> statements_;
};

struct PostgresOptions {
  // libpq's connection string ("host=... dbname=...", "postgresql://..."); empty takes the PG*
  // environment variables. A password comes from it, PGPASSWORD or ~/.pgpass; it is never logged.
  std::string conninfo;
  // Run once at start, in one transaction, before the checkpoint is read: CREATE TABLE IF NOT
  // EXISTS and the like.
  std::vector<std::string> schema;
  std::size_t batch_events_max = 1000;  // events one transaction commits at most
  std::chrono::milliseconds retry_first{100};  // the backoff while PostgreSQL cannot be reached
  std::chrono::milliseconds retry_max{5'000};
  // How long add_projection waits for the projection's lock, held by the session of a process that
  // died until PostgreSQL notices (or by a second process keeping the same projection: an error).
  std::chrono::milliseconds lock_wait{30'000};
};

// A PostgreSQL projection's checkpoint row: the last sequence its tables hold.
struct Checkpoint {
  std::string projection;
  std::uint64_t sequence = 0;
};
// Every checkpoint in the database `conninfo` names (empty if no projection ever ran there), in
// projection order; for `annal pg-status` and monitoring.
[[nodiscard]] Result<std::vector<Checkpoint>> read_checkpoints(const std::string& conninfo);

class PostgresProjection final : public engine::Projection {
 public:
  using Handler = std::function<void(const engine::EventView& event, Statements& out)>;

  // `name` keys its checkpoint row: give add_projection the same one, and never reuse it for
  // other tables. The object holds its connection, and with it the projection's lock, until it is
  // destroyed or added to an engine again: let it go with the engine it was added to.
  PostgresProjection(std::string name, PostgresOptions options);
  ~PostgresProjection() override;

  // What events of `type` do to the tables; events of other types change nothing (but move the
  // checkpoint). Before add_projection.
  PostgresProjection& on(std::string type, Handler handler);

  // The error the projection is retrying now (PostgreSQL unreachable), ok when none. Any thread.
  [[nodiscard]] Status last_error() const;
  [[nodiscard]] Status health() const override { return last_error(); }
  // The last sequence committed to PostgreSQL. Any thread.
  [[nodiscard]] std::uint64_t checkpoint() const;
  // The statement PostgreSQL refused, which stopped this projection for good (it names the event);
  // ok while it runs. Any thread.
  [[nodiscard]] Status refusal() const;
  // Read your writes against the tables: waits until the checkpoint is at least `sequence` (a
  // write's last_sequence); false at the deadline, once the engine is closing, or once the
  // projection has stopped (refusal()). Any thread.
  [[nodiscard]] bool wait_for(std::uint64_t sequence, std::chrono::steady_clock::time_point deadline) const;

  void apply(const engine::EventView& event) override;
  void end_of_batch(std::uint64_t applied) override;
  [[nodiscard]] Result<std::optional<std::uint64_t>> resume_after() override;
  void stop_requested() override;

 private:
  struct Pending {
    std::uint64_t sequence;
    std::string type;
    Statements::Statement statement;
  };
  // Commits what is pending and the checkpoint `sequence`, retrying while PostgreSQL cannot be
  // reached; throws for a statement it refuses. Returns without committing only once stopping.
  void commit(std::uint64_t sequence);
  // One try: ok, or the error and whether retrying can fix it.
  Status try_commit(std::uint64_t sequence, bool& retry);
  // Connects if there is no usable connection, and takes the projection's advisory lock.
  Status connect();
  void disconnect();
  // Sleeps the backoff, unless stop_requested() comes first; false then.
  bool back_off(std::chrono::milliseconds& delay);

  const std::string name_;
  const PostgresOptions options_;
  std::map<std::string, Handler, std::less<>> handlers_;
  const std::unique_ptr<const Wakeup> wakeup_;  // raised by stop_requested(): every wait on PostgreSQL ends
  std::unique_ptr<Connection> connection_;  // the projection thread's
  bool outcome_unknown_ = false;            // a batch failed: did its COMMIT take effect? Read the checkpoint
  std::vector<Pending> pending_;            // the projection thread's: applied, not yet committed
  std::size_t pending_events_ = 0;
  std::uint64_t committed_ = 0;             // the projection thread's copy of the checkpoint

  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;  // the checkpoint moved, stopping, or refused_
  bool stopping_ = false;                 // under mutex_
  Status last_error_;                     // under mutex_
  Status refused_;                        // under mutex_
  std::uint64_t checkpoint_ = 0;          // under mutex_
};

}  // namespace annal::postgres
