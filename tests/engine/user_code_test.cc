// User code the engine calls (durability callbacks, projections' apply/snapshot/restore, query
// functions) must not be able to hang or kill it: a body that appends, waits or throws. Each
// deadlock scenario runs under a watchdog and waits for its outcome with a generous deadline, so
// the old behaviour shows as a failure, never as a hung run.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <future>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <tuple>

#include "counter_projection.h"
#include "engine_fixture.h"
#include "eventually.h"
#include "heap.h"
#include "watchdog.h"

namespace annal::engine::test {
namespace {

using namespace std::chrono_literals;
using annal::test::eventually;

// A ring of 64 slots fills after a few dozen appends, which is what the deadlocks need.
Options tiny_ring_options() {
  Options options = small_options();
  options.ring_capacity = 64;
  options.events_per_append_max = 16;
  return options;
}

// Reads a subscription from the start on a thread of its own until told to stop, counting events.
class Reader {
 public:
  explicit Reader(Engine& engine) : subscription_(engine.subscribe(1).value()) {
    thread_ = std::thread([this] {
      while (!stop_.load()) {
        auto event = subscription_->next(Engine::Clock::now() + 20ms);
        if (event.ok()) {
          read_.fetch_add(1);
        } else if (event.code() != ErrorCode::timed_out) {
          break;
        }
        live_.store(subscription_->live());
      }
    });
  }
  ~Reader() {
    stop_.store(true);
    thread_.join();
  }
  [[nodiscard]] std::uint64_t read() const { return read_.load(); }
  [[nodiscard]] bool live() const { return live_.load(); }

 private:
  std::unique_ptr<Subscription> subscription_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> read_{0};
  std::atomic<bool> live_{false};
  std::thread thread_;
};

class UserCodeTest : public EngineTest {
 protected:
  void SetUp() override { open(tiny_ring_options()); }

  EventData event(std::string_view type, Id128 id = {}) const {
    return EventData{.type = type, .payload = std::span(payload_), .event_id = id};
  }

