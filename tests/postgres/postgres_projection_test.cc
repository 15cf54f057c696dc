// The PostgreSQL connector against a real PostgreSQL (Debian's), in a cluster each test makes and
// removes: exactly once across restarts of the engine and crashes of PostgreSQL, and a poison
// event that stops only its projection.
#include "annal/postgres/postgres_projection.h"

#include <signal.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "annal/engine/engine.h"
#include "eventually.h"
#include "leftover_processes.h"
#include "postgres_cluster.h"
#include "run_program.h"
#include "spawned_tool.h"
#include "sql_session.h"
#include "stalling_proxy.h"
#include "temp_directory.h"
#include "watchdog.h"

namespace annal::postgres {
namespace {

using engine::Engine;
using engine::EventData;
using engine::EventView;
using engine::ExpectedVersion;
using engine::Receipt;

// Per stream, how many events it has had: a row per stream, incremented by each event. Applying an
// event twice or missing one shows as a wrong count.
std::shared_ptr<PostgresProjection> tallies(const std::string& conninfo) {
  auto projection = std::make_shared<PostgresProjection>(
      "tallies", PostgresOptions{.conninfo = conninfo,
                                 .schema = {"CREATE TABLE IF NOT EXISTS tallies (stream text PRIMARY KEY, events bigint NOT NULL)"},
                                 .batch_events_max = 64,
                                 .retry_first = std::chrono::milliseconds(20),
                                 .retry_max = std::chrono::milliseconds(200)});
  projection->on("Counted", [](const EventView& event, Statements& out) {
    out.add("INSERT INTO tallies (stream, events) VALUES ($1, 1) "
            "ON CONFLICT (stream) DO UPDATE SET events = tallies.events + 1",
            {std::string(event.header.stream_name)});
  });
  // A statement whose result has the table's row type: a plan PostgreSQL cached for it goes stale
  // when the table changes.
  projection->on("Returned", [](const EventView& event, Statements& out) {
    out.add("INSERT INTO tallies (stream, events) VALUES ($1, 1) "
            "ON CONFLICT (stream) DO UPDATE SET events = tallies.events + 1 RETURNING *",
            {std::string(event.header.stream_name)});
  });
  // A type whose rows break a rule of the table's: the poison event.
  projection->on("Broken", [](const EventView&, Statements& out) {
    out.add("INSERT INTO tallies (stream, events) VALUES ($1, NULL)", {std::string("broken")});
  });
  return projection;
}

// The table as PostgreSQL holds it now.
std::map<std::string, std::uint64_t> table(const std::string& conninfo) {
  std::map<std::string, std::uint64_t> rows;
  for (const auto& row : annal::test::SqlSession(conninfo).rows("SELECT stream, events FROM tallies")) {
    rows[row[0]] = std::stoull(row[1]);
  }
  return rows;
}

class PostgresProjectionTest : public ::testing::Test {
 protected:
  void open_engine() {
    auto opened = Engine::open(dir_.path(), {});
    ASSERT_TRUE(opened.ok()) << opened.status().to_string();
    engine_ = std::move(opened).value();
  }
  // Appends `count` Counted events over `streams` streams and counts them in `expected_`.
  Receipt append_counted(int count, int streams = 7) {
    Receipt last;
    for (int i = 0; i < count; ++i) {
      const std::string stream = "s" + std::to_string(i % streams);
      const EventData event{.type = "Counted"};
      auto receipt = engine_->append(stream, ExpectedVersion::any(), {&event, 1});
      EXPECT_TRUE(receipt.ok()) << receipt.status().to_string();
      if (receipt.ok()) last = receipt.value();
      ++expected_[stream];
    }
    return last;
  }
  // Opens the engine and adds the tallies projection to it.
  std::shared_ptr<PostgresProjection> open_with_tallies(const std::string& conninfo) {
    open_engine();
    auto projection = tallies(conninfo);
    const Status added = engine_ ? engine_->add_projection("tallies", projection, {}) : Status(ErrorCode::failed, "no engine");
    EXPECT_TRUE(added.ok()) << added.to_string();
    return projection;
  }
  // Waits until `projection` has committed `receipt` to PostgreSQL.
  void wait_committed(const PostgresProjection& projection, const Receipt& receipt) {
    ASSERT_TRUE(engine_->wait_durable(receipt, Engine::Clock::now() + std::chrono::minutes(2)).ok());
    EXPECT_TRUE(annal::test::eventually([&] { return projection.checkpoint() >= receipt.last_sequence; }))
        << "checkpoint " << projection.checkpoint() << ", waiting for " << receipt.last_sequence << "; "
        << projection.last_error().to_string();
  }

