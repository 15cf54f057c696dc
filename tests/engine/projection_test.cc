#include "annal/engine/projection.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "annal/base/wall_clock.h"
#include "annal/snapshots/snapshot_format.h"
#include "annal/snapshots/snapshot_store.h"
#include "counter_projection.h"
#include "engine_fixture.h"
#include "fault_backend.h"
#include "stop_latch.h"
#include "eventually.h"
#include "watchdog.h"

namespace annal::engine::test {
namespace {

using namespace std::chrono_literals;

class ProjectionTest : public EngineTest {
 protected:
  // Appends `count` events round robin over 5 streams; returns the last receipt.
  Receipt append_many(int count, const std::string& prefix = "p") {
    Receipt last;
    for (int i = 0; i < count; ++i) last = append_text(prefix + std::to_string(i % 5), "x");
    return last;
  }
  // What a from-scratch replay of the whole log gives (schema 0: never restored).
  Counter replayed(std::uint64_t up_to) {
    auto fresh = std::make_shared<Counter>(0);
    EXPECT_TRUE(engine_->add_projection("replay" + std::to_string(replays_++), fresh, {}).ok());
    const auto total = query<Counter>(*engine_, "replay" + std::to_string(replays_ - 1), up_to,
                                      [](const Counter& c) { return c; }, 30s);
    EXPECT_TRUE(total.ok()) << total.status().to_string();
    return total.ok() ? total.value() : Counter();
  }
  int replays_ = 0;
};

TEST_F(ProjectionTest, AQueryAfterAnAppendSeesTheAppend) {
  annal::test::Watchdog watchdog("read your writes");
  ASSERT_TRUE(engine_->add_projection("counter", std::make_shared<Counter>(), {}).ok());
  for (int i = 0; i < 200; ++i) {
    const Receipt receipt = append_text("order-" + std::to_string(i % 7), "x");
    const auto seen = query<Counter>(*engine_, "counter", receipt.last_sequence,
                                     [&](const Counter& c) { return c.per_stream.at(receipt.stream_id); }, 30s);
    ASSERT_TRUE(seen.ok()) << seen.status().to_string();
    ASSERT_EQ(seen.value(), receipt.last_version + 1);
  }
}

TEST_F(ProjectionTest, QueriesTimeOutOrNameWhatIsWrong) {
  ASSERT_TRUE(engine_->add_projection("counter", std::make_shared<Counter>(), {}).ok());
  const Receipt receipt = append_text("s", "x");
  bool ran = false;
  const Status late = engine_->query("counter", receipt.last_sequence + 1000, [&](const Projection&) { ran = true; }, 30ms);
  EXPECT_EQ(late.code(), ErrorCode::timed_out);
  EXPECT_NE(late.message().find("not yet"), std::string::npos) << late.message();
  EXPECT_FALSE(ran);
  EXPECT_EQ(engine_->query("nothing", 0, [](const Projection&) {}, 30ms).code(), ErrorCode::not_found);
  EXPECT_EQ(engine_->add_projection("counter", std::make_shared<Counter>(), {}).code(), ErrorCode::invalid_argument);
  EXPECT_EQ(engine_->add_projection("bad name", std::make_shared<Counter>(), {}).code(), ErrorCode::invalid_argument);
}

TEST_F(ProjectionTest, ConcurrentAppendsAndQueriesAgreeWithAReplay) {
  annal::test::Watchdog watchdog("concurrent projection");
  ASSERT_TRUE(engine_->add_projection("counter", std::make_shared<Counter>(), {.snapshot_every_events = 97}).ok());
  std::vector<std::thread> writers;
  std::vector<Receipt> last(3);
  for (int t = 0; t < 3; ++t) writers.emplace_back([&, t] { last[t] = append_many(300, "w" + std::to_string(t) + "-"); });
  for (int i = 0; i < 50; ++i) {
    (void)engine_->query("counter", 0, [](const Projection&) {}, 30s);  // queries beside the applies
  }
  for (auto& writer : writers) writer.join();
  const std::uint64_t end = engine_->last_sequence();
  const auto live = query<Counter>(*engine_, "counter", end, [](const Counter& c) { return c; }, 30s);
  ASSERT_TRUE(live.ok()) << live.status().to_string();
  EXPECT_EQ(live.value().total, 900u);
  const Counter fresh = replayed(end);
  EXPECT_EQ(live.value().digest, fresh.digest);
  EXPECT_EQ(live.value().per_stream, fresh.per_stream);
}

TEST_F(ProjectionTest, ReopeningRestoresTheNewestSnapshotAndReplaysOnlyTheRest) {
  annal::test::Watchdog watchdog("snapshot restore");
  const ProjectionOptions options{.snapshot_every_events = 100, .snapshot_every = 0ms, .snapshots_kept = 2};
  ASSERT_TRUE(engine_->add_projection("counter", std::make_shared<Counter>(), options).ok());
  const Receipt last = append_many(1050);
  ASSERT_TRUE(engine_->query("counter", last.last_sequence, [](const Projection&) {}, 30s).ok());
  ASSERT_TRUE(engine_->close().ok());
  open();
  ASSERT_TRUE(engine_->add_projection("counter", std::make_shared<Counter>(), options).ok());
  const auto status = engine_->projection_status("counter");
  ASSERT_TRUE(status.ok());
  EXPECT_GT(status.value().restored_from, 0u);
  const auto restored = query<Counter>(*engine_, "counter", last.last_sequence, [](const Counter& c) { return c; }, 30s);
  ASSERT_TRUE(restored.ok());
  const auto after = engine_->projection_status("counter").value();
  // At most one snapshot interval (100 events) plus the name records among them was replayed.
  EXPECT_LE(after.replayed, 100u) << "restored from " << after.restored_from;
  const Counter fresh = replayed(last.last_sequence);
  EXPECT_EQ(restored.value().total, 1050u);
  EXPECT_EQ(restored.value().digest, fresh.digest);
  EXPECT_EQ(restored.value().per_stream, fresh.per_stream);
}

TEST_F(ProjectionTest, ANewSchemaOrADamagedSnapshotFallsBackWithoutLosingAnEvent) {
  annal::test::Watchdog watchdog("snapshot fallbacks");
  const ProjectionOptions options{.snapshot_every_events = 100, .snapshot_every = 0ms, .snapshots_kept = 5};
  ASSERT_TRUE(engine_->add_projection("counter", std::make_shared<Counter>(), options).ok());
  // Two snapshots at least: the writer keeps only the newest of those it has not written yet, so
  // wait for the first before making the second.
  const auto written_at_least = [&](std::uint64_t count) {
    for (int wait = 0; wait < 3000; ++wait) {
      if (engine_->projection_status("counter").value().snapshots_written >= count) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  };
  append_many(250);
  ASSERT_TRUE(written_at_least(1));
  const Receipt last = append_many(200);
  ASSERT_TRUE(engine_->query("counter", last.last_sequence, [](const Projection&) {}, 30s).ok());
  ASSERT_TRUE(written_at_least(2));
  ASSERT_TRUE(engine_->close().ok());
  // Damage the newest snapshot's state: the next one down is used.
  std::vector<std::string> snapshots;
  for (const auto& entry : std::filesystem::directory_iterator(dir_.path())) {
    const std::string file = entry.path().filename().string();
    if (snapshots::parse_snapshot_file_name(file, "counter")) snapshots.push_back(file);
  }
  std::sort(snapshots.begin(), snapshots.end());
  ASSERT_GE(snapshots.size(), 2u);
  {
    std::fstream f(dir_.path() + "/" + snapshots.back(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-1, std::ios::end);
    f.put('\x7f');
  }
  open();
  ASSERT_TRUE(engine_->add_projection("counter", std::make_shared<Counter>(), options).ok());
  const auto older = engine_->projection_status("counter").value();
  EXPECT_EQ(older.restored_from, *snapshots::parse_snapshot_file_name(snapshots[snapshots.size() - 2], "counter"));
  const auto restored = query<Counter>(*engine_, "counter", last.last_sequence, [](const Counter& c) { return c; }, 30s);
  ASSERT_TRUE(restored.ok());
  EXPECT_EQ(restored.value().total, 450u);
  ASSERT_TRUE(engine_->close().ok());
  // A new schema: nothing restored, everything replayed.
  open();
  ASSERT_TRUE(engine_->add_projection("counter", std::make_shared<Counter>(2), options).ok());
  const auto rebuilt = query<Counter>(*engine_, "counter", last.last_sequence, [](const Counter& c) { return c; }, 30s);
  ASSERT_TRUE(rebuilt.ok());
  EXPECT_EQ(rebuilt.value().total, 450u);
  EXPECT_EQ(engine_->projection_status("counter").value().restored_from, 0u);
}

// The Counter a replay of every event in [1, to] gives, read straight from the log.
Counter counted(Engine& engine, std::uint64_t to) {
  Counter out(0);
  const auto events = engine.read_all(1, SIZE_MAX);
  EXPECT_TRUE(events.ok());
  for (const Event& event : events.value()) {
    if (event.header.sequence <= to) out.apply(EventView{.header = event.header, .payload = event.payload});
  }
  return out;
}

std::vector<std::string> snapshot_files(const std::string& directory, std::string_view name) {
  std::vector<std::string> out;
  for (const auto& entry : std::filesystem::directory_iterator(directory)) {
    const std::string file = entry.path().filename().string();
    if (snapshots::parse_snapshot_file_name(file, name)) out.push_back(file);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// An eager projection joins the ring once the journal holds durably what came before the ring's
// cursor; these tests hold durability back, so they let it join before they append.
bool wait_until_live(Engine& engine, std::string_view projection) {
  return annal::test::eventually([&] { return engine.projection_status(projection).value().live; });
}

// Records each batch's end and checks it follows the last event applied.
struct Batches final : Projection {
  std::uint64_t last = 0;
  std::uint64_t batches = 0;
  std::uint64_t ended_at = 0;
  bool out_of_place = false;
  void apply(const EventView& event) override { last = event.header.sequence; }
  void end_of_batch(std::uint64_t applied) override {
    out_of_place |= applied < last;
    ++batches;
    ended_at = applied;
  }
};

TEST_F(ProjectionTest, EveryBatchEndsWithEndOfBatch) {
  annal::test::Watchdog watchdog("end of batch");
  auto batches = std::make_shared<Batches>();
  ASSERT_TRUE(engine_->add_projection("batches", batches, {}).ok());
  const Receipt last = append_many(300);
  ASSERT_TRUE(engine_->wait_durable(last, soon()).ok());
  // The batch holding the last event ends once the projection finds nothing more to apply.
  EXPECT_TRUE(annal::test::eventually([&] {
    bool ended = false;
    EXPECT_TRUE(engine_->query("batches", last.last_sequence, [&](const Projection&) {
      ended = batches->ended_at == last.last_sequence;
    }, 30s).ok());
    return ended;
  }));
  EXPECT_FALSE(batches->out_of_place);
  EXPECT_GE(batches->batches, 1u);
}

// State kept outside the engine (a database with its checkpoint) resumes where that store says:
// no snapshot, no replay of what it holds, nothing after it missed.
class KeepsItsOwnState final : public Projection {
 public:
  explicit KeepsItsOwnState(Result<std::optional<std::uint64_t>> resume) : resume_(std::move(resume)) {}
  void apply(const EventView& event) override { seen.push_back(event.header.sequence); }
  Result<std::optional<std::uint64_t>> resume_after() override { return resume_; }
  std::vector<std::uint64_t> seen;  // the projection thread's

 private:
  Result<std::optional<std::uint64_t>> resume_;
};

TEST_F(ProjectionTest, AProjectionThatKeepsItsOwnStateResumesAfterItsCheckpoint) {
  annal::test::Watchdog watchdog("resume after");
  std::vector<std::uint64_t> sequences;
  Receipt last;
  for (int i = 0; i < 50; ++i) {
    last = append_text("s" + std::to_string(i % 3), "x");
    sequences.push_back(last.last_sequence);
  }
  ASSERT_TRUE(engine_->wait_durable(last, soon()).ok());
  const std::uint64_t checkpoint = sequences[19];
  auto resumed = std::make_shared<KeepsItsOwnState>(std::optional<std::uint64_t>(checkpoint));
  ASSERT_TRUE(engine_->add_projection("resumed", resumed, {}).ok());
  const auto seen = query<KeepsItsOwnState>(*engine_, "resumed", sequences.back(),
                                            [](const KeepsItsOwnState& p) { return p.seen; }, 30s);
  ASSERT_TRUE(seen.ok()) << seen.status().to_string();
  // Events only: the engine's own records (names) between them are not shown to projections.
  EXPECT_EQ(seen.value(), std::vector<std::uint64_t>(sequences.begin() + 20, sequences.end()));
  EXPECT_EQ(engine_->projection_status("resumed").value().restored_from, checkpoint);

  // A store that cannot say, or says what this log cannot hold, is refused with its reason.
  const Status unreachable = engine_->add_projection(
      "unreachable", std::make_shared<KeepsItsOwnState>(Status(ErrorCode::io_error, "connection refused")), {});
  EXPECT_EQ(unreachable.code(), ErrorCode::io_error);
  EXPECT_NE(unreachable.message().find("connection refused"), std::string::npos) << unreachable.message();
  const Status ahead = engine_->add_projection(
      "ahead", std::make_shared<KeepsItsOwnState>(std::optional<std::uint64_t>(engine_->durable_sequence() + 1)), {});
  EXPECT_EQ(ahead.code(), ErrorCode::invalid_argument);
  EXPECT_NE(ahead.message().find("belongs to another store"), std::string::npos) << ahead.message();
  const Status eager = engine_->add_projection("eager", std::make_shared<KeepsItsOwnState>(std::optional<std::uint64_t>(0)),
                                               {.gating = Gating::eager});
  EXPECT_EQ(eager.code(), ErrorCode::invalid_argument);
  // The names stay free: nothing half-added.
  EXPECT_TRUE(engine_->add_projection("unreachable", std::make_shared<KeepsItsOwnState>(std::optional<std::uint64_t>(0)), {}).ok());
}

// A projection that waits on something outside (a database that is down) until told to stop.
class WaitsUntilStopped final : public Projection {
 public:
  void apply(const EventView&) override { latch.wait_for_release(); }
  void stop_requested() override { latch.release(); }
  annal::test::StopLatch latch;
};

TEST_F(ProjectionTest, CloseTellsAProjectionThatWaitsOutsideToStop) {
  annal::test::Watchdog watchdog("stop_requested");
  auto waits = std::make_shared<WaitsUntilStopped>();
  ASSERT_TRUE(engine_->add_projection("waits", waits, {}).ok());
  const Receipt receipt = append_text("s", "x");
  ASSERT_TRUE(engine_->wait_durable(receipt, soon()).ok());
  ASSERT_TRUE(waits->latch.wait_until_waiting());
  // Returns once the projection's thread has ended: it would wait for ever without the call.
  EXPECT_TRUE(engine_->close().ok());
  engine_.reset();
}

// A Counter that counts only in end_of_batch(): apply() buffers, as a projection that writes in
// batches does. With `block_at`, its block_at-th event waits until the engine asks it to stop.
class Buffered final : public Projection {
 public:
  explicit Buffered(std::uint64_t block_at = 0) : block_at_(block_at) {}
  void apply(const EventView& event) override {
    pending_.push_back(event.header);
    if (++seen == block_at_) latch.wait_for_release();
  }
  void end_of_batch(std::uint64_t) override {
    for (const EventHeader& header : pending_) counter.apply(EventView{header, {}});
    pending_.clear();
  }
  void stop_requested() override { latch.release(); }
  [[nodiscard]] std::uint32_t schema() const override { return counter.schema(); }
  [[nodiscard]] std::vector<std::byte> snapshot() const override { return counter.snapshot(); }
  Status restore(std::span<const std::byte> state) override { return counter.restore(state); }

  Counter counter;
  std::uint64_t seen = 0;  // events applied, buffered or counted
  annal::test::StopLatch latch;

 private:
  const std::uint64_t block_at_;
  std::vector<EventHeader> pending_;
};

// Closed in the middle of a batch, a projection that buffers has its batch ended before the last
// snapshot: reopened from it, its state holds every event, none twice.
TEST_F(ProjectionTest, ClosingMidBatchEndsTheBatchBeforeTheLastSnapshot) {
  annal::test::Watchdog watchdog("closing mid-batch");
  const Receipt last = append_many(300);
  ASSERT_TRUE(engine_->wait_durable(last, soon()).ok());
  auto blocked = std::make_shared<Buffered>(50);
  ASSERT_TRUE(engine_->add_projection("buffered", blocked, {}).ok());
  ASSERT_TRUE(blocked->latch.wait_until_waiting());
  ASSERT_TRUE(engine_->close().ok());
  open();
  auto buffered = std::make_shared<Buffered>();
  ASSERT_TRUE(engine_->add_projection("buffered", buffered, {}).ok());
  EXPECT_GT(engine_->projection_status("buffered").value().restored_from, 0u);  // the last snapshot
  const auto state = query<Buffered>(*engine_, "buffered", last.last_sequence,
                                     [](const Buffered& b) { return b.counter; }, 30s);
  ASSERT_TRUE(state.ok()) << state.status().to_string();
  const Counter replay = replayed(last.last_sequence);
  EXPECT_EQ(state.value().total, replay.total);
  EXPECT_EQ(state.value().digest, replay.digest);
}

// A query runs once the projection has applied the sequence asked for, and sees that state: the
// batch is ended first, or a projection that buffers would answer without its last events.
TEST_F(ProjectionTest, AQueryMidBatchSeesTheBatchEnded) {
  annal::test::Watchdog watchdog("a query mid-batch");
  auto buffered = std::make_shared<Buffered>();
  ASSERT_TRUE(engine_->add_projection("buffered", buffered, {}).ok());
  const std::vector<std::byte> payload = bytes_of("x");
  const std::vector<EventData> events(100, EventData{.type = "Noted", .payload = payload});
  std::atomic<bool> asking{false};
  Status queried;
  std::uint64_t counted = 0;
  std::uint64_t seen = 0;
  // Asked before the events come, so that it is answered right after the last one is applied,
  // with the batch (one append: the events arrive together) still open.
  std::thread asker([&] {
    asking = true;
    queried = engine_->query("buffered", 100, [&](const Projection&) {
      counted = buffered->counter.total;
      seen = buffered->seen;
    }, 60s);
  });
  ASSERT_TRUE(annal::test::eventually([&] { return asking.load(); }));
  const auto appended = engine_->append("s", ExpectedVersion::any(), events);
  EXPECT_TRUE(appended.ok()) << appended.status().to_string();
  asker.join();
  ASSERT_TRUE(queried.ok()) << queried.to_string();
  EXPECT_GT(seen, 0u);
  EXPECT_EQ(counted, seen);
}

TEST_F(ProjectionTest, AnEagerProjectionSeesEventsBeforeTheyAreDurable) {
  annal::test::Watchdog watchdog("eager gating");
  Options options = small_options();
  options.journal.durability = journal::Durability::interval;
  options.journal.sync_interval = std::chrono::hours(1);  // nothing is made durable until close
  open(options);
  ASSERT_TRUE(engine_->add_projection("eager", std::make_shared<Counter>(), {.gating = Gating::eager}).ok());
  ASSERT_TRUE(engine_->add_projection("durable", std::make_shared<Counter>(), {}).ok());
  ASSERT_TRUE(wait_until_live(*engine_, "eager"));
  const std::uint64_t durable = engine_->durable_sequence();
  const Receipt last = append_many(50);
  ASSERT_GT(last.last_sequence, durable);
  const auto eager = query<Counter>(*engine_, "eager", last.last_sequence, [](const Counter& c) { return c.total; }, 30s);
  ASSERT_TRUE(eager.ok()) << eager.status().to_string();
  EXPECT_EQ(eager.value(), 50u);
  EXPECT_EQ(engine_->query("durable", last.last_sequence, [](const Projection&) {}, 50ms).code(), ErrorCode::timed_out);
  EXPECT_LE(engine_->projection_status("durable").value().applied, engine_->durable_sequence());
}

// An eager projection's snapshots may run ahead of the durable log. After a power cut they are
// discarded, the projection comes back at the durable point, and a sequence reused by new events
// is never mistaken for the old snapshot's.
TEST(ProjectionFaults, AnEagerProjectionIsRebuiltToTheDurablePointAfterACrash) {
  annal::test::Watchdog watchdog("eager after a crash");
  Options options = small_options();
  options.journal.durability = journal::Durability::interval;
  options.journal.sync_interval = std::chrono::hours(1);
  options.state_snapshot_every_events = 40;
  const ProjectionOptions eager{.snapshot_every_events = 20, .snapshot_every = 0ms, .snapshots_kept = 3,
                                .gating = Gating::eager};
  // A power cut keeps an arbitrary part of the unsynced writes: until one keeps too little for the
  // newest snapshot, there is nothing to discard (each seed loses something with odds about 3 in 4).
  std::shared_ptr<journal::FaultBackend> io;
  std::uint64_t recovered = 0;
  std::unique_ptr<Engine> engine;
  for (std::uint64_t seed = 1; seed <= 12 && !engine; ++seed) {
    io = std::make_shared<journal::FaultBackend>(seed);
    std::uint64_t durable = 0, snapshot_ahead = 0;
    {
      auto crashing = Engine::open("/eager", options, io);
      ASSERT_TRUE(crashing.ok());
      ASSERT_TRUE(crashing.value()->add_projection("counter", std::make_shared<Counter>(), eager).ok());
      ASSERT_TRUE(wait_until_live(*crashing.value(), "counter"));
      durable = crashing.value()->durable_sequence();
      for (int i = 0; i < 130; ++i) {
        const EventData event{.type = "Noted", .payload = {}};
        ASSERT_TRUE(crashing.value()->append("s" + std::to_string(i % 3), ExpectedVersion::any(), {&event, 1}).ok());
      }
      (void)annal::test::eventually([&] {
        const auto files = io->list("/eager");
        for (const auto& file : files.value()) {
          if (const auto at = snapshots::parse_snapshot_file_name(file, "counter")) snapshot_ahead = std::max(snapshot_ahead, *at);
        }
        return snapshot_ahead >= 100;
      });
      ASSERT_GT(snapshot_ahead, durable) << "no snapshot ahead of the durable log";
      io->crash();
    }
    io->revive();
    auto opened = Engine::open("/eager", options, io);
    ASSERT_TRUE(opened.ok()) << opened.status().to_string();
    recovered = opened.value()->last_sequence();
    ASSERT_GE(recovered, durable);
    if (snapshot_ahead > recovered) engine = std::move(opened.value());
  }
  ASSERT_TRUE(engine) << "every power cut kept every write: nothing was discarded";
  const auto files = io->list("/eager");
  for (const auto& file : files.value()) {
    const auto parsed = snapshots::parse_snapshot_file_name(file);
    if (parsed) {
      EXPECT_LE(parsed->sequence, recovered) << file << " should have been discarded";
    }
  }
  // New events take the sequences the lost ones had; the state must hold only these.
  Receipt last;
  for (int i = 0; i < 200; ++i) {
    const EventData event{.type = "Other", .payload = {}};
    last = engine->append("u" + std::to_string(i % 5), ExpectedVersion::any(), {&event, 1}).value();
  }
  ASSERT_TRUE(engine->close().ok());
  auto reopened = Engine::open("/eager", options, io);
  ASSERT_TRUE(reopened.ok());
  ASSERT_TRUE(reopened.value()->add_projection("counter", std::make_shared<Counter>(), eager).ok());
  const auto state = query<Counter>(*reopened.value(), "counter", last.last_sequence, [](const Counter& c) { return c; }, 30s);
  ASSERT_TRUE(state.ok()) << state.status().to_string();
  const Counter expected = counted(*reopened.value(), last.last_sequence);
  EXPECT_EQ(state.value().total, expected.total);
  EXPECT_EQ(state.value().digest, expected.digest);
  EXPECT_EQ(state.value().per_stream, expected.per_stream);
}

TEST_F(ProjectionTest, SnapshotsPastTheRecoveredLogAreDiscardedAtOpen) {
  const Receipt first = append_many(10);
  ASSERT_TRUE(engine_->close().ok());
  snapshots::SnapshotStore store(dir_.path(), journal::make_posix_backend(), 3);
  const Counter bogus;
  ASSERT_TRUE(store.write("counter", 1, first.last_sequence + 100, bogus.snapshot()).ok());
  ASSERT_TRUE(store.write("counter", 1, first.last_sequence, bogus.snapshot()).ok());
  open();
  EXPECT_EQ(snapshot_files(dir_.path(), "counter"),
            std::vector<std::string>{snapshots::snapshot_file_name("counter", first.last_sequence)});
}

// A projection that falls behind leaves the ring, so appends go on, and catches up from the
// journal without a gap or a duplicate (the Counter's digest folds in every sequence, in order).
TEST_F(ProjectionTest, ASlowProjectionDetachesCatchesUpAndRejoinsWithoutGapOrDuplicate) {
  annal::test::Watchdog watchdog("detach and rejoin");
  Options options = small_options();
  options.events_per_append_max = 8;
  options.ring_capacity = 64;
  options.subscriber_lag_max = 16;
  open(options);
  // Stuck inside its 40th event until the test lets it go; slow now and then afterwards.
  struct Slow final : Projection {
    Counter counter{1};
    std::atomic<bool> stuck{false}, released{false};
    void apply(const EventView& event) override {
      counter.apply(event);
      if (counter.total == 40) {
        stuck = true;
        for (int wait = 0; wait < 30'000 && !released; ++wait) std::this_thread::sleep_for(1ms);
      } else if (counter.total % 40 == 0) {
        std::this_thread::sleep_for(5ms);
      }
    }
    std::uint32_t schema() const override { return 1; }
    std::vector<std::byte> snapshot() const override { return counter.snapshot(); }
  };
  auto slow = std::make_shared<Slow>();
  ASSERT_TRUE(engine_->add_projection("slow", slow, {}).ok());
  ASSERT_TRUE(wait_until_live(*engine_, "slow"));
  auto subscription = engine_->subscribe(1);
  ASSERT_TRUE(subscription.ok());
  ASSERT_EQ(subscription.value()->next(Engine::Clock::now() + 20ms).code(), ErrorCode::timed_out);  // caught up: joins
  ASSERT_TRUE(subscription.value()->live());
  std::vector<std::uint64_t> seen;  // what the subscription returned, in order
  const auto read = [&](std::size_t count) {
    for (std::size_t i = 0; i < count; ++i) {
      const auto event = subscription.value()->next(soon());
      ASSERT_TRUE(event.ok()) << event.status().to_string();
      seen.push_back(event.value().header.sequence);
    }
  };

  // Both fall 30 events behind (more than subscriber_lag_max, less than the ring): each leaves
  // the ring at its next read, so appends are not held back, and catches up from the journal.
  append_many(40);
  read(40);
  for (int wait = 0; wait < 30'000 && !slow->stuck; ++wait) std::this_thread::sleep_for(1ms);
  ASSERT_TRUE(slow->stuck);
  const Receipt behind = append_many(30, "b");
  ASSERT_TRUE(engine_->wait_durable(behind, soon()).ok());
  slow->released = true;
  read(30);
  EXPECT_GE(subscription.value()->detached(), 1u);
  ASSERT_TRUE(engine_->query("slow", behind.last_sequence, [](const Projection&) {}, 30s).ok());
  EXPECT_GE(engine_->projection_status("slow").value().detached, 1u);

  // Then under load from three threads, read slowly now and then.
  std::vector<std::thread> writers;
  for (int t = 0; t < 3; ++t) writers.emplace_back([&, t] { append_many(400, "w" + std::to_string(t) + "-"); });
  for (int chunk = 0; chunk < 12; ++chunk) {
    read(100);
    std::this_thread::sleep_for(10ms);
  }
  for (auto& writer : writers) writer.join();
  // No gap, no duplicate: exactly the log's events, in order.
  const auto all = engine_->read_all(1, SIZE_MAX);
  ASSERT_TRUE(all.ok());
  std::vector<std::uint64_t> logged;
  for (const Event& event : all.value()) logged.push_back(event.header.sequence);
  EXPECT_EQ(seen, logged);
  const std::uint64_t end = engine_->last_sequence();
  const auto live = query<Slow>(*engine_, "slow", end, [](const Slow& s) { return s.counter; }, 60s);
  ASSERT_TRUE(live.ok()) << live.status().to_string();
  EXPECT_EQ(live.value().total, 1270u);
  EXPECT_EQ(live.value().digest, counted(*engine_, end).digest);
  subscription.value().reset();  // unread from here on, it would hold appends back
  // Caught up, it rejoins the ring.
  EXPECT_TRUE(annal::test::eventually([&] {
    if (engine_->projection_status("slow").value().live) return true;
    append_many(1, "z");
    return false;
  }));
}

TEST_F(ProjectionTest, BuildsAStateAsOfASequenceOrATimeWithoutTouchingTheLiveOne) {
  annal::test::Watchdog watchdog("point in time");
  const ProjectionOptions options{.snapshot_every_events = 100, .snapshot_every = 0ms, .snapshots_kept = 20};
  ASSERT_TRUE(engine_->add_projection("counter", std::make_shared<Counter>(), options).ok());
  const Receipt half = append_many(500);
  std::this_thread::sleep_for(5ms);
  const std::uint64_t between = wall_clock_ns();
  std::this_thread::sleep_for(5ms);
  const Receipt last = append_many(500, "q");
  ASSERT_TRUE(engine_->wait_durable(last, soon()).ok());
  ASSERT_TRUE(engine_->query("counter", last.last_sequence, [](const Projection&) {}, 30s).ok());
  for (const std::uint64_t at : {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{57}, half.last_sequence,
                                 half.last_sequence + 333, last.last_sequence}) {
    Counter built;
    const auto built_at = engine_->build_as_of("counter", built, AsOf::sequence(at));
    ASSERT_TRUE(built_at.ok()) << built_at.status().to_string();
    EXPECT_EQ(built_at.value(), at);
    const Counter expected = counted(*engine_, at);
    EXPECT_EQ(built.total, expected.total) << "as of " << at;
    EXPECT_EQ(built.digest, expected.digest) << "as of " << at;
    EXPECT_EQ(built.per_stream, expected.per_stream) << "as of " << at;
  }
  Counter by_time;
  const auto at_time = engine_->build_as_of("counter", by_time, AsOf::time_ns(between));
  ASSERT_TRUE(at_time.ok()) << at_time.status().to_string();
  EXPECT_EQ(at_time.value(), half.last_sequence);
  EXPECT_EQ(by_time.total, 500u);
  Counter none;
  EXPECT_EQ(engine_->build_as_of("counter", none, AsOf::time_ns(1)).value(), 0u);
  EXPECT_EQ(none.total, 0u);
  Counter future;
  EXPECT_EQ(engine_->build_as_of("counter", future, AsOf::sequence(last.last_sequence + 10)).code(),
            ErrorCode::invalid_argument);
  const auto live = query<Counter>(*engine_, "counter", last.last_sequence, [](const Counter& c) { return c.total; }, 30s);
  EXPECT_EQ(live.value(), 1000u);
}

TEST_F(ProjectionTest, TheConsistencyCheckComparesTheLiveStateWithARebuild) {
  annal::test::Watchdog watchdog("consistency check");
  ASSERT_TRUE(engine_->add_projection("counter", std::make_shared<Counter>(), {}).ok());
  // A projection that drops an event while live but not when rebuilt: a bug the check must find.
  struct Forgetful final : Projection {
    explicit Forgetful(bool is_live) : live(is_live) {}
    bool live;
    Counter counter{1};
    void apply(const EventView& event) override {
      if (!(live && event.header.version == 3)) counter.apply(event);
    }
    std::uint32_t schema() const override { return 1; }
    std::vector<std::byte> snapshot() const override { return counter.snapshot(); }
  };
  ASSERT_TRUE(engine_->add_projection("forgetful", std::make_shared<Forgetful>(true), {}).ok());
  ASSERT_TRUE(engine_->add_projection("plain", std::make_shared<Batches>(), {}).ok());
  const Receipt last = append_many(100);
  ASSERT_TRUE(engine_->query("counter", last.last_sequence, [](const Projection&) {}, 30s).ok());
  Counter fresh;
  const auto good = engine_->check_projection("counter", fresh, 30s);
  ASSERT_TRUE(good.ok()) << good.status().to_string();
  EXPECT_TRUE(good.value().consistent());
  EXPECT_GE(good.value().sequence, last.last_sequence);
  EXPECT_EQ(fresh.total, 100u);
  ASSERT_TRUE(engine_->query("forgetful", last.last_sequence, [](const Projection&) {}, 30s).ok());
  Forgetful rebuilt(false);
  const auto bad = engine_->check_projection("forgetful", rebuilt, 30s);
  ASSERT_TRUE(bad.ok());
  EXPECT_FALSE(bad.value().consistent());
  Batches no_digest;
  EXPECT_EQ(engine_->check_projection("plain", no_digest, 30s).code(), ErrorCode::invalid_argument);
  EXPECT_EQ(engine_->check_projection("nothing", fresh, 30s).code(), ErrorCode::not_found);
}

std::size_t segment_count(const std::string& directory) {
  std::size_t out = 0;
  for (const auto& entry : std::filesystem::directory_iterator(directory)) out += entry.path().extension() == ".log";
  return out;
}

TEST_F(ProjectionTest, RetentionRemovesOnlyWhatNoRecoveryNeeds) {
  annal::test::Watchdog watchdog("retention");
  Options options = small_options();
  options.state_snapshot_every_events = 200;
  open(options);
  const ProjectionOptions snapshotted{.snapshot_every_events = 200, .snapshot_every = 0ms, .snapshots_kept = 2};
  ASSERT_TRUE(engine_->add_projection("counter", std::make_shared<Counter>(), snapshotted).ok());
  ASSERT_TRUE(engine_->add_projection("unsnapshotted", std::make_shared<Counter>(0), {}).ok());
  const auto payload = std::string(400, 'x');
  Receipt last;
  for (int i = 0; i < 2000; ++i) last = append_text("s" + std::to_string(i % 5), payload);
  ASSERT_TRUE(engine_->query("counter", last.last_sequence, [](const Projection&) {}, 30s).ok());
  ASSERT_TRUE(engine_->query("unsnapshotted", last.last_sequence, [](const Projection&) {}, 30s).ok());
  const std::size_t segments = segment_count(dir_.path());
  ASSERT_GT(segments, 5u);
  // A projection without snapshots needs the whole log.
  const auto kept_all = engine_->trim_journal();
  ASSERT_TRUE(kept_all.ok());
  EXPECT_EQ(kept_all.value(), 1u);
  EXPECT_EQ(segment_count(dir_.path()), segments);
  ASSERT_TRUE(engine_->close().ok());

  open(options);
  ASSERT_TRUE(engine_->add_projection("counter", std::make_shared<Counter>(), snapshotted).ok());
  ASSERT_TRUE(engine_->query("counter", last.last_sequence, [](const Projection&) {}, 30s).ok());
  // Let the snapshot writer finish whatever it has, so the files are what recovery will see.
  const auto cut = engine_->trim_journal();
  ASSERT_TRUE(cut.ok()) << cut.status().to_string();
  EXPECT_GT(cut.value(), 1u);
  EXPECT_LT(segment_count(dir_.path()), segments);
  const auto oldest_counter = snapshot_files(dir_.path(), "counter");
  ASSERT_FALSE(oldest_counter.empty());
  EXPECT_LE(cut.value(), *snapshots::parse_snapshot_file_name(oldest_counter.front(), "counter") + 1);
  const auto more_payload = std::string(10, 'y');
  const Receipt after = append_text("s1", more_payload);
  ASSERT_TRUE(engine_->close().ok());

  // Recovery still has all it needs: the engine's state and the projection's, plus the tail.
  open(options);
  EXPECT_EQ(engine_->stream_version("s1"), after.last_version);
  EXPECT_EQ(texts("s1", {.from_version = after.last_version}), std::vector<std::string>{more_payload});
  ASSERT_TRUE(engine_->add_projection("counter", std::make_shared<Counter>(), snapshotted).ok());
  const auto total = query<Counter>(*engine_, "counter", after.last_sequence, [](const Counter& c) { return c.total; }, 30s);
  ASSERT_TRUE(total.ok()) << total.status().to_string();
  EXPECT_EQ(total.value(), 2001u);
  // But what lay before the cut is gone: a projection needing the start, a full stream read.
  EXPECT_EQ(engine_->read_stream("s1", {}, soon()).code(), ErrorCode::not_found);
  EXPECT_EQ(engine_->add_projection("latecomer", std::make_shared<Counter>(0), {}).code(), ErrorCode::not_found);
}

}  // namespace
}  // namespace annal::engine::test