  const std::vector<std::byte> payload_ = bytes_of("x");
};

TEST_F(UserCodeTest, ADurabilityCallbackThatAppendsDoesNotStopLiveSubscribers) {
  annal::test::Watchdog watchdog("callback that appends");
  Reader reader(*engine_);
  ASSERT_TRUE(eventually([&] { return reader.live(); }));
  constexpr int kAppends = 300;  // several times the ring
  std::atomic<int> appended{0};
  std::atomic<bool> done{false};
  const EventData first = event("Started");
  const auto receipt = engine_->append("callback", ExpectedVersion::any(), {&first, 1});
  ASSERT_TRUE(receipt.ok());
  engine_->on_durable(receipt.value(), [&](const Status& status) {
    ASSERT_TRUE(status.ok());
    for (int i = 0; i < kAppends; ++i) {
      const EventData next = event("Appended");
      if (!engine_->append("callback", ExpectedVersion::any(), {&next, 1}).ok()) break;
      appended.fetch_add(1);
    }
    done.store(true);
  });
  EXPECT_TRUE(eventually([&] { return done.load(); })) << "the callback appended " << appended.load();
  EXPECT_TRUE(eventually([&] { return reader.read() == kAppends + 1u; }))
      << "read " << reader.read() << " of " << kAppends + 1 << ", durable " << engine_->durable_sequence();
  EXPECT_TRUE(engine_->close().ok());
}

TEST_F(UserCodeTest, ADurabilityCallbackMayWaitAndQuery) {
  annal::test::Watchdog watchdog("callback that waits");
  ASSERT_TRUE(engine_->add_projection("counter", std::make_shared<Counter>(), {}).ok());
  const EventData first = event("Started");
  const auto receipt = engine_->append("s", ExpectedVersion::any(), {&first, 1});
  ASSERT_TRUE(receipt.ok());
  std::promise<std::uint64_t> seen;
  engine_->on_durable(receipt.value(), [&](const Status&) {
    // The next durable sequence needs the notifier to keep going while this callback waits.
    const EventData second = event("Again");
    const auto again = engine_->append("s", ExpectedVersion::any(), {&second, 1});
    const Status durable = engine_->wait_durable(again.value(), soon());
    const auto total = query<Counter>(*engine_, "counter", again.value().last_sequence,
                                      [](const Counter& c) { return c.total; }, 30s);
    seen.set_value(durable.ok() && total.ok() ? total.value() : 0);
  });
  auto future = seen.get_future();
  ASSERT_EQ(future.wait_for(60s), std::future_status::ready);
  EXPECT_EQ(future.get(), 2u);
}

// durable_future is fulfilled where durability settles, not on the callback thread: a callback
// that waits for one (settled already, or not yet) is answered, and close() ends such a wait.
TEST_F(UserCodeTest, ACallbackMayWaitForADurableFutureAndCloseEndsSuchAWait) {
  annal::test::Watchdog watchdog("callback waiting for a durable future");
  const Receipt first = append_text("s", "x");
  ASSERT_TRUE(engine_->wait_durable(first, soon()).ok());
  std::promise<bool> answered;
  engine_->on_durable(first, [&](const Status&) {
    answered.set_value(engine_->durable_future(first).wait_for(60s) == std::future_status::ready);
  });
  auto settled = answered.get_future();
  ASSERT_EQ(settled.wait_for(90s), std::future_status::ready);
  EXPECT_TRUE(settled.get());

  std::atomic<bool> waiting{false};
  std::atomic<bool> ended{false};
  engine_->on_durable(first, [&](const Status&) {
    Receipt never = first;
    never.last_sequence += 1u << 30;  // answered only by close()
    auto future = engine_->durable_future(never);
    waiting.store(true);
    ended.store(future.wait_for(1h) == std::future_status::ready && !future.get().ok());
  });
  ASSERT_TRUE(eventually([&] { return waiting.load(); }));
  EXPECT_TRUE(engine_->close().ok());
  EXPECT_TRUE(ended.load());
}

// restore() runs outside the engine's locks: one that calls the engine neither deadlocks with it
// nor keeps close() waiting.
struct Inquisitive final : Projection {
  explicit Inquisitive(Engine* target) : engine(target) {}
  Engine* engine;
  std::atomic<bool> asked{false};
  std::uint32_t schema() const override { return 1; }
  void apply(const EventView&) override {}
  std::vector<std::byte> snapshot() const override { return std::vector<std::byte>(8, std::byte{1}); }
  Status restore(std::span<const std::byte>) override {
    if (engine != nullptr) {
      (void)engine->projection_status("other");
      (void)engine->last_sequence();
      asked.store(true);
    }
    return {};
  }
};

TEST_F(UserCodeTest, ARestoreThatCallsTheEngineDoesNotBlockIt) {
  annal::test::Watchdog watchdog("restore calling the engine");
  ASSERT_TRUE(engine_->add_projection("p", std::make_shared<Inquisitive>(nullptr), {}).ok());
  const Receipt appended = append_text("s", "x");
  ASSERT_TRUE(eventually([&] { return engine_->projection_status("p").value().applied >= appended.last_sequence; }));
  ASSERT_TRUE(engine_->close().ok());  // the last snapshot, at close
  open(tiny_ring_options());
  auto inquisitive = std::make_shared<Inquisitive>(engine_.get());
  ASSERT_TRUE(engine_->add_projection("p", inquisitive, {}).ok());
  EXPECT_TRUE(inquisitive->asked.load()) << "restore() was not called: no snapshot at close?";
  EXPECT_EQ(engine_->add_projection("p", inquisitive, {}).code(), ErrorCode::invalid_argument);  // the name holds
  EXPECT_TRUE(engine_->close().ok());
}

TEST_F(UserCodeTest, ADurabilityCallbackThatThrowsIsReportedAndTheNextOnesStillRun) {
  const EventData first = event("Started");
  const auto receipt = engine_->append("s", ExpectedVersion::any(), {&first, 1});
  ASSERT_TRUE(receipt.ok());
  engine_->on_durable(receipt.value(), [](const Status&) { throw std::runtime_error("callback failed"); });
  engine_->on_durable(receipt.value(), [](const Status&) { throw 42; });
  auto later = engine_->durable_future(append_text("s", "y"));
  ASSERT_EQ(later.wait_for(60s), std::future_status::ready);
  EXPECT_TRUE(later.get().ok());
  EXPECT_TRUE(engine_->close().ok());
}

TEST_F(UserCodeTest, AQueryThatThrowsReturnsAnErrorAndTheProjectionGoesOn) {
  ASSERT_TRUE(engine_->add_projection("counter", std::make_shared<Counter>(), {}).ok());
  const Receipt receipt = append_text("s", "x");
  const Status thrown = engine_->query("counter", receipt.last_sequence,
                                       [](const Projection&) { throw std::runtime_error("no such order"); }, 30s);
  EXPECT_EQ(thrown.code(), ErrorCode::failed);
  EXPECT_NE(thrown.message().find("no such order"), std::string::npos) << thrown.message();
  const auto typed = query<Counter>(*engine_, "counter", receipt.last_sequence,
                                    [](const Counter&) -> int { throw 7; }, 30s);
  EXPECT_EQ(typed.code(), ErrorCode::failed);
  const auto total = query<Counter>(*engine_, "counter", append_text("s", "y").last_sequence,
                                    [](const Counter& c) { return c.total; }, 30s);
  ASSERT_TRUE(total.ok()) << total.status().to_string();
  EXPECT_EQ(total.value(), 2u);
  EXPECT_TRUE(engine_->projection_status("counter").value().error.ok());
}

// A projection whose snapshot() or restore() throws: the engine carries on without that snapshot.
struct Fragile final : Projection {
  std::uint64_t total = 0;
  std::atomic<bool> throw_in_snapshot{true};
  void apply(const EventView&) override { ++total; }
  std::uint32_t schema() const override { return 1; }
  std::vector<std::byte> snapshot() const override {
    if (throw_in_snapshot) throw std::runtime_error("snapshot failed");
    return std::vector<std::byte>(8, std::byte{1});
  }
  Status restore(std::span<const std::byte>) override { throw std::runtime_error("restore failed"); }
};

TEST_F(UserCodeTest, SnapshotAndRestoreThatThrowCostOnlyTheSnapshot) {
  auto fragile = std::make_shared<Fragile>();
  ASSERT_TRUE(engine_->add_projection("fragile", fragile, {.snapshot_every_events = 2}).ok());
  Receipt last;
  for (int i = 0; i < 10; ++i) last = append_text("s", "x");
  const auto total = query<Fragile>(*engine_, "fragile", last.last_sequence, [](const Fragile& f) { return f.total; }, 30s);
  ASSERT_TRUE(total.ok()) << total.status().to_string();
  EXPECT_EQ(total.value(), 10u);
  EXPECT_EQ(engine_->projection_status("fragile").value().snapshots_written, 0u);
  fragile->throw_in_snapshot.store(false);
  for (int i = 0; i < 2; ++i) last = append_text("s", "x");
  ASSERT_TRUE(eventually([&] { return engine_->projection_status("fragile").value().snapshots_written > 0; }));
  ASSERT_TRUE(engine_->close().ok());
  open(tiny_ring_options());
  auto again = std::make_shared<Fragile>();
  ASSERT_TRUE(engine_->add_projection("fragile", again, {}).ok());  // restore throws: replays all
  const auto replayed = query<Fragile>(*engine_, "fragile", last.last_sequence, [](const Fragile& f) { return f.total; }, 30s);
  ASSERT_TRUE(replayed.ok()) << replayed.status().to_string();
  EXPECT_EQ(replayed.value(), 12u);
  EXPECT_EQ(engine_->projection_status("fragile").value().restored_from, 0u);
}

// A process manager: for each "Triggered" event it appends one "FollowedUp" to the trigger's
// partner stream, with an id derived from the trigger, so a replay repeats it harmlessly.
struct Reactor final : Projection {
  explicit Reactor(Engine& target, std::uint32_t schema_version = 0) : engine(target), version(schema_version) {}
  Engine& engine;
  const std::uint32_t version;  // 0: no snapshots
  std::atomic<std::uint64_t> reacted{0};
  std::atomic<std::uint64_t> failed{0};
  std::uint32_t schema() const override { return version; }
  std::vector<std::byte> snapshot() const override { return std::vector<std::byte>(8, std::byte{1}); }
  Status restore(std::span<const std::byte>) override { return {}; }
  void apply(const EventView& trigger) override {
    if (trigger.header.type != "Triggered") return;
    const EventData follow_up{.type = "FollowedUp", .event_id = {.hi = 0xF011, .lo = trigger.header.sequence},
                              .causation_id = trigger.header.event_id};
    const auto receipt = engine.append("out-" + std::string(trigger.header.stream_name), ExpectedVersion::any(),
                                       {&follow_up, 1});
    (receipt.ok() ? reacted : failed).fetch_add(1);
    std::lock_guard lock(failure_mutex);
    if (!receipt.ok() && first_failure.empty()) first_failure = receipt.status().to_string();
  }
  std::string why_failed() {
    std::lock_guard lock(failure_mutex);
    return first_failure;
  }

