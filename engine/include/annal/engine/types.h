// The nouns of the engine's API: streams, expected versions, events going in and coming out,
// receipts. engine.h puts them to work.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "annal/base/status.h"

namespace annal::engine {

// A 128-bit id (a UUID's bytes as two integers) for an event, or for the correlation and
// causation of one. All zero means "none".
struct Id128 {
  std::uint64_t hi = 0;
  std::uint64_t lo = 0;

  [[nodiscard]] bool empty() const noexcept { return hi == 0 && lo == 0; }
  friend bool operator==(const Id128&, const Id128&) = default;
};

// "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", and back (32 hex digits, dashes anywhere; nullopt if not).
[[nodiscard]] std::string format_id(const Id128& id);
[[nodiscard]] std::optional<Id128> parse_id(std::string_view text);

// Streams are addressed by name ("order-123456") or by a 64-bit id the application chooses.
// The engine gives each new name an id of its own, written to the journal in the same atomic
// batch as the stream's first events, so the mapping survives exactly what the events survive.
// Ids of named streams have the top bit set; ids chosen by the application must not.
inline constexpr std::uint64_t kNamedStreamBit = std::uint64_t{1} << 63;
inline constexpr std::size_t kNameBytesMax = 255;  // stream and event type names

class StreamRef {
 public:
  StreamRef(std::string_view name) : name_(name) {}  // NOLINT: implicit, names are the usual case
  StreamRef(const char* name) : name_(name) {}       // NOLINT
  StreamRef(const std::string& name) : name_(name) {}  // NOLINT: refers to it; keep it alive
  [[nodiscard]] static StreamRef id(std::uint64_t id) { return StreamRef(id); }

  [[nodiscard]] bool by_name() const noexcept { return !id_.has_value(); }
  [[nodiscard]] std::string_view name() const noexcept { return name_; }
  [[nodiscard]] std::uint64_t stream_id() const noexcept { return id_.value_or(0); }

 private:
  explicit StreamRef(std::uint64_t id) : id_(id) {}
  std::string_view name_;
  std::optional<std::uint64_t> id_;
};

// What the caller believes the stream's last version is; the append is refused (ErrorCode::conflict)
// and nothing is written when it is wrong. Versions count a stream's events from 0.
class ExpectedVersion {
 public:
  [[nodiscard]] static ExpectedVersion any() noexcept { return ExpectedVersion(Kind::any, 0); }
  [[nodiscard]] static ExpectedVersion no_stream() noexcept { return ExpectedVersion(Kind::no_stream, 0); }
  // The stream exists and its last event has this version.
  [[nodiscard]] static ExpectedVersion exactly(std::uint64_t version) noexcept {
    return ExpectedVersion(Kind::exactly, version);
  }

  // Whether a stream whose last version is `current` (nullopt: no events) meets the expectation.
  [[nodiscard]] bool admits(std::optional<std::uint64_t> current) const noexcept {
    switch (kind_) {
      case Kind::any: return true;
      case Kind::no_stream: return !current.has_value();
      case Kind::exactly: return current.has_value() && *current == version_;
    }
    return false;
  }
  [[nodiscard]] std::string to_string() const;

 private:
  enum class Kind { any, no_stream, exactly };
  ExpectedVersion(Kind kind, std::uint64_t version) : kind_(kind), version_(version) {}
  Kind kind_;
  std::uint64_t version_;
};

// An event to append. The spans must stay valid until append() returns.
struct EventData {
  std::string_view type;  // "OrderCreated": 1 to kNameBytesMax bytes
  std::span<const std::byte> payload{};
  // With an event id, a repeated append (a client retrying after a timeout) is recognised and
  // answered with the original receipt instead of being written twice (Options::idempotency_window).
  Id128 event_id{};
  Id128 correlation_id{};
  Id128 causation_id{};
  std::uint64_t timestamp_ns = 0;  // 0: the engine stamps the wall-clock time
};

// Where an append went.
struct Receipt {
  std::uint64_t first_sequence = 0;  // global sequences of the append's first and last event
  std::uint64_t last_sequence = 0;
  std::uint64_t stream_id = 0;
  std::uint64_t first_version = 0;  // the stream versions they took
  std::uint64_t last_version = 0;
  // The append repeated one already made (same event ids): nothing was written and this is the
  // original's receipt.
  bool duplicate = false;
};

// append()'s answer: a Receipt, or the error. On ErrorCode::conflict, current_version() is the
// stream's last version when the append was refused (nullopt: the stream has no events).
class AppendResult : public Result<Receipt> {
 public:
  AppendResult(Receipt receipt) : Result<Receipt>(receipt) {}  // NOLINT: implicit, like Result
  AppendResult(Status error, std::optional<std::uint64_t> current_version = std::nullopt)  // NOLINT
      : Result<Receipt>(std::move(error)), current_version_(current_version) {}
  [[nodiscard]] std::optional<std::uint64_t> current_version() const noexcept { return current_version_; }

 private:
  std::optional<std::uint64_t> current_version_;
};

// A stored event's description. `type` and `stream_name` point into the engine's catalog and stay
// valid as long as the engine; stream_name is empty for streams addressed by id.
struct EventHeader {
  std::uint64_t sequence = 0;  // global order, from 1
  std::uint64_t stream_id = 0;
  std::uint64_t version = 0;  // in its stream, from 0
  std::uint64_t timestamp_ns = 0;
  std::uint16_t type_id = 0;
  std::string_view type;
  std::string_view stream_name;
  Id128 event_id;
  Id128 correlation_id;
  Id128 causation_id;
  // Its stream was erased (Engine::erase_stream): the payload is empty, the three ids are zero and
  // stream_name is empty, for they are gone with the stream's key; the rest stays.
  bool erased = false;
};

// An event as read by a subscription: the payload points into the subscription's buffer or the
// ring and stays valid until the next call on that subscription.
struct EventView {
  EventHeader header;
  std::span<const std::byte> payload;
};

// An event as returned by the read calls, owning its payload.
struct Event {
  EventHeader header;
  std::vector<std::byte> payload;
};

enum class Direction { forwards, backwards };

struct ReadStreamOptions {
  // The first version to return; for backwards reads, kFromEnd starts at the last event.
  std::uint64_t from_version = 0;
  Direction direction = Direction::forwards;
  std::size_t max_count = SIZE_MAX;
};
inline constexpr std::uint64_t kFromEnd = UINT64_MAX;

}  // namespace annal::engine
