#include "annal/engine/engine.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <numeric>
#include <thread>

#include "annal/engine/aggregate.h"
#include "engine_fixture.h"
#include "master_keys.h"
#include "watchdog.h"

namespace annal::engine::test {
namespace {

using namespace std::chrono_literals;

TEST(EngineOptions, BadOptionsAreRefusedWithTheirName) {
  annal::test::TempDirectory dir;
  const auto refused = [&](Options options, std::string_view name) {
    const auto opened = Engine::open(dir.path(), options);
    ASSERT_FALSE(opened.ok());
    EXPECT_EQ(opened.status().code(), ErrorCode::invalid_argument);
    EXPECT_NE(opened.status().message().find(name), std::string::npos) << opened.status().message();
  };
  refused({.ring_capacity = 1000}, "ring_capacity");
  refused({.ring_capacity = 1024, .events_per_append_max = 1024}, "ring_capacity");
  refused({.event_bytes_max = 0}, "event_bytes_max");
  refused({.live_subscriptions_max = 17}, "live_subscriptions_max");
  refused({.idempotency_window = std::size_t{1} << 30}, "idempotency_window");
}

TEST(EngineOptions, ASecondOpenOfTheDirectoryIsLocked) {
  annal::test::TempDirectory dir;
  auto first = Engine::open(dir.path(), {});
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  const auto second = Engine::open(dir.path(), {});
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), ErrorCode::locked);
}

TEST_F(EngineTest, ExpectedVersionsAdmitOnlyTheStreamsTheyDescribe) {
  const auto payload = bytes_of("x");
  const EventData event{.type = "Created", .payload = payload};
  const auto append = [&](const StreamRef& stream, ExpectedVersion expected) {
    return engine_->append(stream, expected, {&event, 1});
  };
  // No stream yet: exactly(0) conflicts and says there is none; no_stream succeeds.
  auto conflict = append("order-1", ExpectedVersion::exactly(0));
  ASSERT_EQ(conflict.code(), ErrorCode::conflict);
  EXPECT_FALSE(conflict.current_version().has_value());
  ASSERT_TRUE(append("order-1", ExpectedVersion::no_stream()).ok());
  // Now at version 0: no_stream and exactly(1) conflict and report 0; exactly(0) and any succeed.
  conflict = append("order-1", ExpectedVersion::no_stream());
  ASSERT_EQ(conflict.code(), ErrorCode::conflict);
  EXPECT_EQ(conflict.current_version(), 0u);
  EXPECT_NE(conflict.status().message().find("order-1"), std::string::npos);
  conflict = append("order-1", ExpectedVersion::exactly(1));
  ASSERT_EQ(conflict.code(), ErrorCode::conflict);
  EXPECT_EQ(conflict.current_version(), 0u);
  const std::uint64_t last = engine_->last_sequence();
  const auto at_zero = append("order-1", ExpectedVersion::exactly(0));
  ASSERT_TRUE(at_zero.ok()) << at_zero.status().to_string();
  EXPECT_EQ(at_zero.value().first_version, 1u);
  EXPECT_EQ(at_zero.value().first_sequence, last + 1);  // conflicts appended nothing
  const auto any = append("order-1", ExpectedVersion::any());
  ASSERT_TRUE(any.ok());
  EXPECT_EQ(any.value().last_version, 2u);
  EXPECT_EQ(engine_->stream_version("order-1"), 2u);
  EXPECT_FALSE(engine_->stream_version("order-2").has_value());
}