 private:
  std::mutex failure_mutex;
  std::string first_failure;  // under failure_mutex
};

TEST_F(UserCodeTest, AProcessManagerWhoseReplaysCouldOutrunTheIdempotencyWindowIsWarnedAbout) {
  testing::internal::CaptureStderr();
  auto reactor = std::make_shared<Reactor>(*engine_);  // schema 0: every open replays everything
  ASSERT_TRUE(engine_->add_projection("reactor", reactor, {}).ok());
  append_text("t", "x", "Triggered");
  EXPECT_TRUE(eventually([&] { return reactor->reacted.load() == 1; }));
  ASSERT_TRUE(engine_->close().ok());
  const std::string said = testing::internal::GetCapturedStderr();
  EXPECT_NE(said.find("projection reactor appends from apply(), but it has no snapshots"), std::string::npos) << said;
}

// Two projections whose apply() waits on the other (a query each way, then a status look-up): a
// deadlock of the application's making, which close() must still end.
struct Entangled final : Projection {
  Entangled(Engine& target, std::string other_name) : engine(target), other(std::move(other_name)) {}
  Engine& engine;
  const std::string other;
  std::atomic<std::uint64_t> applied{0};
  void apply(const EventView&) override {
    applied.fetch_add(1);
    (void)engine.query(other, std::uint64_t{1} << 40, [](const Projection&) {}, 1h);
    (void)engine.projection_status(other);
  }
};

TEST_F(UserCodeTest, CloseReturnsWhileProjectionsWaitForEachOther) {
  annal::test::Watchdog watchdog("projections waiting for each other");
  auto a = std::make_shared<Entangled>(*engine_, "b");
  auto b = std::make_shared<Entangled>(*engine_, "a");
  ASSERT_TRUE(engine_->add_projection("a", a, {}).ok());
  ASSERT_TRUE(engine_->add_projection("b", b, {}).ok());
  append_text("s", "x");
  ASSERT_TRUE(eventually([&] { return a->applied.load() == 1 && b->applied.load() == 1; }));
  EXPECT_TRUE(engine_->close().ok());
}

// Calls close() from its apply().
struct Closer final : Projection {
  explicit Closer(Engine& target) : engine(target) {}
  Engine& engine;
  std::atomic<bool> closed{false};
  void apply(const EventView&) override {
    (void)engine.close();
    closed.store(true);
  }
};

TEST_F(UserCodeTest, CloseMayBeCalledFromApply) {
  annal::test::Watchdog watchdog("close from apply");
  auto closer = std::make_shared<Closer>(*engine_);
  ASSERT_TRUE(engine_->add_projection("closer", closer, {}).ok());
  append_text("s", "x");
  EXPECT_TRUE(eventually([&] { return closer->closed.load(); }));
  const EventData late = event("Late");
  EXPECT_EQ(engine_->append("s", ExpectedVersion::any(), {&late, 1}).code(), ErrorCode::failed);
  (void)engine_->close();
  engine_.reset();  // joins the thread that closed it; ASan sees any use of what it destroyed
}

TEST_F(UserCodeTest, CloseMayBeCalledFromACallbackBesideAnotherClose) {
  annal::test::Watchdog watchdog("close from a callback");
  std::atomic<bool> callback_closed{false};
  const Receipt receipt = append_text("s", "x");
  engine_->on_durable(receipt, [&](const Status&) {
    (void)engine_->close();
    callback_closed.store(true);
  });
  (void)engine_->close();
  engine_.reset();
  EXPECT_TRUE(callback_closed.load());
}

// close() from a query function that another projection's apply() asked for: the query runs on
// one projection's thread while the other waits for it.
struct Querier final : Projection {
  explicit Querier(Engine& target) : engine(target) {}
  Engine& engine;
  std::atomic<bool> closed{false};
  void apply(const EventView&) override {
    (void)engine.query("counter", 0, [&](const Projection&) { (void)engine.close(); }, 1h);
    closed.store(true);
  }
};

TEST_F(UserCodeTest, CloseMayBeCalledFromAQueryThatAnotherProjectionIsWaitingFor) {
  annal::test::Watchdog watchdog("close from a query");
  ASSERT_TRUE(engine_->add_projection("counter", std::make_shared<Counter>(), {}).ok());
  auto querier = std::make_shared<Querier>(*engine_);
  ASSERT_TRUE(engine_->add_projection("querier", querier, {}).ok());
  append_text("s", "x");
  EXPECT_TRUE(eventually([&] { return querier->closed.load(); }));
  engine_.reset();
}

// A projection waits for a durability callback that can only fail, while a callback closes the
// engine: the callback thread must get to fail it.
struct FutureWaiter final : Projection {
  explicit FutureWaiter(Engine& target) : engine(target) {}
  Engine& engine;
  std::atomic<bool> waiting{false};
  std::atomic<bool> settled{false};
  void apply(const EventView& event) override {
    Receipt never{.last_sequence = event.header.sequence + (std::uint64_t{1} << 40)};
    auto future = engine.durable_future(never);
    waiting.store(true);
    settled.store(future.wait_for(1h) == std::future_status::ready);
  }
};

TEST_F(UserCodeTest, CloseFromACallbackEndsAProjectionsWaitForDurability) {
  annal::test::Watchdog watchdog("close from a callback beside a durability wait");
  auto waiter = std::make_shared<FutureWaiter>(*engine_);
  ASSERT_TRUE(engine_->add_projection("waiter", waiter, {}).ok());
  const Receipt receipt = append_text("s", "x");
  ASSERT_TRUE(eventually([&] { return waiter->waiting.load(); }));
  std::atomic<bool> closed{false};
  engine_->on_durable(receipt, [&](const Status&) {
    (void)engine_->close();
    closed.store(true);
  });
  ASSERT_TRUE(eventually([&] { return closed.load(); }));
  EXPECT_TRUE(eventually([&] { return waiter->settled.load(); }));
  engine_.reset();
}

// A process manager that buffers in apply() and appends in end_of_batch(), where the docs say to
// flush: its appends must count as the projection's (the snapshot waits for them).
struct BatchReactor final : Projection {
  explicit BatchReactor(Engine& target) : engine(target) {}
  Engine& engine;
  std::vector<std::uint64_t> triggers;
  void apply(const EventView& event) override {
    if (event.header.type == "Triggered") triggers.push_back(event.header.sequence);
  }
  void end_of_batch(std::uint64_t) override {
    for (const std::uint64_t trigger : triggers) {
      const EventData follow_up{.type = "FollowedUp", .event_id = {.hi = 0xF011, .lo = trigger}};
      (void)engine.append("out", ExpectedVersion::any(), {&follow_up, 1});
    }
    triggers.clear();
  }
};

TEST_F(UserCodeTest, AppendsFromEndOfBatchCountAsTheProjections) {
  testing::internal::CaptureStderr();
  ASSERT_TRUE(engine_->add_projection("batcher", std::make_shared<BatchReactor>(*engine_), {}).ok());
  append_text("t", "x", "Triggered");
  EXPECT_TRUE(eventually([&] { return engine_->stream_version("out").has_value(); }));
  ASSERT_TRUE(engine_->close().ok());
  const std::string said = testing::internal::GetCapturedStderr();
  EXPECT_NE(said.find("projection batcher appends from apply()"), std::string::npos) << said;
}

// Under interval durability nothing an eager process manager appends is durable until close: its
// snapshot waits, and close() makes the log durable before it stops the snapshot writers, so the
// last snapshot is written instead of given up after its wait.
TEST_F(UserCodeTest, CloseWritesTheLastSnapshotOfAProcessManagerUnderIntervalDurability) {
  annal::test::Watchdog watchdog("interval durability close");
  Options options = tiny_ring_options();
  options.journal.durability = journal::Durability::interval;
  options.journal.sync_interval = std::chrono::hours(1);
  open(options);
  const ProjectionOptions eager{.snapshot_every_events = 0, .snapshot_every = 0ms, .gating = Gating::eager};
  ASSERT_TRUE(engine_->add_projection("reactor", std::make_shared<Reactor>(*engine_, 1), eager).ok());
  // In the ring before the appends: what it would otherwise read from the journal is not durable.
  ASSERT_TRUE(eventually([&] { return engine_->projection_status("reactor").value().live; }));
  Receipt last;
  for (int i = 0; i < 5; ++i) last = append_text("t", "x", "Triggered");
  ASSERT_TRUE(engine_->query("reactor", last.last_sequence, [](const Projection&) {}, 60s).ok());
  ASSERT_TRUE(engine_->close().ok());
  open(options);
  ASSERT_TRUE(engine_->add_projection("reactor", std::make_shared<Reactor>(*engine_, 1), eager).ok());
  EXPECT_GE(engine_->projection_status("reactor").value().restored_from, last.last_sequence);
}

class ProcessManagerTest : public UserCodeTest, public ::testing::WithParamInterface<std::tuple<Gating, Sequencing>> {
 protected:
  void SetUp() override {
    Options options = tiny_ring_options();
    options.sequencing = std::get<1>(GetParam());  // with a sequencer thread, another thread publishes
    open(options);
  }
};

TEST_P(ProcessManagerTest, AProjectionThatAppendsFromApplyKeepsUpAndCloses) {
  annal::test::Watchdog watchdog("projection that appends");
  auto reactor = std::make_shared<Reactor>(*engine_);
  ASSERT_TRUE(engine_->add_projection("reactor", reactor, {.gating = std::get<0>(GetParam())}).ok());
  constexpr std::uint64_t kTriggers = 2000;  // thirty rings' worth, from two threads
  std::array<std::thread, 2> appenders;
  for (std::size_t t = 0; t < appenders.size(); ++t) {
    appenders[t] = std::thread([&, t] {
      for (std::uint64_t i = t; i < kTriggers; i += appenders.size()) {
        (void)append_text("t" + std::to_string(i % 4), "x", "Triggered");
      }
    });
  }
  for (std::thread& appender : appenders) appender.join();
  EXPECT_TRUE(eventually([&] { return reactor->reacted.load() + reactor->failed.load() == kTriggers; }))
      << "reacted to " << reactor->reacted.load() << " of " << kTriggers << " triggers";
  EXPECT_EQ(reactor->failed.load(), 0u) << "the first failed follow-up: " << reactor->why_failed();
  std::uint64_t follow_ups = 0;
  for (int i = 0; i < 4; ++i) follow_ups += engine_->stream_version("out-t" + std::to_string(i)).value_or(UINT64_MAX) + 1;
  EXPECT_EQ(follow_ups, kTriggers);
  const Status closed = engine_->close();
  EXPECT_TRUE(closed.ok()) << closed.to_string();
}

INSTANTIATE_TEST_SUITE_P(
    Gatings, ProcessManagerTest,
    ::testing::Combine(::testing::Values(Gating::durable, Gating::eager),
                       ::testing::Values(Sequencing::caller_lock, Sequencing::sequencer_thread)),
    [](const ::testing::TestParamInfo<std::tuple<Gating, Sequencing>>& param) {
      return std::string(std::get<0>(param.param) == Gating::durable ? "durable" : "eager") +
             (std::get<1>(param.param) == Sequencing::caller_lock ? "_caller_lock" : "_sequencer_thread");
    });

TEST_F(UserCodeTest, CloseReturnsWhileUserCodeIsBlockedOrAppending) {
  annal::test::Watchdog watchdog("close beside user code", 300s);  // beyond its own waits (60 s each)
  // Two projections appending from apply, a live reader that stops reading, callbacks appending
  // and waiting, a query waiting for a sequence that never comes: close() must end all of them.
  auto first = std::make_shared<Reactor>(*engine_);
  auto second = std::make_shared<Reactor>(*engine_);
  ASSERT_TRUE(engine_->add_projection("first", first, {}).ok());
  ASSERT_TRUE(engine_->add_projection("second", second, {.gating = Gating::eager}).ok());
  std::atomic<bool> callback_ended{false};
  const EventData start = event("Started");
  const auto started = engine_->append("s", ExpectedVersion::any(), {&start, 1});
  ASSERT_TRUE(started.ok());
  engine_->on_durable(started.value(), [&](const Status&) {
    for (;;) {
      const EventData next = event("Triggered");
      const auto receipt = engine_->append("cb", ExpectedVersion::any(), {&next, 1});
      if (!receipt.ok()) break;
    }
    callback_ended.store(true);
  });
  engine_->on_durable(started.value(), [&](const Status&) {
    Receipt never = started.value();
    never.last_sequence += 1u << 30;
    (void)engine_->wait_durable(never, Engine::Clock::now() + 1h);
  });
  std::thread query([&] {
    (void)engine_->query("first", 1u << 30, [](const Projection&) {}, 1h);
  });
  std::thread appender([&] {
    for (;;) {
      const EventData next = event("Triggered");
      if (!engine_->append("a", ExpectedVersion::any(), {&next, 1}).ok()) break;
    }
  });
  ASSERT_TRUE(eventually([&] { return first->reacted.load() > 200 && second->reacted.load() > 200; }));
  // A reader that joins the ring and stops reading: the ring fills and every appender waits until
  // the reader is evicted. From the end of the log it joins at once: from further back it would
  // have to catch up with four appenders first, which a slow machine (TSan, loaded) may not do.
  auto stalled = engine_->subscribe(engine_->last_sequence() + 1);
  ASSERT_TRUE(stalled.ok());
  const auto limit = Engine::Clock::now() + 60s;
  while (!stalled.value()->live() && Engine::Clock::now() < limit) (void)stalled.value()->next(limit);
  ASSERT_TRUE(stalled.value()->live());
  EXPECT_TRUE(engine_->close().ok());
  appender.join();
  query.join();
  EXPECT_TRUE(callback_ended.load());
  stalled.value().reset();
}

TEST_F(UserCodeTest, ASubscriberAwayInItsOwnCodeIsEvictedAndGoesOnWithoutAGap) {
  annal::test::Watchdog watchdog("away subscriber");
  auto subscription = engine_->subscribe(1);
  ASSERT_TRUE(subscription.ok());
  // Nothing to read: it takes its seat in the ring at once.
  ASSERT_EQ(subscription.value()->next(Engine::Clock::now() + 10ms).code(), ErrorCode::timed_out);
  ASSERT_TRUE(subscription.value()->live());
  // One event, read live; then, while the subscriber is away (between two calls of next()),
  // many rings' worth: they get through only if an append evicts its seat.
  constexpr std::uint64_t kMore = 1000;
  std::atomic<bool> away{false};
  std::atomic<std::uint64_t> appended{0};
  std::thread appender([&] {
    append_text("s", "first");
    if (!eventually([&] { return away.load(); })) return;
    for (std::uint64_t i = 0; i < kMore; ++i) {
      append_text("s", "x");
      appended.fetch_add(1);
    }
  });
  auto first = subscription.value()->next(Engine::Clock::now() + 60s);
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  EXPECT_TRUE(subscription.value()->live());
  std::uint64_t last = first.value().header.sequence;
  away.store(true);
  EXPECT_TRUE(eventually([&] { return appended.load() >= 3 * 64; }))
      << "appends stopped at " << appended.load() << " behind a subscriber away from the ring";
  // Every later event, in order, once (the stream and its type are named by the first append).
  std::uint64_t events = 0;
  const auto limit = Engine::Clock::now() + 120s;
  while (events < kMore && Engine::Clock::now() < limit) {
    auto event = subscription.value()->next(limit);
    if (event.code() == ErrorCode::timed_out) continue;
    ASSERT_TRUE(event.ok()) << event.status().to_string();
    ASSERT_EQ(event.value().header.sequence, last + 1);
    last = event.value().header.sequence;
    ++events;
  }
  appender.join();
  EXPECT_EQ(events, kMore);
  EXPECT_GE(subscription.value()->detached(), 1u);
}

TEST_F(UserCodeTest, AnExactRetryOfAnAppendWithIdsOnSomeEventsGetsTheOriginalReceipt) {
  const std::array<EventData, 3> batch = {event("A", {.hi = 1, .lo = 1}), event("B"), event("C", {.hi = 1, .lo = 3})};
  const auto original = engine_->append("s", ExpectedVersion::no_stream(), batch);
  ASSERT_TRUE(original.ok()) << original.status().to_string();
  const auto retried = engine_->append("s", ExpectedVersion::no_stream(), batch);
  ASSERT_TRUE(retried.ok()) << retried.status().to_string();
  EXPECT_TRUE(retried.value().duplicate);
  EXPECT_EQ(retried.value().first_sequence, original.value().first_sequence);
  EXPECT_EQ(retried.value().last_sequence, original.value().last_sequence);

  const std::array<EventData, 2> tail_id = {event("A"), event("B", {.hi = 2, .lo = 2})};
  const auto second = engine_->append("s", ExpectedVersion::any(), tail_id);
  ASSERT_TRUE(second.ok());
  const auto second_retry = engine_->append("s", ExpectedVersion::any(), tail_id);
  ASSERT_TRUE(second_retry.ok()) << second_retry.status().to_string();
  EXPECT_TRUE(second_retry.value().duplicate);
  EXPECT_EQ(second_retry.value().first_sequence, second.value().first_sequence);
  EXPECT_EQ(engine_->stream_version("s"), 4u);

  // Not a retry: an id in another place, another count of events, another stream.
  const std::array<EventData, 2> moved = {event("A", {.hi = 2, .lo = 2}), event("B")};
  EXPECT_EQ(engine_->append("s", ExpectedVersion::any(), moved).code(), ErrorCode::invalid_argument);
  const std::array<EventData, 3> longer = {event("A"), event("B", {.hi = 2, .lo = 2}), event("C")};
  EXPECT_EQ(engine_->append("s", ExpectedVersion::any(), longer).code(), ErrorCode::invalid_argument);
  EXPECT_EQ(engine_->append("elsewhere", ExpectedVersion::any(), tail_id).code(), ErrorCode::invalid_argument);
  EXPECT_EQ(engine_->stream_version("s"), 4u);
}

TEST_F(UserCodeTest, AnAppendThatFailsBetweenTheJournalAndTheRingSendsLiveReadersToTheJournal) {
  annal::test::Watchdog watchdog("append failing half-way");
  auto reader_on_heap = std::make_unique<Reader>(*engine_);  // gone before the engine it reads
  Reader& reader = *reader_on_heap;
  ASSERT_TRUE(eventually([&] { return reader.live(); }));
  for (int i = 0; i < 10; ++i) append_text("s", "x");
  // The ring's slot grows for a large event: that allocation fails, after the journal took it.
  const std::vector<std::byte> large(3000, std::byte{7});
  const EventData big{.type = "Large", .payload = large};
  heap_failing_from.store(2048);
  const auto failed = engine_->append("s", ExpectedVersion::any(), {&big, 1});
  heap_failing_from.store(SIZE_MAX);
  ASSERT_EQ(failed.code(), ErrorCode::failed) << failed.status().to_string();
  EXPECT_NE(failed.status().message().find("half-way"), std::string::npos) << failed.status().to_string();
  EXPECT_EQ(engine_->append("s", ExpectedVersion::any(), {&big, 1}).code(), ErrorCode::failed);
  // The journal holds the event: readers get it from there, and so does the next open.
  EXPECT_TRUE(eventually([&] { return reader.read() == 11u; })) << "read " << reader.read() << " of 11";
  reader_on_heap.reset();
  EXPECT_TRUE(engine_->close().ok());
  open(tiny_ring_options());
  EXPECT_EQ(engine_->stream_version("s"), 10u);
}

}  // namespace
}  // namespace annal::engine::test
