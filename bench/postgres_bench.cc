// Events per second into a PostgreSQL read model: the connector (connectors/postgres: a transaction
// per batch of events, with its checkpoint) against the seed documents' way (one INSERT and one
// commit per event, as their psycopg2 code does). The same events go into the same table of the
// same server: a cluster this binary starts on a Unix socket, fsync on, PostgreSQL's defaults
// otherwise (synchronous_commit on: every commit waits for its WAL to reach the disk).
//
// A third shows where the gain comes from: the same upserts one round trip each, committed 1,000
// at a time like the connector's batches, without its pipelining and prepared statements.
//
// Each counts from the first event to the last one committed; the table and the database are new
// for every iteration. These are catch-up figures (the events are in the journal already, so the
// connector's batches are full): with live traffic a batch holds what was ready at once.
#include <benchmark/benchmark.h>
#include <libpq-fe.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "annal/engine/engine.h"
#include "annal/postgres/postgres_projection.h"
#include "postgres_cluster.h"
#include "sql_session.h"
#include "temp_directory.h"

namespace {

using annal::engine::Engine;
using annal::engine::EventData;
using annal::engine::EventView;
using annal::engine::ExpectedVersion;
using annal::postgres::PostgresProjection;
using annal::postgres::Statements;

constexpr int kEvents = 20'000;
constexpr int kStreams = 100;
constexpr const char* kTable = "CREATE TABLE tallies (stream text PRIMARY KEY, events bigint NOT NULL)";
constexpr const char* kCount =
    "INSERT INTO tallies (stream, events) VALUES ($1, 1) ON CONFLICT (stream) DO UPDATE SET events = tallies.events + 1";

annal::test::PostgresCluster& cluster() {
  static annal::test::PostgresCluster the_cluster(ANNAL_POSTGRES_BINDIR);
  return the_cluster;
}

// A database of its own for one iteration, dropped after it.
class Database {
 public:
  explicit Database(int number) : name_("bench" + std::to_string(number)) {
    annal::test::SqlSession(cluster().conninfo()).run("CREATE DATABASE " + name_);
  }
  ~Database() { annal::test::SqlSession(cluster().conninfo()).run("DROP DATABASE " + name_ + " WITH (FORCE)"); }
  [[nodiscard]] std::string conninfo() const { return cluster().conninfo(name_); }

