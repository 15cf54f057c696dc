// Erasing a stream (Engine::erase_stream, crypto-shredding): its events then read as erased
// everywhere (reads by id, read_all, subscriptions, projections' replays, a read-only open) and
// its name is forgotten, whether the store is reopened from its state snapshot or from the journal
// alone; an erasure a crash cut short between its record and its key's end is finished at open; a
// store in clear refuses, saying why.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "annal/engine/engine.h"
#include "annal/crypto/store_keys.h"
#include "eventually.h"
#include "large_seed_tree.h"
#include "master_keys.h"
#include "payloads_projection.h"
#include "store_cipher.h"
#include "temp_directory.h"

namespace annal::engine {
namespace {

using namespace std::chrono_literals;

// Counts what it sees, by erased or not, and keeps the payloads it could read.
struct Seen final : Projection {
  int erased = 0;
  std::vector<std::string> payloads;
  void apply(const EventView& event) override {
    if (event.header.erased) {
      ++erased;
      EXPECT_TRUE(event.payload.empty());
      return;
    }
    payloads.emplace_back(reinterpret_cast<const char*>(event.payload.data()), event.payload.size());
  }
  std::uint32_t schema() const override { return 1; }
  std::vector<std::byte> snapshot() const override { return {}; }
  Status restore(std::span<const std::byte>) override { return {}; }
};

using test::Payloads;

// Whether it holds a payload of customer-1.
bool holds_erased(const Payloads& projection) { return projection.holds("customer-1"); }

class ErasureTest : public ::testing::Test {
 protected:
  Options encrypted() const {
    Options options;
    options.encryption = keys_;
    return options;
  }

  std::unique_ptr<Engine> open(const Options& options) {
    auto opened = Engine::open(dir_.path(), options);
    EXPECT_TRUE(opened.ok()) << opened.status().to_string();
    return opened.ok() ? std::move(opened).value() : nullptr;
  }

  // Five events each to customer-1 and customer-2, interleaved, with event ids; durable.
  void append_both(Engine& engine) {
    Receipt last;
    for (int i = 0; i < 5; ++i) {
      for (const std::string stream : {"customer-1", "customer-2"}) {
        const std::string payload = stream + " payload " + std::to_string(i);
        const EventData event{.type = "Changed",
                              .payload = std::as_bytes(std::span(payload)),
                              .event_id = {.hi = 7, .lo = static_cast<std::uint64_t>(events_ + 1)}};
        auto appended = engine.append(stream, ExpectedVersion::any(), {&event, 1});
        ASSERT_TRUE(appended.ok()) << appended.status().to_string();
        last = appended.value();
        ++events_;
      }
    }
    ASSERT_TRUE(engine.wait_durable(last, Engine::Clock::now() + 1min).ok());
  }

  // What an engine shows of the two streams once customer-1 (id `erased`) is erased.
  void expect_erased_view(Engine& engine, std::uint64_t erased) {
    EXPECT_EQ(engine.find_stream("customer-1"), std::nullopt);
    auto by_name = engine.read_stream("customer-1", {});
    ASSERT_TRUE(by_name.ok()) << by_name.status().to_string();
    EXPECT_TRUE(by_name.value().empty());
    auto by_id = engine.read_stream(StreamRef::id(erased), {});
    ASSERT_TRUE(by_id.ok()) << by_id.status().to_string();
    ASSERT_EQ(by_id.value().size(), 5u);
    for (std::uint64_t version = 0; version < 5; ++version) {
      const Event& event = by_id.value()[version];
      EXPECT_TRUE(event.header.erased);
      EXPECT_EQ(event.header.version, version);
      EXPECT_EQ(event.header.stream_id, erased);
      EXPECT_EQ(event.header.type, "Changed");
      EXPECT_TRUE(event.header.stream_name.empty());
      EXPECT_TRUE(event.header.event_id.empty());
      EXPECT_TRUE(event.payload.empty());
    }
    auto kept = engine.read_stream("customer-2", {});
    ASSERT_TRUE(kept.ok()) << kept.status().to_string();
    ASSERT_EQ(kept.value().size(), 5u);
    for (const Event& event : kept.value()) {
      EXPECT_FALSE(event.header.erased);
      EXPECT_FALSE(event.header.event_id.empty());
      EXPECT_EQ(std::string(reinterpret_cast<const char*>(event.payload.data()), event.payload.size()).rfind("customer-2", 0),
                0u);
    }
    auto all = engine.read_all(1, 1000);
    ASSERT_TRUE(all.ok()) << all.status().to_string();
    int erased_seen = 0;
    for (const Event& event : all.value()) erased_seen += event.header.erased ? 1 : 0;
    EXPECT_EQ(erased_seen, 5);
  }

