// Projections annal serve keeps without user code (`annal serve DIR --projection NAME`), as
// EventStoreDB's system projections do, and the interface the server reads any projection's state
// through (GET /projections/{name}/state).
//
//   by_event_type   events per event type
//   by_category     per category (a stream name up to its first '-': order-123456 is "order"):
//                   its streams and its events
//
// Both are snapshotted (schema 1), so a restart replays only the events since the last snapshot.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "annal/engine/projection.h"

namespace annal::server {

// A projection whose state the server can show as JSON. Called on the projection's thread (a
// query), so it needs no lock.
class JsonStateProjection : public engine::Projection {
 public:
  [[nodiscard]] virtual std::string state_json() const = 0;
};

// The built-in projection called `name`, or nullptr if there is none by that name.
[[nodiscard]] std::shared_ptr<JsonStateProjection> builtin_projection(std::string_view name);

// The names builtin_projection knows, for --help and errors.
[[nodiscard]] std::vector<std::string> builtin_projection_names();

}  // namespace annal::server
