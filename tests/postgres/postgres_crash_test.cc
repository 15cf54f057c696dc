// The process that appends and keeps a read model in PostgreSQL is SIGKILLed at random moments;
// after each kill the store is reopened with the same projection, which resumes from the
// checkpoint PostgreSQL holds. Each time, the table must equal a fresh replay of the whole journal
// into an empty database, row by row (none lost, none applied twice), and the checkpoint must be
// the last sequence of the log. ANNAL_PG_CRASH_KILLS sets the number of kills (default 8),
// ANNAL_PG_CRASH_SEED the timing. ASan only, like the other kill tests: TSan does not follow fork
// in threaded programs.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <random>

#include "annal/engine/engine.h"
#include "annal/postgres/postgres_projection.h"
#include "eventually.h"
#include "kill_timing.h"
#include "postgres_cluster.h"
#include "sql_session.h"
#include "watchdog.h"

namespace annal::postgres {
namespace {

using namespace std::chrono_literals;
using engine::Engine;
using engine::EventData;
using engine::EventView;
using engine::ExpectedVersion;


std::shared_ptr<PostgresProjection> tallies(const std::string& conninfo) {
  auto projection = std::make_shared<PostgresProjection>(
      "tallies", PostgresOptions{.conninfo = conninfo,
                                 .schema = {"CREATE TABLE IF NOT EXISTS tallies (stream text PRIMARY KEY, events bigint NOT NULL)"},
                                 .batch_events_max = 50});
  projection->on("Counted", [](const EventView& event, Statements& out) {
    out.add("INSERT INTO tallies (stream, events) VALUES ($1, 1) "
            "ON CONFLICT (stream) DO UPDATE SET events = tallies.events + 1",
            {std::string(event.header.stream_name)});
  });
  return projection;
}

[[noreturn]] void child(const std::string& dir, const std::string& conninfo, int fd) {
  auto engine = Engine::open(dir, {});
  if (!engine.ok()) {
    std::fprintf(stderr, "child: %s\n", engine.status().to_string().c_str());
    _exit(3);
  }
  const Status added = engine.value()->add_projection("tallies", tallies(conninfo), {});
  if (!added.ok()) {
    std::fprintf(stderr, "child: %s\n", added.to_string().c_str());
    _exit(4);
  }
  annal::test::report_to_parent(fd, annal::test::kReportedOpen);
  for (std::uint64_t i = 0;; ++i) {
    const EventData event{.type = "Counted"};
    const auto receipt = engine.value()->append("s" + std::to_string(i % 13), ExpectedVersion::any(), {&event, 1});
    if (!receipt.ok()) _exit(7);
    if (i % 16 == 15) {
      if (!engine.value()->wait_durable(receipt.value(), Engine::Clock::now() + 300s).ok()) _exit(8);
      annal::test::report_to_parent(fd, receipt.value().last_sequence);
    }
  }
}

// Reopens the store with the projection, lets it catch up, and compares its table with a replay of
// the whole log into database `fresh`.
void reopen_and_check(const std::string& dir, const annal::test::PostgresCluster& cluster, const std::string& fresh,
                      std::uint64_t& events) {
  auto opened = Engine::open(dir, {});
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  Engine& engine = *opened.value();
  auto resumed = tallies(cluster.conninfo());
  ASSERT_TRUE(engine.add_projection("tallies", resumed, {}).ok());
  annal::test::SqlSession(cluster.conninfo()).run("CREATE DATABASE " + fresh);
  auto replayed = tallies(cluster.conninfo(fresh));
  ASSERT_TRUE(engine.add_projection("fresh", replayed, {}).ok());
  const std::uint64_t end = engine.last_sequence();
  ASSERT_TRUE(annal::test::eventually([&] { return resumed->checkpoint() >= end && replayed->checkpoint() >= end; }))
      << "checkpoints " << resumed->checkpoint() << " and " << replayed->checkpoint() << ", the log ends at " << end << "; "
      << resumed->last_error().to_string() << " " << engine.projection_status("tallies").value().error.to_string();
  EXPECT_EQ(resumed->checkpoint(), end);
  const std::string table = "SELECT stream, events FROM tallies ORDER BY stream";
  annal::test::SqlSession resumed_database(cluster.conninfo());
  const auto kept = resumed_database.rows(table);
  EXPECT_EQ(kept, annal::test::SqlSession(cluster.conninfo(fresh)).rows(table));
  EXPECT_EQ(resumed_database.rows("SELECT sequence FROM annal_checkpoints WHERE projection = 'tallies'"),
            (std::vector<std::vector<std::string>>{{std::to_string(end)}}));
  events = 0;
  for (const auto& row : kept) events += std::stoull(row[1]);
  // And both against the log itself, which holds Counted events only: a fault shared by both
  // tables (the same connector made them) would still show here.
  EXPECT_EQ(events, engine.event_count());
  ASSERT_TRUE(engine.close().ok());
  // Their connections end with them; a database in use cannot be dropped.
  opened.value().reset();
  resumed.reset();
  replayed.reset();
  annal::test::SqlSession(cluster.conninfo()).run("DROP DATABASE " + fresh);
}

TEST(PostgresCrash, TheTableAlwaysEqualsAFreshReplayOfTheLog) {
  const auto kills = static_cast<int>(annal::test::env_or("ANNAL_PG_CRASH_KILLS", 8));
  const std::uint64_t seed = annal::test::env_or("ANNAL_PG_CRASH_SEED", std::random_device{}());
  std::printf("seed %llu (ANNAL_PG_CRASH_SEED repeats it)\n", static_cast<unsigned long long>(seed));
  std::fflush(stdout);  // before any fork
  SCOPED_TRACE("seed " + std::to_string(seed));
  annal::test::PostgresCluster cluster(ANNAL_POSTGRES_BINDIR);
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("annal-pg-crash-" + std::to_string(::getpid()))).string();
  std::filesystem::remove_all(dir);
  annal::test::KillTiming timing(seed, 100ms);
  std::uint64_t events = 0;
  int durable_rounds = 0;
  for (int kill = 0; kill < kills; ++kill) {
    SCOPED_TRACE("kill " + std::to_string(kill) + " in " + dir);
    const annal::test::Watchdog watchdog("postgres crash round " + std::to_string(kill), 600s);
    const std::string conninfo = cluster.conninfo();  // made before fork: the child must not allocate first
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(fds[0]);
      if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != parent) _exit(6);
      child(dir, conninfo, fds[1]);
    }
    ::close(fds[1]);
    const auto forked = annal::test::KillTiming::Clock::now();
    const std::string wrong = annal::test::kill_at_point(timing, kill, pid, fds[0], forked, 300s);
    ASSERT_TRUE(wrong.empty()) << wrong;
    durable_rounds += timing.point(kill) == annal::test::KillPoint::after_durable ? 1 : 0;
    ::close(fds[0]);
    ASSERT_NO_FATAL_FAILURE(reopen_and_check(dir, cluster, "fresh" + std::to_string(kill), events));
  }
  std::printf("%d kills (%d after a durable report): %llu events in the table, each once\n", kills, durable_rounds,
              static_cast<unsigned long long>(events));
  EXPECT_GT(events, 0u);  // what makes the test bite: the children appended something
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace annal::postgres