 private:
  std::string name_;
};

// The store both baselines read: kEvents Counted events over kStreams streams, durable.
struct Store {
  Store() {
    auto opened = Engine::open(dir.path(), {});
    if (!opened.ok()) throw std::runtime_error(opened.status().to_string());
    engine = std::move(opened).value();
    annal::engine::Receipt last;
    for (int i = 0; i < kEvents; ++i) {
      const EventData event{.type = "Counted"};
      stream_of_event.push_back("s" + std::to_string(i % kStreams));
      last = engine->append(stream_of_event.back(), ExpectedVersion::any(), {&event, 1}).value();
    }
    if (!engine->wait_durable(last, Engine::Clock::now() + std::chrono::minutes(1)).ok()) throw std::runtime_error("not durable");
  }
  annal::test::TempDirectory dir;
  std::unique_ptr<Engine> engine;
  std::vector<std::string> stream_of_event;
};

Store& store() {
  static Store the_store;
  return the_store;
}

int next_database = 0;

void postgres_apply_annal(benchmark::State& state) {
  Store& events = store();
  for (auto _ : state) {
    const Database database(next_database++);
    auto projection = std::make_shared<PostgresProjection>(
        "tallies", annal::postgres::PostgresOptions{.conninfo = database.conninfo(), .schema = {kTable}});
    projection->on("Counted", [](const EventView& event, Statements& out) {
      out.add(kCount, {std::string(event.header.stream_name)});
    });
    const std::string name = "pg" + std::to_string(next_database);
    const auto started = std::chrono::steady_clock::now();
    if (!events.engine->add_projection(name, projection, {}).ok()) throw std::runtime_error("add_projection");
    const std::uint64_t end = events.engine->last_sequence();
    while (projection->checkpoint() < end) std::this_thread::sleep_for(std::chrono::microseconds(100));
    state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    // The projection stays added until the engine closes: once its database is dropped (WITH
    // (FORCE) ends its connection) it only retries, every few seconds.
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * kEvents);
  state.SetLabel("a transaction per batch (batch_events_max 1000), with its checkpoint");
}

// One upsert per event, one round trip each; COMMIT after every `per_commit` events.
void upserts(benchmark::State& state, std::size_t per_commit) {
  Store& events = store();
  for (auto _ : state) {
    const Database database(next_database++);
    annal::test::SqlSession(database.conninfo()).run(kTable);
    PGconn* connection = PQconnectdb(database.conninfo().c_str());
    const auto exec = [&](const char* sql, int count, const char* const* values) {
      PGresult* result = PQexecParams(connection, sql, count, nullptr, values, nullptr, nullptr, 0);
      if (PQresultStatus(result) != PGRES_COMMAND_OK) throw std::runtime_error(PQerrorMessage(connection));
      PQclear(result);
    };
    const auto started = std::chrono::steady_clock::now();
    std::size_t in_transaction = 0;
    for (const std::string& stream : events.stream_of_event) {
      // With per_commit 1, autocommit: the statement is its own transaction.
      if (per_commit > 1 && in_transaction == 0) exec("BEGIN", 0, nullptr);
      const char* values[] = {stream.c_str()};
      exec(kCount, 1, values);
      if (per_commit > 1 && ++in_transaction == per_commit) {
        exec("COMMIT", 0, nullptr);
        in_transaction = 0;
      }
    }
    if (in_transaction > 0) exec("COMMIT", 0, nullptr);
    state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    PQfinish(connection);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * kEvents);
}

void postgres_apply_insert_commit_per_event(benchmark::State& state) {
  upserts(state, 1);
  state.SetLabel("one INSERT and one commit per event (the seed documents' way)");
}

void postgres_apply_transaction_per_1000(benchmark::State& state) {
  upserts(state, 1000);
  state.SetLabel("one round trip per INSERT, a commit per 1,000 (batching alone)");
}

// Live traffic: 8 threads append one event each and wait until it is durable, then the next
// (engine_append_8w's shape; blocking waits), while the connector follows into PostgreSQL. Its lag
// (durable sequence minus checkpoint) is sampled every 20 ms: kept up means the lag of the second
// half is no larger than that of the first. The same appends with no projection, in the same run,
// are the rate to keep up with.
void postgres_follow_8w(benchmark::State& state, bool follow) {
  constexpr int kWriters = 8;
  constexpr int kPerWriter = 5'000;
  for (auto _ : state) {
    annal::test::TempDirectory dir;
    auto opened = Engine::open(dir.path(), {});
    if (!opened.ok()) throw std::runtime_error(opened.status().to_string());
    Engine& engine = *opened.value();
    const Database database(next_database++);
    auto projection = std::make_shared<PostgresProjection>(
        "tallies", annal::postgres::PostgresOptions{.conninfo = database.conninfo(), .schema = {kTable}});
    projection->on("Counted", [](const EventView& event, Statements& out) {
      out.add(kCount, {std::string(event.header.stream_name)});
    });
    if (follow && !engine.add_projection("tallies", projection, {}).ok()) throw std::runtime_error("add_projection");
    std::atomic<int> writing{kWriters};
    std::vector<std::uint64_t> lags;
    std::thread sampler([&] {
      while (follow && writing.load(std::memory_order_acquire) > 0) {
        const std::uint64_t durable = engine.durable_sequence();
        const std::uint64_t checkpoint = projection->checkpoint();
        lags.push_back(durable > checkpoint ? durable - checkpoint : 0);
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    });
    const std::vector<std::byte> payload(256, std::byte{7});
    const auto started = std::chrono::steady_clock::now();
    std::vector<std::thread> writers;
    for (int w = 0; w < kWriters; ++w) {
      writers.emplace_back([&, w] {
        for (int i = 0; i < kPerWriter; ++i) {
          const EventData event{.type = "Counted", .payload = payload};
          const auto receipt = engine.append("s" + std::to_string((i * kWriters + w) % kStreams), ExpectedVersion::any(), {&event, 1});
          if (!receipt.ok() || !engine.wait_durable(receipt.value(), Engine::Clock::now() + std::chrono::minutes(1)).ok()) {
            std::abort();
          }
        }
        writing.fetch_sub(1, std::memory_order_acq_rel);
      });
    }
    for (std::thread& writer : writers) writer.join();
    const auto appended = std::chrono::steady_clock::now();
    sampler.join();
    const std::uint64_t end = engine.last_sequence();
    if (follow && !projection->wait_for(end, Engine::Clock::now() + std::chrono::minutes(1))) {
      throw std::runtime_error("never caught up");
    }
    const auto caught_up = std::chrono::steady_clock::now();
    state.SetIterationTime(std::chrono::duration<double>(appended - started).count());
    if (!follow) {
      if (!engine.close().ok()) throw std::runtime_error("close");
      continue;
    }
    const auto half = lags.begin() + static_cast<std::ptrdiff_t>(lags.size() / 2);
    state.counters["lag_max_first_half"] = static_cast<double>(lags.empty() ? 0 : *std::max_element(lags.begin(), half));
    state.counters["lag_max_second_half"] = static_cast<double>(half == lags.end() ? 0 : *std::max_element(half, lags.end()));
    std::sort(lags.begin(), lags.end());
    state.counters["lag_p50"] = static_cast<double>(lags.empty() ? 0 : lags[lags.size() / 2]);
    state.counters["catch_up_ms"] = std::chrono::duration<double, std::milli>(caught_up - appended).count();
    if (!engine.close().ok()) throw std::runtime_error("close");
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * kWriters * kPerWriter);
  state.SetLabel(follow ? "8 writers, blocking waits for durability; lag in events, sampled every 20 ms"
                        : "the same appends, no projection");
}

BENCHMARK(postgres_apply_annal)->Name("postgres_apply/annal")->UseManualTime()->Iterations(3)->Unit(benchmark::kMillisecond);
BENCHMARK(postgres_apply_insert_commit_per_event)
    ->Name("postgres_apply/insert_commit_per_event")
    ->UseManualTime()
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(postgres_follow_8w, with, true)
    ->Name("postgres_follow/engine_append_8w")
    ->UseManualTime()
    ->Iterations(1)
    ->Repetitions(3)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(postgres_follow_8w, without, false)
    ->Name("postgres_follow/engine_append_8w_no_projection")
    ->UseManualTime()
    ->Iterations(1)
    ->Repetitions(3)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(postgres_apply_transaction_per_1000)
    ->Name("postgres_apply/transaction_per_1000")
    ->UseManualTime()
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