  [[nodiscard]] std::string keys_file() const { return dir_.path() + "/" + kKeysFileName; }

  // Writes both streams and erases customer-1, with a copy of KEYS as it was just before the
  // erasure left in `aside`; customer-1's id.
  std::uint64_t erase_with_keys_copied_before(const std::string& aside) {
    auto engine = open(encrypted());
    EXPECT_NE(engine, nullptr);
    if (engine == nullptr) return 0;
    append_both(*engine);
    const std::uint64_t id = engine->find_stream("customer-1").value();
    std::filesystem::copy_file(keys_file(), aside + "/" + kKeysFileName);
    EXPECT_TRUE(engine->erase_stream("customer-1").ok());
    EXPECT_TRUE(engine->close().ok());
    return id;
  }

  // An open finds the erasure of `id` done: the stream erased, its seed destroyed, the snapshot
  // key's first epoch ended.
  void expect_finished_at_open(std::uint64_t id) {
    auto engine = open(encrypted());
    ASSERT_NE(engine, nullptr);
    expect_erased_view(*engine, id);
    ASSERT_TRUE(engine->close().ok());
    engine.reset();
    auto keys = StoreCipher::open(dir_.path(), keys_);
    ASSERT_TRUE(keys.ok()) << keys.status().to_string();
    EXPECT_TRUE(keys.value()->erased(id));
    EXPECT_EQ(keys.value()->snapshot_epoch(), 1u);
  }

  // The engine's own state snapshots, so that an open reads the whole journal.
  void remove_state_snapshots() const {
    for (const auto& entry : std::filesystem::directory_iterator(dir_.path())) {
      if (entry.path().filename().string().starts_with("snapshot-_engine-")) std::filesystem::remove(entry.path());
    }
  }

  // Copies of the snapshot files, by name.
  std::map<std::string, std::string> copy_snapshots(const std::string& to) const {
    std::map<std::string, std::string> copied;
    for (const auto& entry : std::filesystem::directory_iterator(dir_.path())) {
      const std::string name = entry.path().filename().string();
      if (!name.starts_with("snapshot-")) continue;
      std::filesystem::copy_file(entry.path(), to + "/" + name, std::filesystem::copy_options::overwrite_existing);
      copied[name] = to + "/" + name;
    }
    return copied;
  }

  annal::test::TempDirectory dir_;
  std::shared_ptr<annal::test::MasterKeys> keys_ = std::make_shared<annal::test::MasterKeys>();
  int events_ = 0;
};

TEST_F(ErasureTest, AStoreInClearRefusesAndSaysWhy) {
  auto engine = open({});
  ASSERT_NE(engine, nullptr);
  append_both(*engine);
  const auto refused = engine->erase_stream("customer-1");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), ErrorCode::invalid_argument);
  EXPECT_NE(refused.status().message().find("not encrypted"), std::string::npos) << refused.status().to_string();
  auto read = engine->read_stream("customer-1", {});
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read.value().size(), 5u);
  ASSERT_TRUE(engine->close().ok());
}

