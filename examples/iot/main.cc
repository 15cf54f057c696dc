// annal example: device telemetry. A simulated fleet sends readings and heartbeats, one stream per
// device; the "devices" projection keeps the latest reading, min, max and mean per device, and
// whether it is online. Then the engine is closed and reopened, and the program times the
// recovery and shows why it is bounded: the projection starts from its newest snapshot and
// replays only the events after it, at most --snapshot-every of them however long the journal.
//
//   iot [--devices=N] [--seconds=N] [--snapshot-every=EVENTS] [--dir=PATH]
//
// Without --dir it works in a new temporary directory and removes it at the end.
#include <stdlib.h>

#include <annal/engine/engine.h>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include "telemetry.h"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace ae = annal::engine;

constexpr std::int64_t kOfflineAfterMs = 15'000;  // three heartbeats missed

struct Config {
  std::uint64_t devices = 1000;
  std::uint64_t seconds = 200;
  std::uint64_t snapshot_every = 20'000;
  std::string dir;
};

bool parse(int argc, char** argv, Config& config) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    const std::size_t eq = arg.find('=');
    if (eq == std::string_view::npos) return false;
    const std::string_view name = arg.substr(0, eq);
    const std::string_view value = arg.substr(eq + 1);
    if (name == "--dir") {
      config.dir = value;
      continue;
    }
    std::uint64_t* field = name == "--devices" ? &config.devices : name == "--seconds" ? &config.seconds
                           : name == "--snapshot-every" ? &config.snapshot_every : nullptr;
    if (field == nullptr) return false;
    const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), *field);
    if (error != std::errc() || end != value.data() + value.size()) return false;
  }
  return config.devices >= 1 && config.devices < (1u << 31) && config.seconds >= 1 && config.seconds < (1u << 31) &&
         config.snapshot_every >= 1;
}

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

std::string describe(const iot::Devices& devices) {
  std::string out = "  device   latest      min      max     mean  state";
  std::size_t online = 0;
  for (const auto& [id, device] : devices.devices()) {
    online += devices.online(device) ? 1 : 0;
    if (id > 3 && id != 10) continue;  // a few, and the first of those that go quiet
    char line[128];
    std::snprintf(line, sizeof line, "\n  %6llu %8.3f %8.3f %8.3f %8.3f  %s", static_cast<unsigned long long>(id),
                  static_cast<double>(device.latest) / 1000, static_cast<double>(device.min) / 1000,
                  static_cast<double>(device.max) / 1000, device.mean() / 1000,
                  devices.online(device) ? "online" : "offline");
    out += line;
    if (!devices.online(device)) {
      const double silent_s = static_cast<double>(devices.watermark_ms() - device.heartbeat_ms) / 1000;
      std::snprintf(line, sizeof line, " (last heartbeat %.1f s before the newest event)", silent_s);
      out += line;
    }
  }
  return out + "\n  " + std::to_string(devices.devices().size()) + " devices: " + std::to_string(online) + " online, " +
         std::to_string(devices.devices().size() - online) + " offline";
}

// Adds a projection and waits until it has applied `sequence`; returns how long that took.
annal::Result<double> catch_up(ae::Engine& engine, const std::string& name, std::shared_ptr<iot::Devices> devices,
                               const ae::ProjectionOptions& options, std::uint64_t sequence) {
  const auto start = Clock::now();
  if (annal::Status added = engine.add_projection(name, std::move(devices), options); !added.ok()) return added;
  if (annal::Status seen = engine.query(name, sequence, [](const ae::Projection&) {}, 120s); !seen.ok()) return seen;
  return ms_since(start);
}

std::vector<std::byte> state_of(const iot::Devices& devices) { return devices.snapshot(); }

// What the first start leaves behind, to compare the second with.
struct Before {
  std::uint64_t last_sequence = 0;
  std::vector<std::byte> devices;  // the projection's state, as snapshot bytes
};