  annal::test::TempDirectory dir_;
  annal::test::PostgresCluster cluster_{ANNAL_POSTGRES_BINDIR};
  std::unique_ptr<Engine> engine_;
  std::map<std::string, std::uint64_t> expected_;
};

TEST_F(PostgresProjectionTest, EachEventIsAppliedOnceAcrossRestartsOfTheEngine) {
  annal::test::Watchdog watchdog("postgres exactly once across restarts");
  auto projection = open_with_tallies(cluster_.conninfo());
  ASSERT_FALSE(HasFailure());
  wait_committed(*projection, append_counted(500));
  EXPECT_EQ(table(cluster_.conninfo()), expected_);
  ASSERT_TRUE(engine_->close().ok());

  // Reopened: it resumes from the checkpoint PostgreSQL holds, replaying nothing it has. (The old
  // object goes first: it holds the projection's lock while it lives.)
  projection.reset();
  projection = open_with_tallies(cluster_.conninfo());
  ASSERT_FALSE(HasFailure());
  EXPECT_GT(engine_->projection_status("tallies").value().restored_from, 0u);
  const Receipt last = append_counted(300);
  wait_committed(*projection, last);
  EXPECT_EQ(table(cluster_.conninfo()), expected_);
  EXPECT_TRUE(projection->last_error().ok());
  ASSERT_TRUE(engine_->close().ok());

  // annal pg-status compares the checkpoint with the store's log.
  const annal::test::ProgramRun status =
      annal::test::run_program(std::string(ANNAL_CLI) + " pg-status " + dir_.path() + " '" + cluster_.conninfo() + "'");
  EXPECT_EQ(status.exit_code, 0) << status.output;
  EXPECT_NE(status.output.find("tallies"), std::string::npos) << status.output;
  EXPECT_NE(status.output.find("caught up"), std::string::npos) << status.output;
}

TEST_F(PostgresProjectionTest, PostgresCrashingMidStreamIsRetriedAndNothingIsLostOrDoubled) {
  annal::test::Watchdog watchdog("postgres crash");
  // A password in the connection string (trust needs none) must never show in a message.
  auto projection = open_with_tallies(cluster_.conninfo() + " password=not-to-be-shown");
  ASSERT_FALSE(HasFailure());
  wait_committed(*projection, append_counted(200));
  cluster_.crash();
  // Appends go on while PostgreSQL is down; the projection says why it waits.
  const Receipt during = append_counted(300);
  ASSERT_TRUE(engine_->wait_durable(during, Engine::Clock::now() + std::chrono::minutes(2)).ok());
  EXPECT_TRUE(annal::test::eventually([&] { return !projection->last_error().ok(); }));
  EXPECT_NE(projection->last_error().message().find("PostgreSQL at"), std::string::npos) << projection->last_error().to_string();
  // The engine's status of the projection shows it: retrying, not stopped.
  const engine::ProjectionStatus waiting = engine_->projection_status("tallies").value();
  EXPECT_FALSE(waiting.retrying.ok());
  EXPECT_TRUE(waiting.error.ok());
  EXPECT_EQ(projection->last_error().message().find("not-to-be-shown"), std::string::npos);
  cluster_.start();
  wait_committed(*projection, append_counted(100));
  EXPECT_EQ(table(cluster_.conninfo()), expected_);
  EXPECT_TRUE(projection->last_error().ok());
  EXPECT_TRUE(engine_->projection_status("tallies").value().retrying.ok());
  ASSERT_TRUE(engine_->close().ok());
}

TEST_F(PostgresProjectionTest, ClosingWhilePostgresIsDownReturnsAndTheNextOpenCatchesUp) {
  annal::test::Watchdog watchdog("postgres down at close");
  auto projection = open_with_tallies(cluster_.conninfo());
  ASSERT_FALSE(HasFailure());
  wait_committed(*projection, append_counted(50));
  cluster_.crash();
  append_counted(50);
  EXPECT_TRUE(annal::test::eventually([&] { return !projection->last_error().ok(); }));
  ASSERT_TRUE(engine_->close().ok());  // returns: the retry stops when told
  engine_.reset();
  cluster_.start();
  projection.reset();
  projection = open_with_tallies(cluster_.conninfo());
  ASSERT_FALSE(HasFailure());
  wait_committed(*projection, append_counted(10));
  EXPECT_EQ(table(cluster_.conninfo()), expected_);
  ASSERT_TRUE(engine_->close().ok());
}

// A host gone silent (nothing answers, nothing fails) while a batch is in flight, or while the
// projection connects again after losing its connection: closing the engine returns all the same,
// with no timeout of libpq's to end the wait (connect_timeout=0), and the next open catches up, each
// event once.
TEST_F(PostgresProjectionTest, ClosingReturnsWhenTheServerHasGoneSilent) {
  annal::test::Watchdog watchdog("postgres silent at close");
  const std::string socket = cluster_.socket_path();
  ASSERT_FALSE(socket.empty());
  for (const bool connecting : {false, true}) {
    SCOPED_TRACE(connecting ? "connecting again" : "a batch in flight");
    std::optional<annal::test::StallingProxy> proxy(std::in_place, socket);
    auto projection = open_with_tallies("host=127.0.0.1 port=" + std::to_string(proxy->port()) +
                                        " dbname=postgres user=annal connect_timeout=0");
    ASSERT_FALSE(HasFailure());
    wait_committed(*projection, append_counted(50));
    if (connecting) {
      proxy->cut();
    } else {
      proxy->stall();
    }
    const Receipt unanswered = append_counted(50);
    ASSERT_TRUE(engine_->wait_durable(unanswered, Engine::Clock::now() + std::chrono::minutes(2)).ok());
    // A batch in flight: the proxy holds what the projection sent. Or, its connection lost, the
    // projection is connecting again, to a port that never answers.
    EXPECT_TRUE(annal::test::eventually([&] { return connecting ? proxy->attempted() : proxy->holding(); }));
    ASSERT_TRUE(engine_->close().ok());
    engine_.reset();
    proxy.reset();  // the sessions end, and the projection's lock with them
    projection.reset();
    projection = open_with_tallies(cluster_.conninfo());
    ASSERT_FALSE(HasFailure());
    wait_committed(*projection, append_counted(10));
    EXPECT_EQ(table(cluster_.conninfo()), expected_);
    ASSERT_TRUE(engine_->close().ok());
    engine_.reset();
    projection.reset();
  }
}

// Failover: with several hosts, one gone silent is given its connect_timeout and passed over for
// the next, as libpq's own connect does; the projection runs on the one that answers.
TEST_F(PostgresProjectionTest, AHostGoneSilentIsPassedOverForTheNextInTheList) {
  annal::test::Watchdog watchdog("postgres failover");
  annal::test::StallingProxy silent(cluster_.socket_path());
  silent.stall();
  const std::string port = cluster_.socket_path().substr(cluster_.socket_path().rfind('.') + 1);
  auto projection = open_with_tallies("host=127.0.0.1," + cluster_.socket_directory() + " port=" +
                                      std::to_string(silent.port()) + "," + port +
                                      " dbname=postgres user=annal connect_timeout=2");
  ASSERT_FALSE(HasFailure());
  EXPECT_TRUE(silent.attempted());
  wait_committed(*projection, append_counted(20));
  EXPECT_EQ(table(cluster_.conninfo()), expected_);
  ASSERT_TRUE(engine_->close().ok());
}

// A batch waiting on a lock another session holds (a migration, a long report): closing returns,
// and PostgreSQL ends the session given up within a second although its statement still waits, so
// the next open gets the projection's lock while the table's is still held.
TEST_F(PostgresProjectionTest, ClosingReturnsWhileABatchWaitsOnALock) {
  annal::test::Watchdog watchdog("postgres lock at close");
  auto projection = open_with_tallies(cluster_.conninfo());
  ASSERT_FALSE(HasFailure());
  wait_committed(*projection, append_counted(10));
  annal::test::SqlSession migration(cluster_.conninfo());
  migration.run("BEGIN; LOCK TABLE tallies IN ACCESS EXCLUSIVE MODE");
  append_counted(10);
  EXPECT_TRUE(annal::test::eventually(
      [&] { return migration.rows("SELECT count(*) FROM pg_locks WHERE NOT granted")[0][0] != "0"; }));
  ASSERT_TRUE(engine_->close().ok());
  engine_.reset();
  projection.reset();
  projection = open_with_tallies(cluster_.conninfo());
  ASSERT_FALSE(HasFailure());
  migration.run("ROLLBACK");
  wait_committed(*projection, append_counted(10));
  EXPECT_EQ(table(cluster_.conninfo()), expected_);
  ASSERT_TRUE(engine_->close().ok());
}

// The forms users give: key=value, a URI, and nothing but the PG* variables. A malformed string is
// refused without being quoted back (it may hold a password).
TEST_F(PostgresProjectionTest, ConnectsWithLibpqsFormsAndThePgVariables) {
  const std::string socket = cluster_.socket_directory();
  EXPECT_TRUE(read_checkpoints(cluster_.conninfo()).ok());
  const auto uri = read_checkpoints("postgresql:///postgres?host=" + socket + "&user=annal");
  EXPECT_TRUE(uri.ok()) << uri.status().to_string();
  ::setenv("PGHOST", socket.c_str(), 1);
  ::setenv("PGUSER", "annal", 1);
  ::setenv("PGDATABASE", "postgres", 1);
  const auto environment = read_checkpoints("");
  ::unsetenv("PGHOST");
  ::unsetenv("PGUSER");
  ::unsetenv("PGDATABASE");
  EXPECT_TRUE(environment.ok()) << environment.status().to_string();
  const auto malformed = read_checkpoints("host=" + socket + " password='never-shown");
  EXPECT_EQ(malformed.code(), ErrorCode::invalid_argument);
  EXPECT_EQ(malformed.status().message().find("never-shown"), std::string::npos) << malformed.status().to_string();
}

// One writer per projection: a second keeper of the same projection (another process, another
// store) is refused while the first holds its lock, so two never interleave their batches.
TEST_F(PostgresProjectionTest, ASecondKeeperOfTheSameProjectionIsRefused) {
  annal::test::Watchdog watchdog("postgres one writer");
  auto projection = open_with_tallies(cluster_.conninfo());
  ASSERT_FALSE(HasFailure());
  wait_committed(*projection, append_counted(10));
  annal::test::TempDirectory other_dir;
  auto other = Engine::open(other_dir.path(), {});
  ASSERT_TRUE(other.ok());
  PostgresOptions options;
  options.conninfo = cluster_.conninfo();
  options.lock_wait = std::chrono::milliseconds(100);
  auto second = std::make_shared<PostgresProjection>("tallies", options);
  const Status refused = other.value()->add_projection("tallies", second, {});
  EXPECT_EQ(refused.code(), ErrorCode::locked);
  EXPECT_NE(refused.message().find("is locked by another session"), std::string::npos) << refused.to_string();
  EXPECT_TRUE(other.value()->close().ok());
  EXPECT_EQ(table(cluster_.conninfo()), expected_);
  ASSERT_TRUE(engine_->close().ok());
}

// A table changed under a running projection (ALTER TABLE) invalidates the plans its connection
// prepared; one whose result type changed fails with 0A000. That is retried on a new connection,
// which plans again, rather than taken for a poison event.
TEST_F(PostgresProjectionTest, ATableChangedUnderTheProjectionIsPlannedAgainNotPoison) {
  annal::test::Watchdog watchdog("postgres cached plan");
  auto projection = open_with_tallies(cluster_.conninfo());
  ASSERT_FALSE(HasFailure());
  const EventData returned{.type = "Returned"};
  const auto append_returned = [&] {
    auto receipt = engine_->append("r", ExpectedVersion::any(), {&returned, 1});
    EXPECT_TRUE(receipt.ok());
    ++expected_["r"];
    return receipt.value();
  };
  wait_committed(*projection, append_returned());
  annal::test::SqlSession(cluster_.conninfo()).run("ALTER TABLE tallies ADD COLUMN note text");
  wait_committed(*projection, append_returned());
  EXPECT_TRUE(engine_->projection_status("tallies").value().error.ok())
      << engine_->projection_status("tallies").value().error.to_string();
  EXPECT_EQ(table(cluster_.conninfo()), expected_);
  ASSERT_TRUE(engine_->close().ok());
}

// Each projection has a lock of its own: two names whose 32-bit hashtext() collide (a pair found
// in the server itself) run side by side.
TEST_F(PostgresProjectionTest, ProjectionsWhoseNamesHashAlikeBothRun) {
  annal::test::Watchdog watchdog("postgres lock keys");
  const auto pair = annal::test::SqlSession(cluster_.conninfo())
                        .rows("SELECT min(name), max(name) FROM (SELECT 'p' || i AS name, hashtext('p' || i) AS hash "
                              "FROM generate_series(1, 300000) i) names GROUP BY hash HAVING count(*) > 1 LIMIT 1");
  ASSERT_EQ(pair.size(), 1u);
  const std::string first = pair[0][0];
  const std::string second = pair[0][1];
  open_engine();
  ASSERT_FALSE(HasFailure());
  std::vector<std::shared_ptr<PostgresProjection>> projections;
  for (const std::string& name : {first, second}) {
    PostgresOptions options;
    options.conninfo = cluster_.conninfo();
    options.lock_wait = std::chrono::milliseconds(100);
    projections.push_back(std::make_shared<PostgresProjection>(name, options));
    const Status added = engine_->add_projection(name, projections.back(), {});
    EXPECT_TRUE(added.ok()) << name << ": " << added.to_string();
  }
  const Receipt last = append_counted(10);
  for (const auto& projection : projections) wait_committed(*projection, last);
  ASSERT_TRUE(engine_->close().ok());
}

TEST_F(PostgresProjectionTest, APoisonEventStopsOnlyItsProjectionAndSaysWhichAndWhy) {
  annal::test::Watchdog watchdog("postgres poison event");
  auto projection = open_with_tallies(cluster_.conninfo());
  ASSERT_FALSE(HasFailure());
  wait_committed(*projection, append_counted(20));
  const auto before = expected_;
  const EventData broken{.type = "Broken"};
  const auto poison = engine_->append("b", ExpectedVersion::any(), {&broken, 1});
  ASSERT_TRUE(poison.ok());
  EXPECT_TRUE(annal::test::eventually([&] { return !engine_->projection_status("tallies").value().error.ok(); }));
  const std::string error = engine_->projection_status("tallies").value().error.message();
  EXPECT_NE(error.find("event " + std::to_string(poison.value().last_sequence) + " (Broken)"), std::string::npos) << error;
  EXPECT_NE(error.find("null value"), std::string::npos) << error;  // PostgreSQL's own words
  // The engine goes on; the table holds what came before the poison event, and nothing of it.
  const Receipt after = append_counted(5);
  EXPECT_TRUE(engine_->wait_durable(after, Engine::Clock::now() + std::chrono::minutes(2)).ok());
  EXPECT_EQ(table(cluster_.conninfo()), before);
  ASSERT_TRUE(engine_->close().ok());
}

// The throw-away cluster ends with the test process that started it, though that process dies
// without running a destructor (SIGKILL here; the watchdog's abort, a sanitizer's report and
// ctest's timeout end it alike): no process of the cluster (the postmaster, pg_ctl daemonizes it,
// and its backends) is left holding memory on a shared machine. They are found by their working
// directory, the cluster's data directory inside this test's own.
TEST(PostgresClusterCleanup, NothingOfTheClusterOutlivesAKilledTestProcess) {
  annal::test::Watchdog watchdog("a cluster's processes after its test process was killed", std::chrono::seconds(300));
  const annal::test::TempDirectory tmp;
  // Run as root, the cluster belongs to the postgres account, which must reach its directory.
  std::filesystem::permissions(tmp.path(), std::filesystem::perms::others_exec, std::filesystem::perm_options::add);
  annal::test::SpawnedTool holder(ANNAL_SERVER_HOLDER, {"postgres", ANNAL_POSTGRES_BINDIR, tmp.path()});
  ASSERT_TRUE(holder.wait_for("\n", std::chrono::minutes(4))) << holder.printed();
  ASSERT_TRUE(holder.printed().starts_with("holding ")) << holder.printed();
  const std::string inside = std::filesystem::canonical(tmp.path()).string() + "/";
  const auto of_the_cluster = [&](pid_t pid) { return annal::test::working_directory(pid).starts_with(inside); };
  ASSERT_FALSE(annal::test::processes_where(of_the_cluster).empty()) << "the check below would see nothing";
  ASSERT_TRUE(holder.kill_now());
  const bool gone = annal::test::eventually([&] { return annal::test::processes_where(of_the_cluster).empty(); });
  const std::vector<pid_t> left = annal::test::processes_where(of_the_cluster);
  EXPECT_TRUE(gone) << "left running after the holder was killed:\n" << annal::test::describe(left);
  // Ours by their directory: the test leaves no stray. SIGQUIT, as pg_ctl's immediate mode: the
  // postmaster removes its shared memory segment on the way out, which SIGKILL would leave.
  for (const pid_t pid : left) ::kill(pid, SIGQUIT);
}

}  // namespace
}  // namespace annal::postgres