// The erased stream's events as erased, the other's whole: at once, then reopened from the state
// snapshot written at close, from the journal alone, and read-only.
TEST_F(ErasureTest, AnErasedStreamReadsAsErasedEverywhereAndForAnyOpen) {
  for (const bool journal_alone : {false, true}) {
    SCOPED_TRACE(journal_alone ? "the state snapshots removed: the journal alone" : "from the state snapshot");
    std::filesystem::remove_all(dir_.path());
    auto engine = open(encrypted());
    ASSERT_NE(engine, nullptr);
    append_both(*engine);
    const std::uint64_t id = engine->find_stream("customer-1").value();
    auto live = std::make_shared<Seen>();
    ASSERT_TRUE(engine->add_projection("seen", live, {}).ok());
    const auto erasure = engine->erase_stream("customer-1");
    ASSERT_TRUE(erasure.ok()) << erasure.status().to_string();
    EXPECT_EQ(erasure.value(), engine->last_sequence());  // its record's
    expect_erased_view(*engine, id);

    // Its name starts a new stream.
    const std::string payload = "again";
    const EventData event{.type = "Changed", .payload = std::as_bytes(std::span(payload))};
    const auto renewed = engine->append("customer-1", ExpectedVersion::no_stream(), {&event, 1});
    ASSERT_TRUE(renewed.ok()) << renewed.status().to_string();
    EXPECT_NE(renewed.value().stream_id, id);
    EXPECT_EQ(renewed.value().first_version, 0u);
    ASSERT_TRUE(engine->wait_durable(renewed.value(), Engine::Clock::now() + 1min).ok());
    EXPECT_EQ(engine->erase_stream(StreamRef::id(id)).status().code(), ErrorCode::not_found);
    ASSERT_TRUE(engine->close().ok());
    engine.reset();
    if (journal_alone) remove_state_snapshots();

    engine = open(encrypted());
    ASSERT_NE(engine, nullptr);
    EXPECT_EQ(engine->open_report().state_snapshot != 0, !journal_alone);
    // The new customer-1 is the only one by that name.
    auto renamed = engine->read_stream("customer-1", {});
    ASSERT_TRUE(renamed.ok());
    ASSERT_EQ(renamed.value().size(), 1u);
    EXPECT_EQ(renamed.value()[0].header.stream_id, renewed.value().stream_id);
    auto replayed = std::make_shared<Seen>();
    ASSERT_TRUE(engine->add_projection("replayed", replayed, {}).ok());
    const std::uint64_t last = engine->last_sequence();
    ASSERT_TRUE(annal::test::eventually([&] { return engine->projection_status("replayed").value().applied >= last; }));
    ASSERT_TRUE(engine
                    ->query("replayed", last,
                            [&](const Projection&) {
                              EXPECT_EQ(replayed->erased, 5);
                              EXPECT_EQ(replayed->payloads.size(), 6u);  // customer-2's five, the new one
                            },
                            1min)
                    .ok());
    ASSERT_TRUE(engine->close().ok());
    engine.reset();

    auto read_only = Engine::open_read_only(dir_.path(), encrypted());
    ASSERT_TRUE(read_only.ok()) << read_only.status().to_string();
    auto by_id = read_only.value()->read_stream(StreamRef::id(id), {});
    ASSERT_TRUE(by_id.ok()) << by_id.status().to_string();
    ASSERT_EQ(by_id.value().size(), 5u);
    EXPECT_TRUE(by_id.value()[0].header.erased);
    EXPECT_EQ(read_only.value()->find_stream("customer-1"), renewed.value().stream_id);
  }
}

// A stream the application numbers itself: erased, it takes no more events, before and after a
// reopen, and reads as erased.
TEST_F(ErasureTest, AStreamOfTheApplicationsIdTakesNoEventsOnceErased) {
  const std::string payload = "sensor reading";
  const EventData event{.type = "Read", .payload = std::as_bytes(std::span(payload))};
  const StreamRef sensor = StreamRef::id(42);
  for (int run = 0; run < 2; ++run) {
    auto engine = open(encrypted());
    ASSERT_NE(engine, nullptr);
    if (run == 0) {
      const auto appended = engine->append(sensor, ExpectedVersion::no_stream(), {&event, 1});
      ASSERT_TRUE(appended.ok()) << appended.status().to_string();
      ASSERT_TRUE(engine->wait_durable(appended.value(), Engine::Clock::now() + 1min).ok());
      ASSERT_TRUE(engine->erase_stream(sensor).ok());
    }
    const auto refused = engine->append(sensor, ExpectedVersion::any(), {&event, 1});
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.status().code(), ErrorCode::invalid_argument);
    EXPECT_NE(refused.status().message().find("was erased"), std::string::npos) << refused.status().to_string();
    auto read = engine->read_stream(sensor, {});
    ASSERT_TRUE(read.ok()) << read.status().to_string();
    ASSERT_EQ(read.value().size(), 1u);
    EXPECT_TRUE(read.value()[0].header.erased);
    EXPECT_TRUE(read.value()[0].payload.empty());
    ASSERT_TRUE(engine->close().ok());
  }
}