// The first start: the fleet sends its traffic, the devices are read back, the engine closes.
annal::Result<Before> send_and_close(const Config& config, const ae::ProjectionOptions& snapshots) {
  auto engine = ae::Engine::open(config.dir, {});
  if (!engine.ok()) return engine.status();
  ae::Engine& store = *engine.value();
  auto added = store.add_projection("devices", std::make_shared<iot::Devices>(kOfflineAfterMs), snapshots);
  if (!added.ok()) return added;
  const iot::Fleet fleet{.devices = static_cast<std::uint32_t>(config.devices),
                         .seconds = static_cast<std::uint32_t>(config.seconds)};
  const std::uint64_t events_before = store.event_count();
  const auto start = Clock::now();
  auto receipt = iot::send(store, fleet);
  if (!receipt.ok()) return receipt.status();
  const double seconds = ms_since(start) / 1000;
  const auto sent = static_cast<double>(store.event_count() - events_before);
  std::printf("sent %.0f events from %llu devices (%llu s of event time) in %.2f s: %.0f events/s\n", sent,
              static_cast<unsigned long long>(config.devices), static_cast<unsigned long long>(config.seconds),
              seconds, sent / seconds);
  // Read your writes: answered once the projection has applied the last append.
  Before before{.last_sequence = receipt.value().last_sequence, .devices = {}};
  auto seen = ae::query<iot::Devices>(store, "devices", before.last_sequence, [](const iot::Devices& d) {
    return std::pair(describe(d), d.snapshot());
  }, 60s);
  if (!seen.ok()) return seen.status();
  std::printf("devices at sequence %llu:\n%s\n", static_cast<unsigned long long>(before.last_sequence),
              seen.value().first.c_str());
  before.devices = std::move(seen.value().second);
  if (annal::Status closed = store.close(); !closed.ok()) return closed;
  return before;
}

// The second start, timed: open, then the projection restored from its newest snapshot and
// brought up to date. Then the same projection without snapshots, for comparison.
annal::Status reopen_and_measure(const Config& config, const ae::ProjectionOptions& snapshots, const Before& before) {
  std::printf("restart:\n");
  const auto start = Clock::now();
  auto engine = ae::Engine::open(config.dir, {});
  if (!engine.ok()) return engine.status();
  ae::Engine& store = *engine.value();
  const double open_ms = ms_since(start);
  const ae::OpenReport& report = store.open_report();
  std::printf("  engine open: %.1f ms (from its state snapshot at sequence %llu, %llu journal records after it)\n",
              open_ms, static_cast<unsigned long long>(report.state_snapshot),
              static_cast<unsigned long long>(report.records_replayed));
  auto caught_up = catch_up(store, "devices", std::make_shared<iot::Devices>(kOfflineAfterMs), snapshots,
                            before.last_sequence);
  if (!caught_up.ok()) return caught_up.status();
  auto status = store.projection_status("devices");
  if (!status.ok()) return status.status();
  std::printf("  devices: restored from the snapshot at sequence %llu, replayed %llu of %llu events, %.1f ms\n"
              "  recovery: %.1f ms in all, bounded by the snapshot interval (%llu events), not by the journal\n",
              static_cast<unsigned long long>(status.value().restored_from),
              static_cast<unsigned long long>(status.value().replayed),
              static_cast<unsigned long long>(store.event_count()), caught_up.value(), open_ms + caught_up.value(),
              static_cast<unsigned long long>(config.snapshot_every));
  auto after = ae::query<iot::Devices>(store, "devices", before.last_sequence, state_of, 60s);
  if (!after.ok()) return after.status();
  std::printf("  state after reopen: %s\n", after.value() == before.devices ? "identical to before close" : "DIFFERENT");

  // The same projection without snapshots replays the whole journal: the cost the snapshots bound.
  auto full = catch_up(store, "devices_full", std::make_shared<iot::Devices>(kOfflineAfterMs, false), {},
                       before.last_sequence);
  if (!full.ok()) return full.status();
  auto full_status = store.projection_status("devices_full");
  auto full_state = ae::query<iot::Devices>(store, "devices_full", before.last_sequence, state_of, 60s);
  if (!full_status.ok() || !full_state.ok()) return full_status.ok() ? full_state.status() : full_status.status();
  std::printf("  without snapshots: replayed %llu events, %.1f ms (%s)\n",
              static_cast<unsigned long long>(full_status.value().replayed), full.value(),
              full_state.value() == before.devices ? "same state" : "DIFFERENT");
  if (after.value() != before.devices || full_state.value() != before.devices) {
    return annal::Status(annal::ErrorCode::corruption, "the state changed across a restart");
  }
  return store.close();
}

annal::Status run(const Config& config) {
  const ae::ProjectionOptions snapshots{.snapshot_every_events = config.snapshot_every};
  auto before = send_and_close(config, snapshots);
  if (!before.ok()) return before.status();
  return reopen_and_measure(config, snapshots, before.value());
}

}  // namespace

int main(int argc, char** argv) {
  Config config;
  if (!parse(argc, argv, config)) {
    std::fprintf(stderr, "usage: iot [--devices=N] [--seconds=N] [--snapshot-every=EVENTS] [--dir=PATH]\n");
    return 2;
  }
  const bool temporary = config.dir.empty();
  if (temporary) {
    std::string pattern = (std::filesystem::temp_directory_path() / "annal-iot-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) return 1;
    config.dir = pattern;
  }
  const annal::Status status = run(config);
  if (!status.ok()) std::fprintf(stderr, "iot: %s\n", status.to_string().c_str());
  if (temporary) std::filesystem::remove_all(config.dir);
  return status.ok() ? 0 : 1;
}
