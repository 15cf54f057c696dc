// The engine on the fault-injecting I/O backend: power cuts at random points of the writer's work,
// failed fdatasyncs, a full disk. What was acknowledged durable survives whole; an append is all
// or nothing; names survive with the events that use them.
#include <gtest/gtest.h>

#include <cerrno>
#include <map>
#include <random>
#include <thread>

#include "annal/engine/engine.h"
#include "engine_fixture.h"
#include "eventually.h"
#include "annal/snapshots/snapshot_format.h"
#include "annal/snapshots/snapshot_store.h"
#include "fault_backend.h"
#include "master_keys.h"

namespace annal::engine::test {
namespace {

using journal::FaultBackend;

constexpr const char* kDir = "/engine";

Options fault_options() {
  Options options = small_options();
  options.journal.segment_bytes_max = 16384;
  options.journal.commit_bytes_max = 4096;
  options.event_bytes_max = 512;
  options.events_per_append_max = 8;
  options.ring_capacity = 64;
  return options;
}

// One append as the test made it: which stream, the versions it took, and its events' texts.
struct Made {
  std::string stream;
  std::uint64_t first_version;
  std::vector<std::string> texts;
};

// Every stream read back is a run of whole appends, in order, with the right bytes, and holds at
// least every append that was acknowledged durable.
void expect_whole_appends(Engine& engine, const std::vector<Made>& made, const std::map<std::string, std::size_t>& acknowledged) {
  std::map<std::string, std::vector<const Made*>> by_stream;
  for (const Made& m : made) by_stream[m.stream].push_back(&m);
  for (const auto& [stream, appends] : by_stream) {
    const auto events = engine.read_stream(stream, {}, soon());
    ASSERT_TRUE(events.ok()) << events.status().to_string();
    std::size_t at = 0, whole = 0;
    for (const Made* m : appends) {
      if (at == events.value().size()) break;
      for (std::size_t i = 0; i < m->texts.size(); ++i, ++at) {
        ASSERT_LT(at, events.value().size()) << stream << ": an append came back in part";
        ASSERT_EQ(events.value()[at].header.version, m->first_version + i);
        ASSERT_EQ(text_of(events.value()[at].payload), m->texts[i]);
      }
      ++whole;
    }
    ASSERT_EQ(at, events.value().size()) << stream << ": events nobody appended";
    const auto found = acknowledged.find(stream);
    if (found != acknowledged.end()) {
      ASSERT_GE(whole, found->second) << stream << " lost an acknowledged append";
    }
  }
}

// Every other seed encrypted at rest: the key store goes through the same backend as the log.
TEST(EngineFaults, APowerCutKeepsEveryAcknowledgedAppendAndNoPartOfAnyOther) {
  std::size_t cut_inside = 0;
  const auto keys = std::make_shared<annal::test::MasterKeys>();
  for (std::uint64_t seed = 1; seed <= 40; ++seed) {
    Options options = fault_options();
    if (seed % 2 == 0) options.encryption = keys;
    SCOPED_TRACE("seed " + std::to_string(seed) + (options.encryption ? ", encrypted" : ", in clear"));
    auto io = std::make_shared<FaultBackend>(seed);
    std::mt19937_64 random(seed);
    std::vector<Made> made;
    std::map<std::string, std::size_t> acknowledged;  // stream -> appends acknowledged durable
    {
      auto engine = Engine::open(kDir, options, io);
      ASSERT_TRUE(engine.ok()) << engine.status().to_string();
      io->crash_before(5 + random() % 60);
      for (int i = 0; i < 200; ++i) {
        const std::string stream = "order-" + std::to_string(random() % 6);
        const std::size_t count = 1 + random() % 4;
        const auto version = engine.value()->stream_version(stream);
        const std::uint64_t first = version ? *version + 1 : 0;
        Made m{stream, first, {}};
        std::vector<std::vector<std::byte>> payloads;
        std::vector<EventData> events;
        for (std::size_t e = 0; e < count; ++e) {
          m.texts.push_back(stream + "/" + std::to_string(first + e) + std::string(random() % 300, '.'));
          payloads.push_back(bytes_of(m.texts.back()));
        }
        std::vector<std::string> types;  // new type names appear as the test goes on
        for (std::size_t e = 0; e < count; ++e) types.push_back("Type" + std::to_string(random() % 5));
        for (std::size_t e = 0; e < count; ++e) events.push_back({.type = types[e], .payload = payloads[e]});
        const auto receipt = engine.value()->append(stream, version ? ExpectedVersion::exactly(*version)
                                                                    : ExpectedVersion::no_stream(), events);
        if (!receipt.ok()) break;  // the power is out
        made.push_back(m);
        if (i % 3 == 0) {
          if (!engine.value()->wait_durable(receipt.value(), soon()).ok()) break;
          std::size_t& count_acknowledged = acknowledged[stream];
          // Everything made to this stream so far is durable with it.
          count_acknowledged = 0;
          for (const Made& earlier : made) count_acknowledged += earlier.stream == stream;
        }
      }
      (void)engine.value()->close();
      io->crash();
    }
    io->revive();
    auto engine = Engine::open(kDir, options, io);
    ASSERT_TRUE(engine.ok()) << engine.status().to_string();
    cut_inside += engine.value()->last_sequence() > 0 && !made.empty();
    expect_whole_appends(*engine.value(), made, acknowledged);
    if (::testing::Test::HasFatalFailure()) return;
  }
  EXPECT_GT(cut_inside, 20u);
}

// Durability::none acknowledges what reached the page cache. After a power cut the engine's state
// snapshots (and the LOCK notice) may stand past what the log kept: that is the mode's promise, not
// a loss of acknowledged events, and the next open goes on.
TEST(EngineFaults, APowerCutUnderDurabilityNoneReopensWithoutALossVerdict) {
  std::size_t snapshot_past_the_log = 0;
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    auto io = std::make_shared<FaultBackend>(seed);
    Options options = fault_options();
    options.journal.durability = journal::Durability::none;
    options.state_snapshot_every_events = 50;
    std::uint64_t last = 0;
    {
      auto engine = Engine::open(kDir, options, io);
      ASSERT_TRUE(engine.ok()) << engine.status().to_string();
      const auto payload = bytes_of("x");
      const EventData event{.type = "T", .payload = payload};
      for (int i = 0; i < 300; ++i) {
        const auto receipt = engine.value()->append("s", ExpectedVersion::any(), {&event, 1});
        ASSERT_TRUE(receipt.ok());
        last = receipt.value().last_sequence;
      }
      const auto snapshots = [&] {
        snapshots::SnapshotStore store(kDir, io, 1);
        const auto all = store.sequences("_engine");
        return all.ok() && !all.value().empty() ? all.value().back() : 0;
      };
      ASSERT_TRUE(annal::test::eventually([&] { return snapshots() >= last - 50; })) << "no state snapshot near " << last;
      io->crash();  // the power goes: no close
    }
    io->revive();
    auto engine = Engine::open(kDir, options, io);
    ASSERT_TRUE(engine.ok()) << engine.status().to_string();
    EXPECT_TRUE(engine.value()->open_report().data_loss.empty());
    snapshot_past_the_log += engine.value()->last_sequence() < last;
  }
  EXPECT_GT(snapshot_past_the_log, 0u) << "no power cut took back anything written";
}

TEST(EngineFaults, AFailedSyncStopsTheEngineAndFailsItsWaiters) {
  auto io = std::make_shared<FaultBackend>(7);
  auto engine = Engine::open(kDir, fault_options(), io);
  ASSERT_TRUE(engine.ok()) << engine.status().to_string();
  const EventData event{.type = "T"};
  const auto before = engine.value()->append("s", ExpectedVersion::no_stream(), {&event, 1});
  ASSERT_TRUE(before.ok());
  ASSERT_TRUE(engine.value()->wait_durable(before.value(), soon()).ok());
  io->fail_sync(1, EIO, /*persistent=*/true);
  const auto doomed = engine.value()->append("s", ExpectedVersion::exactly(0), {&event, 1});
  ASSERT_TRUE(doomed.ok());  // sequenced; the sync that would make it durable fails
  auto future = engine.value()->durable_future(doomed.value());
  const Status waited = engine.value()->wait_durable(doomed.value(), soon());
  EXPECT_EQ(waited.code(), ErrorCode::failed) << waited.to_string();
  EXPECT_NE(waited.message().find("fdatasync"), std::string::npos);
  ASSERT_EQ(future.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_FALSE(future.get().ok());
  // Fail-stop: nothing more is taken, the earlier durable event stays readable.
  EXPECT_FALSE(engine.value()->append("s", ExpectedVersion::any(), {&event, 1}).ok());
  EXPECT_EQ(engine.value()->durable_sequence(), before.value().last_sequence);
  const Status writable = engine.value()->writable();  // what a readiness probe reports
  EXPECT_EQ(writable.code(), ErrorCode::failed) << writable.to_string();
  EXPECT_NE(writable.message().find("fdatasync"), std::string::npos) << writable.to_string();
  EXPECT_FALSE(engine.value()->close().ok());
}

TEST(EngineFaults, ALiveSubscriptionReportsTheFailureInsteadOfWaitingForEver) {
  auto io = std::make_shared<FaultBackend>(11);
  auto engine = Engine::open(kDir, fault_options(), io);
  ASSERT_TRUE(engine.ok()) << engine.status().to_string();
  auto subscription = engine.value()->subscribe(1);
  ASSERT_TRUE(subscription.ok());
  const EventData event{.type = "T"};
  ASSERT_TRUE(engine.value()->append("s", ExpectedVersion::any(), {&event, 1}).ok());
  ASSERT_TRUE(subscription.value()->next(soon()).ok());
  ASSERT_EQ(subscription.value()->next(Engine::Clock::now() + std::chrono::milliseconds(20)).code(), ErrorCode::timed_out);
  ASSERT_TRUE(subscription.value()->live());
  io->fail_sync(1, EIO, /*persistent=*/true);
  ASSERT_TRUE(engine.value()->append("s", ExpectedVersion::any(), {&event, 1}).ok());
  const auto next = subscription.value()->next(soon());
  EXPECT_EQ(next.code(), ErrorCode::failed) << next.status().to_string();
  subscription.value().reset();
}

// What open() rebuilds, read back: every stream's versions and bytes, and retries answered.
struct Seen {
  std::map<std::string, std::vector<std::string>> streams;
  bool operator==(const Seen&) const = default;
};
Seen read_back(Engine& engine, int streams) {
  Seen out;
  for (int k = 0; k < streams; ++k) {
    const std::string stream = "s" + std::to_string(k);
    const auto events = engine.read_stream(stream, {}, soon());
    EXPECT_TRUE(events.ok()) << events.status().to_string();
    for (const Event& e : events.value()) out.streams[stream].push_back(std::string(e.header.type) + ":" + text_of(e.payload));
  }
  return out;
}

// A crash with state snapshots every 50 events: open() starts from the newest one the crash left
// and reads only the journal after it, and ends up where reading the whole journal does.
TEST(EngineFaults, OpenStartsFromTheNewestStateSnapshotAndRebuildsTheSameState) {
  auto io = std::make_shared<FaultBackend>(12);
  Options options = fault_options();
  options.state_snapshot_every_events = 50;
  std::uint64_t last = 0;
  {
    auto engine = Engine::open(kDir, options, io);
    ASSERT_TRUE(engine.ok()) << engine.status().to_string();
    for (int i = 0; i < 530; ++i) {
      const auto payload = bytes_of("e" + std::to_string(i));
      const EventData event{.type = i % 3 == 0 ? "Created" : "Changed", .payload = payload,
                            .event_id = {77, static_cast<std::uint64_t>(i) + 1}};
      const auto receipt = engine.value()->append("s" + std::to_string(i % 9), ExpectedVersion::any(), {&event, 1});
      ASSERT_TRUE(receipt.ok()) << receipt.status().to_string();
      last = receipt.value().last_sequence;
    }
    ASSERT_TRUE(engine.value()->wait_durable({.last_sequence = last}, soon()).ok());
    // The snapshotter is asynchronous: wait for it to write the last one due (a minute: a hang guard).
    const auto newest_state_snapshot = [&] {
      std::uint64_t newest = 0;
      const auto files = io->list(kDir);
      for (const auto& file : files.value()) {
        if (const auto at = snapshots::parse_snapshot_file_name(file, "_engine")) newest = std::max(newest, *at);
      }
      return newest;
    };
    ASSERT_TRUE(annal::test::eventually([&] { return newest_state_snapshot() + 60 >= last; }))
        << "the state snapshotter did not catch up within a minute";
    io->crash();  // no close: the snapshot at close never happens
  }
  io->revive();
  auto engine = Engine::open(kDir, options, io);
  ASSERT_TRUE(engine.ok()) << engine.status().to_string();
  const OpenReport report = engine.value()->open_report();
  EXPECT_GT(report.state_snapshot, 0u);
  // The journal after the snapshot: at most one interval of events, plus the names they define.
  EXPECT_LE(report.records_replayed, 50u + 12u) << "from " << report.state_snapshot;
  EXPECT_EQ(engine.value()->last_sequence(), last);
  const Seen with_snapshot = read_back(*engine.value(), 9);
  const EventData retry{.type = "Created", .payload = {}, .event_id = {77, 1}};
  EXPECT_TRUE(engine.value()->append("s0", ExpectedVersion::any(), {&retry, 1}).value().duplicate);
  EXPECT_TRUE(engine.value()->close().ok());  // and a state snapshot at close

  auto reopened = Engine::open(kDir, options, io);
  ASSERT_TRUE(reopened.ok());
  EXPECT_EQ(reopened.value()->open_report().state_snapshot, last);
  EXPECT_EQ(reopened.value()->open_report().records_replayed, 0u);
  EXPECT_EQ(read_back(*reopened.value(), 9), with_snapshot);
  ASSERT_TRUE(reopened.value()->close().ok());
  // Without any snapshot: the same state from the whole journal.
  const auto files = io->list(kDir);
  for (const auto& file : files.value()) {
    if (file.starts_with("snapshot-_engine-")) {
      ASSERT_TRUE(io->remove(std::string(kDir) + "/" + file).ok());
    }
  }
  auto full = Engine::open(kDir, options, io);
  ASSERT_TRUE(full.ok());
  EXPECT_EQ(full.value()->open_report().state_snapshot, 0u);
  EXPECT_EQ(read_back(*full.value(), 9), with_snapshot);
  EXPECT_TRUE(full.value()->append("s0", ExpectedVersion::any(), {&retry, 1}).value().duplicate);
  ASSERT_TRUE(full.value()->close().ok());

  // A snapshot whose checksums hold but whose state does not decode (one byte short: found only
  // after every name and stream went in): open() reads the whole journal into fresh objects.
  snapshots::SnapshotStore store(kDir, io, 3);
  auto newest = store.newest("_engine", 1, UINT64_MAX);
  ASSERT_TRUE(newest.ok() && newest.value().has_value());
  const std::uint64_t at = newest.value()->header.sequence;
  const std::vector<std::byte> short_state(newest.value()->state.begin(), newest.value()->state.end() - 1);
  const auto stored = io->list(kDir);
  for (const auto& file : stored.value()) {
    if (file.starts_with("snapshot-_engine-")) {
      ASSERT_TRUE(io->remove(std::string(kDir) + "/" + file).ok());
    }
  }
  ASSERT_TRUE(store.write("_engine", 1, at, short_state).ok());
  auto undecodable = Engine::open(kDir, options, io);
  ASSERT_TRUE(undecodable.ok()) << undecodable.status().to_string();
  EXPECT_EQ(undecodable.value()->open_report().state_snapshot, 0u);
  EXPECT_EQ(read_back(*undecodable.value(), 9), with_snapshot);
  EXPECT_TRUE(undecodable.value()->append("s0", ExpectedVersion::any(), {&retry, 1}).value().duplicate);
}

TEST(EngineFaults, AFullDiskRefusesAppendsWithNoSpace) {
  auto io = std::make_shared<FaultBackend>(9);
  io->set_space_limit(40000);
  auto engine = Engine::open(kDir, fault_options(), io);
  ASSERT_TRUE(engine.ok()) << engine.status().to_string();
  const std::vector<std::byte> payload(400);
  const EventData event{.type = "T", .payload = payload};
  Status failure;
  for (int i = 0; i < 1000 && failure.ok(); ++i) {
    const auto receipt = engine.value()->append("s", ExpectedVersion::any(), {&event, 1});
    if (!receipt.ok()) {
      failure = receipt.status();
    } else {
      failure = engine.value()->wait_durable(receipt.value(), soon());
    }
  }
  EXPECT_EQ(failure.code(), ErrorCode::no_space) << failure.to_string();
}

// erase_stream cut by a power cut before each write and sync of its work in turn (the erasure
// record, the key store rewritten without the stream's seed, the state snapshot under the next
// key epoch, the key store again without the old epoch): reopened, the stream is wholly readable
// or wholly erased (an erasure whose record was durable is finished at open), and the other
// stream is whole. The key store goes through the same backend, so the cut reaches it too.
TEST(EngineFaults, APowerCutAnywhereInAnErasureLeavesTheStreamWhollyReadableOrWhollyErased) {
  Options options = fault_options();
  options.encryption = std::make_shared<annal::test::MasterKeys>();
  std::size_t erased = 0, readable = 0;
  for (std::uint64_t cut = 1;; ++cut) {
    SCOPED_TRACE("power cut before the erasure's write or sync " + std::to_string(cut));
    ASSERT_LT(cut, 500u) << "the erasure never finished before the cut";
    auto io = std::make_shared<FaultBackend>(cut);
    std::uint64_t gone_id = 0;
    bool finished = false;
    {
      auto engine = Engine::open(kDir, options, io);
      ASSERT_TRUE(engine.ok()) << engine.status().to_string();
      Receipt last;
      for (int i = 0; i < 4; ++i) {
        for (const std::string stream : {"gone", "kept"}) {
          const auto payload = bytes_of(stream + " " + std::to_string(i));
          const EventData event{.type = "Changed", .payload = payload};
          const auto receipt = engine.value()->append(stream, ExpectedVersion::any(), {&event, 1});
          ASSERT_TRUE(receipt.ok()) << receipt.status().to_string();
          last = receipt.value();
        }
      }
      ASSERT_TRUE(engine.value()->wait_durable(last, soon()).ok());
      gone_id = engine.value()->find_stream("gone").value();
      io->crash_before(cut);
      finished = engine.value()->erase_stream("gone").ok();
      (void)engine.value()->close();
      io->crash();
    }
    io->revive();
    auto engine = Engine::open(kDir, options, io);
    ASSERT_TRUE(engine.ok()) << engine.status().to_string();
    const auto kept = engine.value()->read_stream("kept", {}, soon());
    ASSERT_TRUE(kept.ok()) << kept.status().to_string();
    ASSERT_EQ(kept.value().size(), 4u);
    for (std::size_t i = 0; i < 4; ++i) EXPECT_EQ(text_of(kept.value()[i].payload), "kept " + std::to_string(i));
    const auto gone = engine.value()->read_stream(StreamRef::id(gone_id), {}, soon());
    ASSERT_TRUE(gone.ok()) << gone.status().to_string();
    ASSERT_EQ(gone.value().size(), 4u);
    const bool is_erased = gone.value()[0].header.erased;
    for (std::size_t i = 0; i < 4; ++i) {
      const Event& event = gone.value()[i];
      ASSERT_EQ(event.header.erased, is_erased) << "event " << i << " of the stream: erased in part";
      EXPECT_EQ(event.header.version, i);
      EXPECT_EQ(text_of(event.payload), is_erased ? "" : "gone " + std::to_string(i));
    }
    EXPECT_EQ(engine.value()->find_stream("gone"), is_erased ? std::nullopt : std::optional<std::uint64_t>(gone_id));
    EXPECT_TRUE(!finished || is_erased) << "erase_stream returned, and the stream came back";
    (is_erased ? erased : readable) += 1;
    ASSERT_TRUE(engine.value()->close().ok());
    if (finished) break;  // no cut fell inside the erasure: every point of it was tried
  }
  EXPECT_GT(readable, 0u) << "no cut came before the erasure's record was durable";
  EXPECT_GT(erased, 1u) << "no cut came after the erasure's record was durable";
}

// erase_stream failing after its record is durable (a write of the key store, or of the state
// snapshot after it, refused: ENOSPC): the engine stops, and the erasure is finished at the next
// open. Until then the same engine must not give the stream's payloads back: the erasure is
// decided (its record is in the journal), and its name is already forgotten. Every write from
// each of the erasure's in turn on refused (the hash chain off: its thread's writes would be
// counted among them).
TEST(EngineFaults, AnErasureThatFailsAfterItsRecordIsDurableGivesNoPayloadBackBeforeTheReopen) {
  Options options = fault_options();
  options.encryption = std::make_shared<annal::test::MasterKeys>();
  options.journal.hash_chain = false;
  std::size_t decided = 0;
  for (std::uint64_t nth = 1;; ++nth) {
    SCOPED_TRACE("the erasure's write " + std::to_string(nth) + " refused");
    ASSERT_LT(nth, 500u) << "the erasure never succeeded";
    auto io = std::make_shared<FaultBackend>(nth);
    auto engine = Engine::open(kDir, options, io);
    ASSERT_TRUE(engine.ok()) << engine.status().to_string();
    Receipt last;
    for (int i = 0; i < 4; ++i) {
      const auto payload = bytes_of("gone " + std::to_string(i));
      const EventData event{.type = "Changed", .payload = payload};
      const auto receipt = engine.value()->append("gone", ExpectedVersion::any(), {&event, 1});
      ASSERT_TRUE(receipt.ok()) << receipt.status().to_string();
      last = receipt.value();
    }
    ASSERT_TRUE(engine.value()->wait_durable(last, soon()).ok());
    const std::uint64_t gone_id = engine.value()->find_stream("gone").value();
    io->fail_write(nth, ENOSPC, /*persistent=*/true);
    if (engine.value()->erase_stream("gone").ok()) break;  // no write of it was left to refuse
    if (!engine.value()->find_stream("gone").has_value()) {
      ++decided;
      const auto gone = engine.value()->read_stream(StreamRef::id(gone_id), {}, soon());
      if (gone.ok()) {
        for (const Event& event : gone.value()) {
          EXPECT_TRUE(event.header.erased) << "event " << event.header.version << " read as not erased";
          EXPECT_EQ(text_of(event.payload), "") << "the erased stream's payload read back";
        }
      }
      const auto all = engine.value()->read_all(1, 100);
      if (all.ok()) {
        for (const Event& event : all.value()) {
          if (event.header.stream_id != gone_id) continue;
          EXPECT_EQ(text_of(event.payload), "") << "read_all gave the payload back";
        }
      }
    }
    (void)engine.value()->close();
  }
  EXPECT_GT(decided, 0u) << "no refused write came after the erasure's record was durable";
}

}  // namespace
}  // namespace annal::engine::test