// Erasures grow the key store; one that would take it past its limit (kStoreKeysBytesMax) is
// refused before its record is written, and leaves the stream readable and the engine writable,
// now and reopened. The store starts near the limit, as some 26,000 erasures would leave it: its
// key store is written before its first open (large_seed_tree.h), a few erasures short.
TEST_F(ErasureTest, AnErasureTheKeyFileCannotHoldIsRefusedBeforeAnythingChanges) {
  constexpr std::size_t kFixedBytes = 28 + 16 + 16 + 1 + 4;  // header, tag, opens and sealed_from, tree's count
  const crypto::StoreKeys near_full{
      .opens = 0, .sealed_from = 0, .seeds = annal::test::large_seed_tree((crypto::kStoreKeysBytesMax - kFixedBytes) / 41 - 400)};
  ASSERT_TRUE(crypto::save_store_keys(keys_file(), near_full, *keys_).ok());
  auto engine = open(encrypted());
  ASSERT_NE(engine, nullptr);
  // Ids far apart (below 2^62, where the tree has one node) share no path: each erasure adds
  // nearly 64 nodes.
  std::vector<std::uint64_t> ids;
  std::mt19937_64 random(7);
  const std::string payload = "reading";
  const EventData event{.type = "Read", .payload = std::as_bytes(std::span(payload))};
  Receipt last;
  for (int i = 0; i < 20; ++i) {
    ids.push_back(1 + random() % ((std::uint64_t{1} << 62) - 2));
    auto appended = engine->append(StreamRef::id(ids.back()), ExpectedVersion::any(), {&event, 1});
    ASSERT_TRUE(appended.ok()) << appended.status().to_string();
    last = appended.value();
  }
  ASSERT_TRUE(engine->wait_durable(last, Engine::Clock::now() + 1min).ok());
  std::optional<std::uint64_t> refused;
  int done = 0;
  const auto started = std::chrono::steady_clock::now();
  for (const std::uint64_t id : ids) {
    const auto erased = engine->erase_stream(StreamRef::id(id));
    if (erased.ok()) {
      ++done;
      continue;
    }
    std::printf("%d erasures into a %zu-node key store, %.0f ms each with the refused one\n", done,
                near_full.seeds.nodes(),
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count() / (done + 1));
    EXPECT_EQ(erased.status().code(), ErrorCode::invalid_argument);
    EXPECT_NE(erased.status().message().find("a key store may hold"), std::string::npos) << erased.status().to_string();
    refused = id;
    break;
  }
  EXPECT_GE(done, 1) << "no erasure fitted: the store began too full";
  ASSERT_TRUE(refused.has_value()) << "20 erasures fit: the limit was not reached";
  const std::uint64_t before = engine->last_sequence();
  ASSERT_TRUE(engine->writable().ok());
  for (int run = 0; run < 2; ++run) {
    auto read = engine->read_stream(StreamRef::id(*refused), {});
    ASSERT_TRUE(read.ok()) << read.status().to_string();
    ASSERT_EQ(read.value().size(), 1u);
    EXPECT_FALSE(read.value()[0].header.erased);
    EXPECT_EQ(engine->last_sequence(), before);  // no erasure record was written
    ASSERT_TRUE(engine->close().ok());
    engine = open(encrypted());
    ASSERT_NE(engine, nullptr);
  }
  ASSERT_TRUE(engine->close().ok());
}