TEST_F(EngineTest, EventsOfOneAppendAreContiguousAndTakeConsecutiveVersions) {
  append_text("other", "first");
  std::vector<std::vector<std::byte>> payloads;
  for (int i = 0; i < 5; ++i) payloads.push_back(bytes_of("e" + std::to_string(i)));
  std::vector<EventData> events;
  for (int i = 0; i < 5; ++i) events.push_back({.type = i % 2 == 0 ? "Even" : "Odd", .payload = payloads[i]});
  const auto receipt = engine_->append("batch", ExpectedVersion::no_stream(), events);
  ASSERT_TRUE(receipt.ok()) << receipt.status().to_string();
  EXPECT_EQ(receipt.value().last_sequence - receipt.value().first_sequence, 4u);
  EXPECT_EQ(receipt.value().first_version, 0u);
  EXPECT_EQ(receipt.value().last_version, 4u);
  ASSERT_TRUE(engine_->wait_durable(receipt.value(), soon()).ok());
  const auto all = engine_->read_all(receipt.value().first_sequence, 100);
  ASSERT_TRUE(all.ok()) << all.status().to_string();
  ASSERT_EQ(all.value().size(), 5u);
  for (std::size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(all.value()[i].header.sequence, receipt.value().first_sequence + i);
    EXPECT_EQ(all.value()[i].header.version, i);
    EXPECT_EQ(all.value()[i].header.type, i % 2 == 0 ? "Even" : "Odd");
    EXPECT_EQ(all.value()[i].header.stream_name, "batch");
  }
}

TEST_F(EngineTest, BadAppendsAreRefusedAndWriteNothing) {
  const std::uint64_t before = engine_->last_sequence();
  const std::vector<std::byte> big(small_options().event_bytes_max + 1);
  const EventData too_large{.type = "Big", .payload = big};
  EXPECT_EQ(engine_->append("s", ExpectedVersion::any(), {&too_large, 1}).code(), ErrorCode::invalid_argument);
  const EventData untyped{.type = ""};
  EXPECT_EQ(engine_->append("s", ExpectedVersion::any(), {&untyped, 1}).code(), ErrorCode::invalid_argument);
  const EventData fine{.type = "Fine"};
  EXPECT_EQ(engine_->append("", ExpectedVersion::any(), {&fine, 1}).code(), ErrorCode::invalid_argument);
  EXPECT_EQ(engine_->append(StreamRef::id(kNamedStreamBit | 1), ExpectedVersion::any(), {&fine, 1}).code(),
            ErrorCode::invalid_argument);
  EXPECT_EQ(engine_->append(StreamRef::id(0), ExpectedVersion::any(), {&fine, 1}).code(), ErrorCode::invalid_argument);
  EXPECT_EQ(engine_->append("s", ExpectedVersion::any(), {}).code(), ErrorCode::invalid_argument);
  const EventData twins[] = {{.type = "A", .event_id = {1, 2}}, {.type = "B", .event_id = {1, 2}}};
  EXPECT_EQ(engine_->append("s", ExpectedVersion::any(), twins).code(), ErrorCode::invalid_argument);
  EXPECT_EQ(engine_->last_sequence(), before);
  EXPECT_FALSE(engine_->stream_version("s").has_value());
}

// An event of event_bytes_max, above the journal's default commit of 1 MiB, appended to a new
// stream under a new type, in the clear and sealed: the records naming the stream and the type go
// in the same commit, and must fit beside it.
TEST_F(EngineTest, AnEventOfTheLargestSizeFitsInTheFirstAppendOfANewStream) {
  engine_.reset();
  for (const bool sealed : {false, true}) {
    annal::test::TempDirectory dir;
    Options options;
    options.event_bytes_max = 2u << 20;
    if (sealed) options.encryption = std::make_shared<annal::test::MasterKeys>();
    auto opened = Engine::open(dir.path(), options);
    ASSERT_TRUE(opened.ok()) << opened.status().to_string();
    const std::vector<std::byte> largest(options.event_bytes_max);
    const std::string type(kNameBytesMax, 't'), stream(kNameBytesMax, 's');  // names of the longest
    const EventData event{.type = type, .payload = largest};
    const auto appended = opened.value()->append(stream, ExpectedVersion::any(), {&event, 1});
    EXPECT_TRUE(appended.ok()) << (sealed ? "sealed: " : "in clear: ") << appended.status().to_string();
    ASSERT_TRUE(opened.value()->close().ok());
  }
}

