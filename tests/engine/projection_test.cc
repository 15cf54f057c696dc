#include "annal/engine/projection.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "annal/projections/snapshot_format.h"
#include "engine_fixture.h"
#include "watchdog.h"

namespace annal::engine::test {
namespace {

using namespace std::chrono_literals;

// Counts events per stream and folds their sequences into a digest that any reordering, gap or
// duplicate changes. Its state is (total, digest, per-stream counts).
struct Counter final : Projection {
  explicit Counter(std::uint32_t schema = 1) : schema_version(schema) {}
  std::uint32_t schema_version;
  std::uint64_t total = 0;
  std::uint64_t digest = 0;
  std::map<std::uint64_t, std::uint64_t> per_stream;

  void apply(const EventView& event) override {
    ++total;
    digest = digest * 1'000'003 + event.header.sequence;
    ++per_stream[event.header.stream_id];
  }
  std::uint32_t schema() const override { return schema_version; }
  std::vector<std::byte> snapshot() const override {
    std::vector<std::uint64_t> words = {total, digest};
    for (const auto& [stream, count] : per_stream) words.insert(words.end(), {stream, count});
    std::vector<std::byte> out(words.size() * 8);
    std::memcpy(out.data(), words.data(), out.size());
    return out;
  }
  Status restore(std::span<const std::byte> state) override {
    if (state.size() < 16 || state.size() % 16 != 0) return Status(ErrorCode::corruption, "bad counter state");
    std::vector<std::uint64_t> words(state.size() / 8);
    std::memcpy(words.data(), state.data(), state.size());
    total = words[0];
    digest = words[1];
    per_stream.clear();
    for (std::size_t i = 2; i < words.size(); i += 2) per_stream[words[i]] = words[i + 1];
    return {};
  }
};

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
    if (projections::parse_snapshot_file_name(file, "counter")) snapshots.push_back(file);
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
  EXPECT_EQ(older.restored_from, *projections::parse_snapshot_file_name(snapshots[snapshots.size() - 2], "counter"));
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

}  // namespace
}  // namespace annal::engine::test