// On a journal retention has cut (trim_journal), an erasure ends the epoch of snapshots the log can
// no longer rebuild: it goes ahead where no projection has one (the engine's own state is
// snapshotted anew), and is refused, naming the projection and changing nothing, where one has.
TEST_F(ErasureTest, OnATrimmedJournalAnErasureIsRefusedOnlyWhereAProjectionWouldLoseItsSnapshot) {
  Options options = encrypted();
  options.event_bytes_max = 2048;
  options.journal.segment_bytes_max = 16u << 10;
  options.journal.commit_bytes_max = 4u << 10;
  const std::string payload(1000, 'x');
  const auto fill = [&](Engine& engine) {
    Receipt last;
    for (int i = 0; i < 60; ++i) {
      const EventData event{.type = "Filled", .payload = std::as_bytes(std::span(payload))};
      auto appended = engine.append(i % 2 == 0 ? "customer-1" : "customer-2", ExpectedVersion::any(), {&event, 1});
      ASSERT_TRUE(appended.ok()) << appended.status().to_string();
      last = appended.value();
    }
    ASSERT_TRUE(engine.wait_durable(last, Engine::Clock::now() + 1min).ok());
  };
  // A store whose projection has snapshots: trimmed up to them, its erasure is refused.
  const auto add_payloads = [](Engine& engine) {
    const Status added = engine.add_projection("payloads", std::make_shared<Payloads>(), {});
    EXPECT_TRUE(added.ok()) << added.to_string();
  };
  {
    auto engine = open(options);
    ASSERT_NE(engine, nullptr);
    add_payloads(*engine);
    fill(*engine);
    ASSERT_TRUE(engine->close().ok());  // the engine's state and the projection's snapshotted
  }
  auto engine = open(options);
  ASSERT_NE(engine, nullptr);
  add_payloads(*engine);
  fill(*engine);  // past the snapshots retention cuts up to
  const auto first = engine->trim_journal();
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  ASSERT_GT(first.value(), 1u) << "retention removed nothing";
  const std::uint64_t before = engine->last_sequence();
  const auto refused = engine->erase_stream("customer-1");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), ErrorCode::invalid_argument);
  EXPECT_NE(refused.status().message().find("projection payloads has a snapshot"), std::string::npos)
      << refused.status().to_string();
  EXPECT_EQ(engine->last_sequence(), before);
  // What retention kept: the events of both streams, none erased.
  const auto erased_of = [](Engine& store, std::uint64_t from) {
    const auto left = store.read_all(from, 1000);
    EXPECT_TRUE(left.ok()) << left.status().to_string();
    std::pair<std::size_t, std::size_t> counted{0, left.ok() ? left.value().size() : 0};
    for (const Event& event : left.ok() ? left.value() : std::vector<Event>{}) counted.first += event.header.erased ? 1 : 0;
    return counted;
  };
  const auto unchanged = erased_of(*engine, first.value());
  EXPECT_EQ(unchanged.first, 0u);
  EXPECT_GT(unchanged.second, 0u);
  ASSERT_TRUE(engine->close().ok());

  // The same without a projection: the erasure goes ahead, and holds after a reopen.
  annal::test::TempDirectory plain;
  std::uint64_t kept_from = 0;
  for (int run = 0; run < 3; ++run) {
    auto opened = Engine::open(plain.path(), options);
    ASSERT_TRUE(opened.ok()) << opened.status().to_string();
    Engine& store = *opened.value();
    if (run == 0) fill(store);
    if (run == 1) {
      fill(store);  // past the state snapshot retention cuts up to
      const auto cut = store.trim_journal();
      ASSERT_TRUE(cut.ok() && cut.value() > 1) << "retention removed nothing";
      kept_from = cut.value();
      const auto erased = store.erase_stream("customer-1");
      ASSERT_TRUE(erased.ok()) << erased.status().to_string();
    }
    if (run == 2) {
      EXPECT_EQ(store.find_stream("customer-1"), std::nullopt);
      const auto [erased, total] = erased_of(store, kept_from);
      EXPECT_GT(erased, 0u) << "what retention kept of customer-1 reads as erased";
      EXPECT_LT(erased, total) << "customer-2 reads as it was";
    }
    ASSERT_TRUE(store.close().ok());
  }
}

// Appends to other streams and a live subscription go on while a stream is erased: each of them
// sees every event once, the erased stream's events before the erasure as they were appended
// (the subscription read them live) or as erased (read after), never an error. (Under TSan too.)
TEST_F(ErasureTest, AppendsAndASubscriptionGoOnWhileAStreamIsErased) {
  auto engine = open(encrypted());
  ASSERT_NE(engine, nullptr);
  append_both(*engine);
  auto subscription = engine->subscribe(1);
  ASSERT_TRUE(subscription.ok()) << subscription.status().to_string();
  constexpr int kPerThread = 300;
  std::vector<std::thread> appenders;
  std::atomic<int> failures{0};
  for (int t = 0; t < 2; ++t) {
    appenders.emplace_back([&, t] {
      const std::string payload = "steady " + std::to_string(t);
      const EventData event{.type = "Changed", .payload = std::as_bytes(std::span(payload))};
      for (int i = 0; i < kPerThread; ++i) {
        if (!engine->append("steady-" + std::to_string(t), ExpectedVersion::any(), {&event, 1}).ok()) ++failures;
      }
    });
  }
  const auto erased = engine->erase_stream("customer-1");
  for (std::thread& appender : appenders) appender.join();
  ASSERT_TRUE(erased.ok()) << erased.status().to_string();
  EXPECT_EQ(failures.load(), 0);
  const std::uint64_t last = engine->last_sequence();
  int events = 0;
  while (subscription.value()->position() <= last) {
    auto event = subscription.value()->next(Engine::Clock::now() + 1min);
    if (event.code() == ErrorCode::timed_out && subscription.value()->position() > last) break;
    ASSERT_TRUE(event.ok()) << event.status().to_string();
    ++events;
  }
  EXPECT_EQ(events, 10 + 2 * kPerThread);
  subscription.value().reset();
  ASSERT_TRUE(engine->close().ok());
}