TEST_F(EngineTest, ARepeatedAppendReturnsTheOriginalReceiptAlsoAfterReopen) {
  const auto a = bytes_of("a"), b = bytes_of("b");
  const EventData events[] = {{.type = "OrderCreated", .payload = a, .event_id = {7, 1}},
                              {.type = "OrderPaid", .payload = b, .event_id = {7, 2}}};
  const auto original = engine_->append("order-7", ExpectedVersion::no_stream(), events);
  ASSERT_TRUE(original.ok()) << original.status().to_string();
  EXPECT_FALSE(original.value().duplicate);
  append_text("order-7", "later");
  // The retry's expected version no longer holds; it is still recognised as the same append.
  const auto check_repeat = [&] {
    const auto repeat = engine_->append("order-7", ExpectedVersion::no_stream(), events);
    ASSERT_TRUE(repeat.ok()) << repeat.status().to_string();
    EXPECT_TRUE(repeat.value().duplicate);
    EXPECT_EQ(repeat.value().first_sequence, original.value().first_sequence);
    EXPECT_EQ(repeat.value().last_sequence, original.value().last_sequence);
    EXPECT_EQ(repeat.value().first_version, 0u);
    EXPECT_EQ(repeat.value().last_version, 1u);
    EXPECT_EQ(engine_->stream_version("order-7"), 2u);
    EXPECT_TRUE(engine_->wait_durable(repeat.value(), soon()).ok());
  };
  check_repeat();
  ASSERT_TRUE(engine_->close().ok());
  open();
  check_repeat();
  // Reusing only some of the ids, or in another order, is a client bug, not a retry.
  const EventData partial[] = {{.type = "OrderCreated", .payload = a, .event_id = {7, 1}}};
  EXPECT_EQ(engine_->append("order-7", ExpectedVersion::any(), partial).code(), ErrorCode::invalid_argument);
  const EventData swapped[] = {events[1], events[0]};
  EXPECT_EQ(engine_->append("order-7", ExpectedVersion::any(), swapped).code(), ErrorCode::invalid_argument);
  EXPECT_EQ(engine_->stream_version("order-7"), 2u);
}

TEST_F(EngineTest, TheIdempotencyWindowForgetsTheOldestIds) {
  Options options = small_options();
  options.idempotency_window = 3;
  open(options);
  for (std::uint64_t i = 1; i <= 4; ++i) {
    const EventData event{.type = "T", .event_id = {0, i}};
    ASSERT_TRUE(engine_->append("s", ExpectedVersion::any(), {&event, 1}).ok());
  }
  const EventData oldest{.type = "T", .event_id = {0, 1}}, newest{.type = "T", .event_id = {0, 4}};
  const auto again = engine_->append("s", ExpectedVersion::any(), {&oldest, 1});
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again.value().duplicate);  // forgotten: appended anew
  EXPECT_TRUE(engine_->append("s", ExpectedVersion::any(), {&newest, 1}).value().duplicate);
  ASSERT_TRUE(engine_->close().ok());
  open(options);  // rebuilt from the journal with the same window
  EXPECT_TRUE(engine_->append("s", ExpectedVersion::any(), {&oldest, 1}).value().duplicate);
  EXPECT_TRUE(engine_->append("s", ExpectedVersion::any(), {&newest, 1}).value().duplicate);
  const EventData second{.type = "T", .event_id = {0, 2}};
  EXPECT_FALSE(engine_->append("s", ExpectedVersion::any(), {&second, 1}).value().duplicate);
}

