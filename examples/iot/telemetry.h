// The iot example's domain: devices send temperature readings and heartbeats; the "devices" read
// model keeps, per device, the latest reading, the minimum, maximum and mean, and whether the
// device is online. A simulated fleet (Fleet) produces the traffic for the demo and the tests.
//
// Each device has a stream of its own, addressed by number (StreamRef::id(device)): nothing to
// register per device, and the projection finds the device in each event's header.
//
// Time is event time: every message carries the device's clock, and the projection's "now" is the
// latest event time it has seen (its watermark), never the wall clock. So a replay of the journal
// gives exactly the answers the live run gave. A device is online while its last heartbeat is at
// most offline_after_ms older than the watermark.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "annal/engine/engine.h"
#include "annal/engine/projection.h"

namespace iot {

using annal::ErrorCode;
using annal::Status;
namespace ae = annal::engine;

inline constexpr std::string_view kReading = "Reading";
inline constexpr std::string_view kHeartbeat = "Heartbeat";

// One message from a device. Its payload is two little-endian 64-bit words: the event time in ms,
// then the temperature in thousandths of a degree (integers, so sums and means are exact; 0 in a
// heartbeat).
struct Message {
  bool heartbeat = false;
  std::int64_t time_ms = 0;
  std::int64_t milli_celsius = 0;
};
inline constexpr std::size_t kPayloadBytes = 16;

inline std::array<std::byte, kPayloadBytes> encode(const Message& message) {
  std::array<std::byte, kPayloadBytes> out{};
  std::memcpy(out.data(), &message.time_ms, 8);
  std::memcpy(out.data() + 8, &message.milli_celsius, 8);
  return out;
}

inline std::optional<Message> decode(std::string_view type, std::span<const std::byte> payload) {
  if ((type != kReading && type != kHeartbeat) || payload.size() != kPayloadBytes) return std::nullopt;
  Message message{.heartbeat = type == kHeartbeat};
  std::memcpy(&message.time_ms, payload.data(), 8);
  std::memcpy(&message.milli_celsius, payload.data() + 8, 8);
  return message;
}

struct DeviceState {
  std::int64_t readings = 0;
  std::int64_t sum = 0;  // of the readings, for the mean
  std::int64_t min = std::numeric_limits<std::int64_t>::max();
  std::int64_t max = std::numeric_limits<std::int64_t>::min();
  std::int64_t latest = 0;         // the reading with the latest event time
  std::int64_t latest_ms = -1;     // its time (-1: no reading yet)
  std::int64_t heartbeat_ms = -1;  // the latest heartbeat's time (-1: none yet)

  [[nodiscard]] double mean() const {
    return readings == 0 ? 0 : static_cast<double>(sum) / static_cast<double>(readings);
  }
  friend bool operator==(const DeviceState&, const DeviceState&) = default;
};
inline constexpr std::size_t kDeviceWords = 8;  // the device's id and DeviceState's 7 fields, in a snapshot

class Devices final : public annal::engine::Projection {
 public:
  // With snapshots = false it has no schema, so the engine never snapshots it and a restart replays
  // the whole journal into it (the demo's comparison).
  explicit Devices(std::int64_t offline_after_ms, bool snapshots = true)
      : offline_after_ms_(offline_after_ms), snapshots_(snapshots) {}

  void apply(const annal::engine::EventView& event) override {
    const auto message = decode(event.header.type, event.payload);
    if (!message) return;  // not a device's message
    DeviceState& device = devices_[event.header.stream_id];
    watermark_ms_ = std::max(watermark_ms_, message->time_ms);
    if (message->heartbeat) {
      device.heartbeat_ms = std::max(device.heartbeat_ms, message->time_ms);
      return;
    }
    ++device.readings;
    device.sum += message->milli_celsius;
    device.min = std::min(device.min, message->milli_celsius);
    device.max = std::max(device.max, message->milli_celsius);
    if (message->time_ms >= device.latest_ms) {  // messages may arrive out of order
      device.latest = message->milli_celsius;
      device.latest_ms = message->time_ms;
    }
  }

  [[nodiscard]] bool online(const DeviceState& device) const {
    return device.heartbeat_ms >= 0 && watermark_ms_ - device.heartbeat_ms <= offline_after_ms_;
  }
  [[nodiscard]] const std::map<std::uint64_t, DeviceState>& devices() const { return devices_; }
  [[nodiscard]] std::int64_t watermark_ms() const { return watermark_ms_; }