// A live subscription (Engine::subscribe, as the server's /subscribe feed uses) one event behind
// when that event's stream is erased reads it after erase_stream has returned. Reads,
// subscriptions and replays show an erased stream's events flagged erased, without payload
// (engine.h erase_stream, docs/security.md): the event it reads must be so. It reads the ring's
// copy of the event, made when it was appended, which has the payload in clear.
TEST_F(ErasureTest, ALiveSubscriptionReadsAnEventOfAStreamErasedSinceAsErased) {
  auto engine = open(encrypted());
  ASSERT_NE(engine, nullptr);
  append_both(*engine);
  auto subscription = engine->subscribe(1);
  ASSERT_TRUE(subscription.ok()) << subscription.status().to_string();
  Subscription& live = *subscription.value();
  // Caught up with the journal: a seat taken in the ring.
  for (;;) {
    auto event = live.next(Engine::Clock::now() + 200ms);
    if (event.code() == ErrorCode::timed_out) break;
    ASSERT_TRUE(event.ok()) << event.status().to_string();
  }
  ASSERT_TRUE(live.live());
  const std::string secret = "customer-1 the secret";
  const EventData event{.type = "Changed", .payload = std::as_bytes(std::span(secret))};
  const auto appended = engine->append("customer-1", ExpectedVersion::any(), {&event, 1});
  ASSERT_TRUE(appended.ok()) << appended.status().to_string();
  ASSERT_TRUE(engine->wait_durable(appended.value(), Engine::Clock::now() + 1min).ok());
  const auto erased = engine->erase_stream("customer-1");
  ASSERT_TRUE(erased.ok()) << erased.status().to_string();

  auto read = live.next(Engine::Clock::now() + 1min);
  ASSERT_TRUE(read.ok()) << read.status().to_string();
  const EventView& view = read.value();
  ASSERT_EQ(view.header.sequence, appended.value().last_sequence);
  const std::string payload(reinterpret_cast<const char*>(view.payload.data()), view.payload.size());
  EXPECT_TRUE(view.header.erased) << "read after erase_stream returned, not flagged erased (stream name '"
                                  << view.header.stream_name << "', id " << view.header.stream_id << ")";
  EXPECT_TRUE(view.payload.empty()) << "the erased payload read after erase_stream returned: " << payload;
  subscription.value().reset();
  ASSERT_TRUE(engine->close().ok());
}

// A projection that asks to be rebuilt after an erasure (ProjectionOptions::rebuild_after_erasure)
// is, at once: a fresh instance replays the log and answers queries under its name, without the
// erased payloads. One that does not ask keeps what it had until the engine is reopened.
TEST_F(ErasureTest, AProjectionThatAsksIsRebuiltAtOnceWithoutTheErasedData) {
  auto engine = open(encrypted());
  ASSERT_NE(engine, nullptr);
  auto kept = std::make_shared<Payloads>();
  ASSERT_TRUE(engine->add_projection("kept", kept, {}).ok());
  int made = 0;
  ASSERT_TRUE(engine
                  ->add_projection("rebuilt", std::make_shared<Payloads>(),
                                   {.rebuild_after_erasure = [&made] {
                                     ++made;
                                     return std::make_shared<Payloads>();
                                   }})
                  .ok());
  append_both(*engine);
  // "kept" holds customer-1's payloads before the erasure: a runner that had not read them yet
  // would read them erased.
  ASSERT_TRUE(engine->query("kept", engine->durable_sequence(), [](const Projection&) {}, 1min).ok());
  const auto erasure = engine->erase_stream("customer-1");
  ASSERT_TRUE(erasure.ok()) << erasure.status().to_string();
  EXPECT_EQ(made, 1);
  const auto state_of = [&](const std::string& name) {
    std::pair<bool, std::size_t> out{true, 0};
    const Status asked = engine->query(name, erasure.value(), [&](const Projection& projection) {
      const auto& payloads = dynamic_cast<const Payloads&>(projection);
      out = {holds_erased(payloads), payloads.seen.size()};
    }, 1min);
    EXPECT_TRUE(asked.ok()) << asked.to_string();
    return out;
  };
  EXPECT_EQ(state_of("rebuilt"), std::make_pair(false, std::size_t{10}));  // customer-1's five arrive erased
  EXPECT_EQ(engine->projection_status("rebuilt").value().restored_from, 0u);
  EXPECT_EQ(state_of("kept"), std::make_pair(true, std::size_t{10}));  // until the engine is reopened
  ASSERT_TRUE(engine->close().ok());
}