TEST_F(EngineTest, StreamsReadForwardsAndBackwardsFromAnyVersion) {
  // Three streams interleaved, so each stream's events are spread through the log and segments.
  for (int i = 0; i < 300; ++i) {
    append_text("a", "a" + std::to_string(i));
    if (i % 3 == 0) append_text(StreamRef::id(42), "n" + std::to_string(i / 3));
    append_text("b", std::string(200, 'b') + std::to_string(i));
  }
  const auto expect_versions = [&](const StreamRef& stream, ReadStreamOptions options, std::vector<int> versions) {
    std::vector<std::string> expected;
    for (const int v : versions) expected.push_back("a" + std::to_string(v));
    EXPECT_EQ(texts(stream, options), expected);
  };
  std::vector<int> all(300);
  std::iota(all.begin(), all.end(), 0);
  expect_versions("a", {}, all);
  expect_versions("a", {.from_version = 295}, {295, 296, 297, 298, 299});
  expect_versions("a", {.from_version = 10, .max_count = 3}, {10, 11, 12});
  expect_versions("a", {.from_version = 300}, {});
  expect_versions("a", {.from_version = kFromEnd, .direction = Direction::backwards, .max_count = 3}, {299, 298, 297});
  expect_versions("a", {.from_version = 2, .direction = Direction::backwards}, {2, 1, 0});
  expect_versions("a", {.from_version = 0, .direction = Direction::backwards, .max_count = 10}, {0});
  expect_versions("a", {.max_count = 0}, {});
  std::vector<int> reversed(all.rbegin(), all.rend());
  expect_versions("a", {.from_version = kFromEnd, .direction = Direction::backwards}, reversed);
  const auto numbered = texts(StreamRef::id(42));
  ASSERT_EQ(numbered.size(), 100u);
  EXPECT_EQ(numbered.front(), "n0");
  EXPECT_EQ(numbered.back(), "n99");
  EXPECT_TRUE(texts("never-written").empty());
  EXPECT_TRUE(texts(StreamRef::id(43)).empty());
  // And the same after a reopen, from the rebuilt index.
  ASSERT_TRUE(engine_->close().ok());
  open();
  expect_versions("a", {.from_version = kFromEnd, .direction = Direction::backwards, .max_count = 2}, {299, 298});
  expect_versions("a", {.from_version = 150, .max_count = 2}, {150, 151});
  EXPECT_EQ(texts(StreamRef::id(42)).size(), 100u);
}

TEST_F(EngineTest, NamesMapToTheSameIdsAfterReopenAndNeverCollideWithNumberedStreams) {
  append_text("123456", "named", "OrderCreated");
  append_text(StreamRef::id(123456), "numbered", "OrderPaid");
  append_text("654321", "other", "RefundCreated");
  const auto id = engine_->find_stream("123456");
  ASSERT_TRUE(id.has_value());
  EXPECT_NE(*id, 123456u);
  EXPECT_NE(*id & kNamedStreamBit, 0u);
  ASSERT_TRUE(engine_->close().ok());
  open();
  EXPECT_EQ(engine_->find_stream("123456"), id);
  EXPECT_NE(engine_->find_stream("654321"), id);
  EXPECT_EQ(texts("123456"), std::vector<std::string>{"named"});
  EXPECT_EQ(texts(StreamRef::id(123456)), std::vector<std::string>{"numbered"});
  const auto events = engine_->read_all(1, 10);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events.value().size(), 3u);
  EXPECT_EQ(events.value()[0].header.type, "OrderCreated");
  EXPECT_EQ(events.value()[0].header.stream_name, "123456");
  EXPECT_EQ(events.value()[1].header.type, "OrderPaid");
  EXPECT_EQ(events.value()[1].header.stream_name, "");
  EXPECT_EQ(events.value()[2].header.type, "RefundCreated");
  // New names after reopen take new ids, old ones keep theirs.
  const Receipt receipt = append_text("new", "n", "OrderCreated");
  ASSERT_TRUE(engine_->wait_durable(receipt, soon()).ok());  // reads show durable events only
  EXPECT_EQ(engine_->read_all(1, 10).value().back().header.type_id, events.value()[0].header.type_id);
}

