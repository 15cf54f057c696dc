// The iot example's tests: payloads, the statistics against a direct computation, offline
// detection in event time, snapshots, a restart on a real engine, and the program itself.
#include <gtest/gtest.h>

#include <string>

#include "run_program.h"
#include "telemetry.h"
#include "temp_directory.h"

namespace iot {
namespace {

using namespace std::chrono_literals;

constexpr std::int64_t kOfflineAfterMs = 15'000;

// Feeds one message from `device` to the projection, as the engine would.
void feed(Devices& devices, std::uint64_t device, const Message& message) {
  const auto payload = encode(message);
  ae::EventHeader header;
  header.stream_id = device;
  header.type = message.heartbeat ? kHeartbeat : kReading;
  devices.apply({header, payload});
}

// What the projection should hold for `device` after the whole fleet ran, computed directly.
DeviceState expected(const Fleet& fleet, std::uint32_t device) {
  DeviceState state;
  for (std::uint32_t second = 0; second < fleet.seconds; ++second) {
    for (const Message& m : fleet.messages(device, second)) {
      if (m.heartbeat) {
        state.heartbeat_ms = m.time_ms;
        continue;
      }
      EXPECT_EQ(m.milli_celsius, Fleet::temperature(device, second));
      ++state.readings;
      state.sum += m.milli_celsius;
      state.min = std::min(state.min, m.milli_celsius);
      state.max = std::max(state.max, m.milli_celsius);
      state.latest = m.milli_celsius;
      state.latest_ms = m.time_ms;
    }
  }
  return state;
}

TEST(PayloadTest, MessagesRoundTripAndMalformedOnesAreRefused) {
  const Message reading{.heartbeat = false, .time_ms = 1'700'000'000'123, .milli_celsius = -2500};
  const auto bytes = encode(reading);
  const auto decoded = decode(kReading, bytes);
  ASSERT_TRUE(decoded.has_value());
  EXPECT_FALSE(decoded->heartbeat);
  EXPECT_EQ(decoded->time_ms, reading.time_ms);
  EXPECT_EQ(decoded->milli_celsius, -2500);
  EXPECT_TRUE(decode(kHeartbeat, bytes)->heartbeat);
  EXPECT_FALSE(decode(kReading, std::span(bytes).first(15)).has_value());
  EXPECT_FALSE(decode("Reboot", bytes).has_value());
}

TEST(DevicesTest, StatisticsMatchADirectComputation) {
  const Fleet fleet{.devices = 25, .seconds = 80};
  Devices devices(kOfflineAfterMs);
  for (std::uint32_t second = 0; second < fleet.seconds; ++second) {
    for (std::uint32_t device = 1; device <= fleet.devices; ++device) {
      for (const Message& m : fleet.messages(device, second)) feed(devices, device, m);
    }
  }
  ASSERT_EQ(devices.devices().size(), 25u);
  for (const auto& [id, state] : devices.devices()) {
    const DeviceState want = expected(fleet, static_cast<std::uint32_t>(id));
    EXPECT_EQ(state, want) << "device " << id;
    EXPECT_DOUBLE_EQ(state.mean(), static_cast<double>(want.sum) / static_cast<double>(want.readings));
    // Devices 10 and 20 went quiet at 40 s, 40 s before the newest event: offline. The rest are up.
    EXPECT_EQ(devices.online(state), id % 10 != 0) << "device " << id;
  }
}

TEST(DevicesTest, ADeviceIsOfflineWhenItsLastHeartbeatIsTooOldInEventTime) {
  Devices devices(kOfflineAfterMs);
  feed(devices, 1, {.heartbeat = true, .time_ms = 0});
  feed(devices, 2, {.heartbeat = false, .time_ms = 15'000, .milli_celsius = 20'000});
  EXPECT_TRUE(devices.online(devices.devices().at(1)));   // 15 s: still within the limit
  EXPECT_FALSE(devices.online(devices.devices().at(2)));  // never sent a heartbeat
  feed(devices, 2, {.heartbeat = false, .time_ms = 15'001, .milli_celsius = 20'000});
  EXPECT_FALSE(devices.online(devices.devices().at(1)));  // event time moved on, not the clock
  feed(devices, 1, {.heartbeat = true, .time_ms = 14'000});
  EXPECT_TRUE(devices.online(devices.devices().at(1)));
  feed(devices, 1, {.heartbeat = true, .time_ms = 1'000});  // late and out of order: changes nothing
  EXPECT_EQ(devices.devices().at(1).heartbeat_ms, 14'000);
  feed(devices, 2, {.heartbeat = false, .time_ms = 5'000, .milli_celsius = 1});  // an old reading
  EXPECT_EQ(devices.devices().at(2).latest, 20'000);
  EXPECT_EQ(devices.devices().at(2).min, 1);
}

TEST(DevicesTest, ASnapshotRestoresTheStateAndABadOneChangesNothing) {
  Devices devices(kOfflineAfterMs);
  feed(devices, 7, {.heartbeat = false, .time_ms = 1'000, .milli_celsius = 21'500});
  feed(devices, 9, {.heartbeat = true, .time_ms = 2'000});
  Devices restored(kOfflineAfterMs);
  ASSERT_TRUE(restored.restore(devices.snapshot()).ok());
  EXPECT_EQ(restored.devices(), devices.devices());
  EXPECT_EQ(restored.watermark_ms(), 2'000);
  EXPECT_EQ(restored.snapshot(), devices.snapshot());
  auto cut = devices.snapshot();
  cut.resize(cut.size() - 8);
  EXPECT_EQ(restored.restore(cut).code(), ErrorCode::corruption);
  EXPECT_EQ(restored.snapshot(), devices.snapshot());
}

TEST(EngineTest, AfterAReopenTheStateIsTheSameAndOnlyTheEventsAfterTheSnapshotAreReplayed) {
  annal::test::TempDirectory dir;
  const Fleet fleet{.devices = 30, .seconds = 100};
  const ae::ProjectionOptions options{.snapshot_every_events = 300};
  std::vector<std::byte> before;
  std::uint64_t last = 0;
  {
    auto engine = ae::Engine::open(dir.path(), {});
    ASSERT_TRUE(engine.ok()) << engine.status().to_string();
    ASSERT_TRUE(engine.value()->add_projection("devices", std::make_shared<Devices>(kOfflineAfterMs), options).ok());
    auto receipt = send(*engine.value(), fleet);
    ASSERT_TRUE(receipt.ok()) << receipt.status().to_string();
    last = receipt.value().last_sequence;
    auto seen = ae::query<Devices>(*engine.value(), "devices", last, [&](const Devices& d) {
      for (const auto& [id, state] : d.devices()) {
        EXPECT_EQ(state, expected(fleet, static_cast<std::uint32_t>(id))) << "device " << id;
        EXPECT_EQ(d.online(state), id % 10 != 0) << "device " << id;
      }
      return d.snapshot();
    }, 60s);
    ASSERT_TRUE(seen.ok()) << seen.status().to_string();
    before = seen.value();
    ASSERT_TRUE(engine.value()->close().ok());
  }
  auto engine = ae::Engine::open(dir.path(), {});
  ASSERT_TRUE(engine.ok()) << engine.status().to_string();
  ASSERT_TRUE(engine.value()->add_projection("devices", std::make_shared<Devices>(kOfflineAfterMs), options).ok());
  auto after = ae::query<Devices>(*engine.value(), "devices", last, [](const Devices& d) { return d.snapshot(); }, 60s);
  ASSERT_TRUE(after.ok()) << after.status().to_string();
  EXPECT_EQ(after.value(), before);
  const auto status = engine.value()->projection_status("devices");
  ASSERT_TRUE(status.ok());
  EXPECT_GT(status.value().restored_from, 0u);
  // The projection was snapshotted at most 300 events before it stopped, and it had applied all.
  EXPECT_LE(status.value().replayed, options.snapshot_every_events);
  EXPECT_GT(engine.value()->event_count(), 10 * options.snapshot_every_events);
}

// The program itself, small: it sends, restarts, and finds the state as it was.
TEST(IotExampleTest, RunsAndRecoversTheSameState) {
  annal::test::TempDirectory dir;
  const auto ran = annal::test::run_program(std::string(ANNAL_EXAMPLE_PROGRAM) +
                                            " --devices=40 --seconds=60 --snapshot-every=500 --dir=" + dir.path());
  ASSERT_EQ(ran.exit_code, 0) << ran.output;
  EXPECT_NE(ran.output.find("40 devices: 36 online, 4 offline"), std::string::npos) << ran.output;
  EXPECT_NE(ran.output.find("state after reopen: identical to before close"), std::string::npos) << ran.output;
}

}  // namespace
}  // namespace iot