// Records the erasures it is told of (Projection::stream_erased), from whichever thread tells.
// `on_resume` runs while add_projection makes it (resume_after), before it is added.
struct Told final : Projection {
  void apply(const EventView&) override {}
  Result<std::optional<std::uint64_t>> resume_after() override {
    if (on_resume) on_resume();
    return std::optional<std::uint64_t>{};
  }
  void stream_erased(std::uint64_t stream_id, std::uint64_t erased_at) override {
    std::lock_guard lock(mutex);
    erasures.emplace_back(stream_id, erased_at);
  }
  std::vector<std::pair<std::uint64_t, std::uint64_t>> told() const {
    std::lock_guard lock(mutex);
    return erasures;
  }
  std::function<void()> on_resume;
  mutable std::mutex mutex;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> erasures;
};

// Every projection is told of an erasure (the stream's id, the erasure record's sequence) once,
// by the time erase_stream returns: an exporter drops what of the stream it holds unsent. One
// being added meanwhile, which the erasure cannot reach yet, is told as add_projection adds it.
TEST_F(ErasureTest, EveryProjectionIsToldOfAnErasureOnce) {
  auto engine = open(encrypted());
  ASSERT_NE(engine, nullptr);
  auto running = std::make_shared<Told>();
  ASSERT_TRUE(engine->add_projection("running", running, {}).ok());
  append_both(*engine);
  const std::optional<std::uint64_t> id = engine->find_stream("customer-1");
  ASSERT_TRUE(id);
  auto adding = std::make_shared<Told>();
  std::optional<Result<std::uint64_t>> erasure;
  adding->on_resume = [&] {
    erasure = engine->erase_stream("customer-1");
    EXPECT_EQ(running->told().size(), 1u);  // before erase_stream returned
  };
  ASSERT_TRUE(engine->add_projection("adding", adding, {}).ok());
  ASSERT_TRUE(erasure && erasure->ok()) << (erasure ? erasure->status().to_string() : "not erased");
  const std::vector<std::pair<std::uint64_t, std::uint64_t>> expected{{*id, erasure->value()}};
  EXPECT_EQ(running->told(), expected);
  EXPECT_EQ(adding->told(), expected);
  ASSERT_TRUE(engine->close().ok());
}

// A retry of an append to a stream erased since (the same event ids, the name given again) is the
// same append: the original's receipt comes back as a duplicate, nothing is appended, and the
// name stays forgotten.
TEST_F(ErasureTest, ARetryOfAnAppendToAnErasedStreamIsADuplicate) {
  auto engine = open(encrypted());
  ASSERT_NE(engine, nullptr);
  const std::string payload = "personal data";
  const EventData event{.type = "Changed", .payload = std::as_bytes(std::span(payload)), .event_id = {.hi = 9, .lo = 9}};
  const auto first = engine->append("customer-9", ExpectedVersion::no_stream(), {&event, 1});
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  ASSERT_TRUE(engine->erase_stream("customer-9").ok());
  const std::uint64_t last = engine->last_sequence();
  const auto retried = engine->append("customer-9", ExpectedVersion::any(), {&event, 1});
  ASSERT_TRUE(retried.ok()) << retried.status().to_string();
  EXPECT_TRUE(retried.value().duplicate);
  EXPECT_EQ(retried.value().stream_id, first.value().stream_id);
  EXPECT_EQ(engine->last_sequence(), last);
  EXPECT_EQ(engine->find_stream("customer-9"), std::nullopt);
  ASSERT_TRUE(engine->close().ok());
}