TEST_F(EngineTest, MetadataIsStoredAndTheTimestampIsStampedIfAbsent) {
  const auto payload = bytes_of("p");
  const EventData events[] = {{.type = "T", .payload = payload, .event_id = {1, 2}, .correlation_id = {3, 4},
                               .causation_id = {5, 6}, .timestamp_ns = 1234},
                              {.type = "T", .payload = payload}};
  ASSERT_TRUE(engine_->append("m", ExpectedVersion::any(), events).ok());
  const auto read = engine_->read_stream("m", {}, soon());
  ASSERT_TRUE(read.ok());
  ASSERT_EQ(read.value().size(), 2u);
  const EventHeader& first = read.value()[0].header;
  EXPECT_EQ(first.event_id, (Id128{1, 2}));
  EXPECT_EQ(first.correlation_id, (Id128{3, 4}));
  EXPECT_EQ(first.causation_id, (Id128{5, 6}));
  EXPECT_EQ(first.timestamp_ns, 1234u);
  EXPECT_TRUE(read.value()[1].header.event_id.empty());
  EXPECT_GT(read.value()[1].header.timestamp_ns, 1'600'000'000'000'000'000u);  // after 2020
}

TEST_F(EngineTest, DurabilityCanBeAwaitedByBlockingByFutureOrByCallback) {
  const Receipt receipt = append_text("d", "x");
  auto future = engine_->durable_future(receipt);
  std::promise<Status> called;
  engine_->on_durable(receipt, [&](const Status& status) { called.set_value(status); });
  EXPECT_TRUE(engine_->wait_durable(receipt, soon()).ok());
  ASSERT_EQ(future.wait_for(30s), std::future_status::ready);
  EXPECT_TRUE(future.get().ok());
  auto callback = called.get_future();
  ASSERT_EQ(callback.wait_for(30s), std::future_status::ready);
  EXPECT_TRUE(callback.get().ok());
  EXPECT_GE(engine_->durable_sequence(), receipt.last_sequence);
  // Already durable: settled at once.
  EXPECT_TRUE(engine_->durable_future(receipt).get().ok());
}

TEST_F(EngineTest, AppendsAfterCloseFailAndWaitersAreReleased) {
  const Receipt receipt = append_text("c", "x");
  ASSERT_TRUE(engine_->close().ok());
  EXPECT_GE(engine_->durable_sequence(), receipt.last_sequence);  // close makes it durable
  const EventData event{.type = "T"};
  EXPECT_EQ(engine_->append("c", ExpectedVersion::any(), {&event, 1}).code(), ErrorCode::failed);
  Receipt never = receipt;
  never.last_sequence += 100;
  EXPECT_FALSE(engine_->durable_future(never).get().ok());
  EXPECT_FALSE(engine_->wait_durable(never, soon()).ok());
}