  [[nodiscard]] std::uint32_t schema() const override { return snapshots_ ? 1 : 0; }
  // The watermark, then kDeviceWords words per device in id order (deterministic).
  [[nodiscard]] std::vector<std::byte> snapshot() const override {
    std::vector<std::int64_t> words{watermark_ms_};
    for (const auto& [id, d] : devices_) {
      words.insert(words.end(), {static_cast<std::int64_t>(id), d.readings, d.sum, d.min, d.max, d.latest, d.latest_ms,
                                 d.heartbeat_ms});
    }
    std::vector<std::byte> out(words.size() * 8);
    std::memcpy(out.data(), words.data(), out.size());
    return out;
  }
  Status restore(std::span<const std::byte> state) override {
    if (state.size() % 8 != 0 || state.size() / 8 % kDeviceWords != 1) {
      return Status(ErrorCode::corruption, "devices snapshot of " + std::to_string(state.size()) + " bytes");
    }
    std::vector<std::int64_t> words(state.size() / 8);
    std::memcpy(words.data(), state.data(), state.size());
    std::map<std::uint64_t, DeviceState> devices;
    for (std::size_t at = 1; at < words.size(); at += kDeviceWords) {
      const std::int64_t* w = &words[at];
      devices[static_cast<std::uint64_t>(w[0])] = {w[1], w[2], w[3], w[4], w[5], w[6], w[7]};
    }
    if (devices.size() != words.size() / kDeviceWords) return Status(ErrorCode::corruption, "a device appears twice");
    watermark_ms_ = words[0];
    devices_ = std::move(devices);
    return {};
  }

 private:
  std::int64_t offline_after_ms_;
  bool snapshots_;
  std::int64_t watermark_ms_ = std::numeric_limits<std::int64_t>::min();
  std::map<std::uint64_t, DeviceState> devices_;  // by stream id = device number
};

// The simulated fleet: devices 1..devices, each sending one reading a second of event time and a
// heartbeat every heartbeat_every seconds. Every silent_every-th device goes quiet halfway
// through, so the projection sees it go offline. Temperatures are a fixed function of device and
// second, so a test can compute what the projection should say.
struct Fleet {
  std::uint32_t devices = 1000;
  std::uint32_t seconds = 200;  // readings per device that stays up
  std::uint32_t heartbeat_every = 5;
  std::uint32_t silent_every = 10;  // 0: every device stays up
  std::int64_t start_ms = 1'700'000'000'000;

  [[nodiscard]] bool silent(std::uint32_t device, std::uint32_t second) const {
    return silent_every != 0 && device % silent_every == 0 && second >= seconds / 2;
  }

  // What `device` sends in `second`.
  [[nodiscard]] std::vector<Message> messages(std::uint32_t device, std::uint32_t second) const {
    if (silent(device, second)) return {};
    const std::int64_t time_ms = start_ms + std::int64_t{second} * 1000 + device % 1000;  // clocks a little apart
    std::vector<Message> out{{.heartbeat = false, .time_ms = time_ms, .milli_celsius = temperature(device, second)}};
    if (second % heartbeat_every == 0) out.push_back({.heartbeat = true, .time_ms = time_ms, .milli_celsius = 0});
    return out;
  }

  // 15 to 25 degrees by device, plus up to 1.5 degrees of noise either way.
  [[nodiscard]] static std::int64_t temperature(std::uint32_t device, std::uint32_t second) {
    std::uint64_t x = (std::uint64_t{device} << 32 | second) + 0x9e3779b97f4a7c15;  // splitmix64
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9;
    x = (x ^ (x >> 27)) * 0x94d049bb133111eb;
    x ^= x >> 31;
    return 15'000 + std::int64_t{device % 100} * 100 + static_cast<std::int64_t>(x % 3001) - 1500;
  }
};

// The gateway: sends the fleet's traffic second by second, each device's messages of a second in
// one append to its stream. Returns the last receipt.
inline annal::Result<ae::Receipt> send(ae::Engine& engine, const Fleet& fleet) {
  ae::Receipt last;
  for (std::uint32_t second = 0; second < fleet.seconds; ++second) {
    for (std::uint32_t device = 1; device <= fleet.devices; ++device) {
      const std::vector<Message> messages = fleet.messages(device, second);
      std::vector<std::array<std::byte, kPayloadBytes>> payloads;
      std::vector<ae::EventData> events;
      for (const Message& message : messages) payloads.push_back(encode(message));
      for (std::size_t i = 0; i < messages.size(); ++i) {
        events.push_back({.type = messages[i].heartbeat ? kHeartbeat : kReading, .payload = payloads[i]});
      }
      if (events.empty()) continue;
      // Each device writes only its own stream, so there is nothing to check the version against.
      auto receipt = engine.append(ae::StreamRef::id(device), ae::ExpectedVersion::any(), events);
      if (!receipt.ok()) return receipt.status();
      last = receipt.value();
    }
  }
  return last;
}

}  // namespace iot