// A crash after the erasure record was durable but before the key was destroyed leaves KEYS as it
// was before, and no state snapshot from after the record: here, KEYS put back as it was and the
// state snapshots removed. The next open destroys the key before anything reads, and ends the
// snapshot key's epoch.
TEST_F(ErasureTest, AnErasureCutShortBeforeItsKeyIsDestroyedIsFinishedAtOpen) {
  const annal::test::TempDirectory aside;
  const std::uint64_t id = erase_with_keys_copied_before(aside.path());
  std::filesystem::copy_file(aside.path() + "/" + kKeysFileName, keys_file(),
                             std::filesystem::copy_options::overwrite_existing);
  // A crash before the key's end comes before the state snapshot the erasure writes after it.
  remove_state_snapshots();
  {
    auto keys = StoreCipher::open(dir_.path(), keys_);
    ASSERT_TRUE(keys.ok()) << keys.status().to_string();
    EXPECT_FALSE(keys.value()->erased(id));  // the key is back, as a crash would have left it
  }
  expect_finished_at_open(id);
}

// A crash after the erasure's new state snapshot (under the next snapshot key epoch) but before
// the epochs below were ended leaves KEYS with the stream's seed destroyed and the old epoch whole:
// here, such a KEYS made from the one before the erasure. The next open ends the old epoch.
TEST_F(ErasureTest, AnErasureCutShortAfterItsNewSnapshotEndsTheOldEpochAtOpen) {
  const annal::test::TempDirectory aside;
  const std::uint64_t id = erase_with_keys_copied_before(aside.path());
  {
    auto keys = StoreCipher::open(aside.path(), keys_);
    ASSERT_TRUE(keys.ok()) << keys.status().to_string();
    ASSERT_TRUE(keys.value()->erase(id).ok());  // the stream's seed only
    EXPECT_EQ(keys.value()->snapshot_epoch(), 0u);
  }
  std::filesystem::copy_file(aside.path() + "/" + kKeysFileName, keys_file(),
                             std::filesystem::copy_options::overwrite_existing);
  expect_finished_at_open(id);
}

// Snapshots taken before an erasure (a projection's, holding the erased stream's payloads, and the
// engine's state, holding its name) cannot be read after it, with the master key, even as copies
// put back into the directory: the engine passes over them, inspect says why, and the projection
// rebuilds from the journal without the erased data.
TEST_F(ErasureTest, SnapshotsTakenBeforeAnErasureCannotBeReadAfterIt) {
  const annal::test::TempDirectory aside;
  std::map<std::string, std::string> backup;
  {
    auto engine = open(encrypted());
    ASSERT_NE(engine, nullptr);
    ASSERT_TRUE(engine->add_projection("payloads", std::make_shared<Payloads>(), {}).ok());
    append_both(*engine);
    const std::uint64_t last = engine->last_sequence();
    ASSERT_TRUE(annal::test::eventually([&] { return engine->projection_status("payloads").value().applied >= last; }));
    ASSERT_TRUE(engine->close().ok());  // snapshots the projection and the engine's state
    backup = copy_snapshots(aside.path());
    ASSERT_EQ(backup.size(), 2u);
  }
  {
    auto engine = open(encrypted());
    ASSERT_NE(engine, nullptr);
    ASSERT_TRUE(engine->erase_stream("customer-1").ok());
    ASSERT_TRUE(engine->close().ok());
  }
  for (const auto& [name, copy] : backup) {  // the backup put back
    std::filesystem::copy_file(copy, dir_.path() + "/" + name, std::filesystem::copy_options::overwrite_existing);
  }
  auto engine = open(encrypted());
  ASSERT_NE(engine, nullptr);
  EXPECT_EQ(engine->find_stream("customer-1"), std::nullopt);
  auto reports = engine->inspect_snapshots(true);
  ASSERT_TRUE(reports.ok()) << reports.status().to_string();
  int unreadable = 0;
  for (const auto& report : reports.value()) {
    if (!backup.contains(report.file)) continue;
    EXPECT_EQ(report.status.code(), ErrorCode::not_found) << report.file << ": " << report.status.to_string();
    EXPECT_NE(report.status.message().find("an erasure destroyed"), std::string::npos) << report.status.to_string();
    ++unreadable;
  }
  EXPECT_EQ(unreadable, 2);
  auto projection = std::make_shared<Payloads>();
  ASSERT_TRUE(engine->add_projection("payloads", projection, {}).ok());
  const std::uint64_t last = engine->last_sequence();
  ASSERT_TRUE(engine
                  ->query("payloads", last,
                          [&](const Projection&) {
                            EXPECT_FALSE(holds_erased(*projection));
                            EXPECT_EQ(projection->seen.size(), 10u);  // customer-2's five, customer-1's five erased
                          },
                          1min)
                  .ok());
  ASSERT_TRUE(engine->close().ok());
}

}  // namespace
}  // namespace annal::engine
