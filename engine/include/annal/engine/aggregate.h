// The command side of event sourcing: load an aggregate by folding its stream, decide what
// happens, append that at the version loaded, and retry on a conflict (someone appended in
// between) a bounded number of times, each time folding in only the events that are new.
//
//   struct Order { bool paid = false; std::int64_t total = 0; };
//   auto receipt = annal::engine::execute<Order>(*engine, "order-123456",
//       [](Order& order, const Event& e) { if (e.header.type == "OrderPaid") order.paid = true; },
//       [&](const Order& order) -> Result<std::vector<NewEvent>> {
//         if (order.paid) return Status(ErrorCode::invalid_argument, "order already paid");
//         return std::vector<NewEvent>{{.type = "OrderPaid", .payload = bytes}};
//       });
//
// apply(State&, const Event&) must be deterministic; decide(const State&) may refuse with an error
// (returned as is) or decide nothing (an empty vector: nothing is appended, and the receipt has
// no sequences: first_sequence == 0).
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "annal/engine/engine.h"

namespace annal::engine {

// An event decided by a command, owning its bytes (EventData only points to them).
struct NewEvent {
  std::string type;
  std::vector<std::byte> payload;
  Id128 event_id{};
  Id128 correlation_id{};
  Id128 causation_id{};
};

struct CommandOptions {
  std::size_t attempts_max = 4;  // appends tried before the conflict is returned
  // Wait until the events are durable before returning (a timeout comes back as timed_out; the
  // events were appended and may still become durable).
  bool wait_durable = true;
  std::chrono::milliseconds durable_timeout{10'000};
};

// Folds `stream` into `state` from the version after `version` (nullopt: from the start); returns
// the last version folded (unchanged if there was nothing new).
template <class State, class Apply>
Result<std::optional<std::uint64_t>> fold_stream(Engine& engine, const StreamRef& stream, State& state,
                                                 Apply&& apply, std::optional<std::uint64_t> version) {
  const std::uint64_t from = version ? *version + 1 : 0;
  auto events = engine.read_stream(stream, ReadStreamOptions{.from_version = from});
  if (!events.ok()) return events.status();
  for (const Event& event : events.value()) {
    apply(state, event);
    version = event.header.version;
  }
  return version;
}

template <class State, class Apply, class Decide>
AppendResult execute(Engine& engine, const StreamRef& stream, Apply&& apply, Decide&& decide,
                     const CommandOptions& options = {}) {
  State state{};
  std::optional<std::uint64_t> version;
  Status conflict(ErrorCode::conflict, "no attempt made (attempts_max is 0)");
  for (std::size_t attempt = 0; attempt < options.attempts_max; ++attempt) {
    auto folded = fold_stream(engine, stream, state, apply, version);
    if (!folded.ok()) return folded.status();
    version = folded.value();
    Result<std::vector<NewEvent>> decided = decide(static_cast<const State&>(state));
    if (!decided.ok()) return decided.status();
    if (decided.value().empty()) {
      return Receipt{.stream_id = 0, .first_version = version.value_or(0), .last_version = version.value_or(0)};
    }
    std::vector<EventData> events;
    events.reserve(decided.value().size());
    for (const NewEvent& e : decided.value()) {
      events.push_back({.type = e.type, .payload = e.payload, .event_id = e.event_id,
                        .correlation_id = e.correlation_id, .causation_id = e.causation_id});
    }
    AppendResult appended = engine.append(
        stream, version ? ExpectedVersion::exactly(*version) : ExpectedVersion::no_stream(), events);
    if (appended.code() == ErrorCode::conflict) {
      conflict = appended.status();
      continue;  // fold what was appended meanwhile and decide again
    }
    if (!appended.ok() || !options.wait_durable) return appended;
    const Status durable =
        engine.wait_durable(appended.value(), Engine::Clock::now() + options.durable_timeout);
    if (!durable.ok()) return durable;
    return appended;
  }
  return AppendResult(conflict, version);
}

}  // namespace annal::engine