// Threads race on one shared stream (read the version, append at it, retry on conflict) and each
// appends to a stream of its own; nothing may be lost, duplicated or reordered within a thread.
void race_appends(Engine& engine) {
  annal::test::Watchdog watchdog("concurrent appends");
  constexpr int kThreads = 4, kAppends = 300;
  std::atomic<int> conflicts{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kAppends; ++i) {
        // All threads race on one shared stream, with a read-then-append at the version read,
        // and on a stream of their own.
        const auto shared = bytes_of("t" + std::to_string(t) + "-" + std::to_string(i));
        const EventData event{.type = "Tick", .payload = shared};
        for (;;) {
          const auto version = engine.stream_version("shared");
          const auto expected = version ? ExpectedVersion::exactly(*version) : ExpectedVersion::no_stream();
          const auto receipt = engine.append("shared", expected, {&event, 1});
          if (receipt.ok()) break;
          ASSERT_EQ(receipt.code(), ErrorCode::conflict) << receipt.status().to_string();
          ++conflicts;
        }
        const auto own = engine.append("own-" + std::to_string(t),
                                         i == 0 ? ExpectedVersion::no_stream()
                                                : ExpectedVersion::exactly(static_cast<std::uint64_t>(i - 1)),
                                         {&event, 1});
        ASSERT_TRUE(own.ok()) << own.status().to_string();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(engine.stream_version("shared"), std::uint64_t{kThreads * kAppends - 1});
  const auto shared = engine.read_stream("shared", {}, soon());
  ASSERT_TRUE(shared.ok()) << shared.status().to_string();
  ASSERT_EQ(shared.value().size(), std::size_t{kThreads * kAppends});
  // Each thread's appends to the shared stream appear once each, in its own order.
  std::vector<int> next(kThreads, 0);
  for (const Event& event : shared.value()) {
    const std::string text = text_of(event.payload);
    const int t = text[1] - '0';
    EXPECT_EQ(text, "t" + std::to_string(t) + "-" + std::to_string(next[t]++));
  }
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(engine.read_stream("own-" + std::to_string(t), {}, soon()).value().size(), std::size_t{kAppends});
}

TEST_F(EngineTest, ManyThreadsAppendingUnderTheLockNeverLoseOrDuplicateAVersion) { race_appends(*engine_); }

TEST_F(EngineTest, ManyThreadsAppendingThroughTheSequencerThreadNeverLoseOrDuplicateAVersion) {
  Options options = small_options();
  options.sequencing = Sequencing::sequencer_thread;
  open(options);
  race_appends(*engine_);
  // Conflicts and retries come back through the hand-off too.
  const EventData event{.type = "T", .event_id = {9, 9}};
  EXPECT_EQ(engine_->append("shared", ExpectedVersion::no_stream(), {&event, 1}).code(), ErrorCode::conflict);
  const auto first = engine_->append("fresh", ExpectedVersion::no_stream(), {&event, 1});
  ASSERT_TRUE(first.ok());
  EXPECT_TRUE(engine_->append("fresh", ExpectedVersion::no_stream(), {&event, 1}).value().duplicate);
  ASSERT_TRUE(engine_->close().ok());
  EXPECT_EQ(engine_->append("fresh", ExpectedVersion::any(), {&event, 1}).code(), ErrorCode::failed);
}

struct Account {
  std::int64_t balance = 0;
  std::uint64_t events = 0;
};

std::int64_t amount_of(const Event& event) { return std::stoll(text_of(event.payload)); }

TEST_F(EngineTest, AggregateCommandsFoldDecideAndRetryOnConflict) {
  const auto apply = [](Account& account, const Event& event) {
    account.balance += event.header.type == "Deposited" ? amount_of(event) : -amount_of(event);
    ++account.events;
  };
  const auto deposit = [&](std::int64_t amount) {
    return execute<Account>(*engine_, "account-1", apply, [&](const Account&) -> Result<std::vector<NewEvent>> {
      return std::vector<NewEvent>{{.type = "Deposited", .payload = bytes_of(std::to_string(amount))}};
    });
  };
  ASSERT_TRUE(deposit(100).ok());
  // A withdrawal that, on its first attempt, finds someone else appended in between.
  int attempts = 0;
  const auto withdrawn = execute<Account>(*engine_, "account-1", apply, [&](const Account& account) -> Result<std::vector<NewEvent>> {
    if (attempts++ == 0) {
      EXPECT_TRUE(deposit(50).ok());  // the interloper
      EXPECT_EQ(account.balance, 100);
    } else {
      EXPECT_EQ(account.balance, 150);  // folded the interloper's event before deciding again
    }
    if (account.balance < 80) return Status(ErrorCode::invalid_argument, "insufficient funds");
    return std::vector<NewEvent>{{.type = "Withdrawn", .payload = bytes_of("80")}};
  });
  ASSERT_TRUE(withdrawn.ok()) << withdrawn.status().to_string();
  EXPECT_EQ(attempts, 2);
  EXPECT_EQ(withdrawn.value().first_version, 2u);
  // A refusal comes back as the decider's error; nothing is appended.
  const auto refused = execute<Account>(*engine_, "account-1", apply, [](const Account& account) -> Result<std::vector<NewEvent>> {
    if (account.balance < 1000) return Status(ErrorCode::invalid_argument, "insufficient funds");
    return std::vector<NewEvent>{};
  });
  EXPECT_EQ(refused.code(), ErrorCode::invalid_argument);
  EXPECT_EQ(engine_->stream_version("account-1"), 2u);
  // A command that always loses the race gives up after attempts_max with the conflict.
  const auto starved = execute<Account>(*engine_, "account-1", apply, [&](const Account&) -> Result<std::vector<NewEvent>> {
    EXPECT_TRUE(deposit(1).ok());
    return std::vector<NewEvent>{{.type = "Withdrawn", .payload = bytes_of("1")}};
  }, {.attempts_max = 3});
  EXPECT_EQ(starved.code(), ErrorCode::conflict);
}

// A read-only engine beside the writer: it reads what is there with its names, follows what the
// writer appends (new streams and types included), and refuses to write.
TEST_F(EngineTest, AReadOnlyEngineReadsBesideTheWriterAndFollowsIt) {
  annal::test::Watchdog watchdog("read-only engine");
  for (int i = 0; i < 30; ++i) append_text("order-" + std::to_string(i % 3), "e" + std::to_string(i), "Created");
  ASSERT_TRUE(engine_->wait_durable({.last_sequence = engine_->last_sequence()}, soon()).ok());
  auto reading = Engine::open_read_only(dir_.path(), small_options());
  ASSERT_TRUE(reading.ok()) << reading.status().to_string();
  EXPECT_EQ(reading.value()->stream_count(), 3u);
  EXPECT_EQ(reading.value()->event_type_count(), 1u);
  const auto events = reading.value()->read_stream("order-1", {}, soon());
  ASSERT_TRUE(events.ok()) << events.status().to_string();
  ASSERT_EQ(events.value().size(), 10u);
  EXPECT_EQ(text_of(events.value()[9].payload), "e28");
  EXPECT_EQ(events.value()[9].header.type, "Created");
  const EventData event{.type = "Noted", .payload = {}};
  EXPECT_EQ(reading.value()->append("x", ExpectedVersion::any(), {&event, 1}).code(), ErrorCode::invalid_argument);
  struct Nothing final : Projection {
    void apply(const EventView&) override {}
  };
  EXPECT_EQ(reading.value()->add_projection("p", std::make_shared<Nothing>(), {}).code(), ErrorCode::invalid_argument);

  auto tail = reading.value()->subscribe(reading.value()->last_sequence() + 1);
  ASSERT_TRUE(tail.ok());
  std::vector<Receipt> later;
  for (int i = 0; i < 20; ++i) later.push_back(append_text("invoice-" + std::to_string(i % 4), "f" + std::to_string(i), "Issued"));
  for (std::size_t i = 0; i < later.size(); ++i) {
    const auto next = tail.value()->next(soon());
    ASSERT_TRUE(next.ok()) << next.status().to_string();
    EXPECT_EQ(next.value().header.sequence, later[i].last_sequence);
    EXPECT_EQ(next.value().header.type, "Issued");
    EXPECT_EQ(next.value().header.stream_name, "invoice-" + std::to_string(i % 4));
    EXPECT_EQ(text_of(next.value().payload), "f" + std::to_string(i));
  }
  EXPECT_EQ(Engine::open_read_only(dir_.path() + "/nothing", small_options()).code(), ErrorCode::not_found);
}

}  // namespace
}  // namespace annal::engine::test
