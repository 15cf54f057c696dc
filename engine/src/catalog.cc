#include "catalog.h"

#include <mutex>

namespace annal::engine {
namespace {

Status refused(const std::string& what, std::uint64_t id, std::string_view name) {
  return Status(ErrorCode::corruption, what + " " + std::to_string(id) + " named \"" + std::string(name) +
                                           "\" contradicts the names before it");
}

}  // namespace

std::optional<std::uint64_t> Catalog::find_stream(std::string_view name) const {
  std::shared_lock lock(mutex_);
  const auto found = stream_ids_.find(name);
  if (found == stream_ids_.end()) return std::nullopt;
  return found->second;
}

std::string_view Catalog::stream_name(std::uint64_t id) const noexcept {
  if ((id & kNamedStreamBit) == 0) return {};
  return streams_.at(id & ~kNamedStreamBit);
}

Status Catalog::add_stream(std::uint64_t id, std::string_view name) {
  if (id != next_stream_id() || streams_.size() >= NameTable::kNamesMax) return refused("stream", id, name);
  if (stream_ids_.contains(name)) return refused("stream", id, name);  // the only writer: no race
  // The id-to-name side first: whoever finds the id by name can then look its name up.
  streams_.push(std::string(name));
  std::unique_lock lock(mutex_);
  stream_ids_.emplace(std::string(name), id);
  return {};
}

void Catalog::reserve_streams(std::size_t streams) {
  std::unique_lock lock(mutex_);
  stream_ids_.reserve(streams);
}

std::optional<std::uint16_t> Catalog::find_type(std::string_view name) const {
  std::shared_lock lock(mutex_);
  const auto found = type_ids_.find(name);
  if (found == type_ids_.end()) return std::nullopt;
  return static_cast<std::uint16_t>(found->second);
}

std::string_view Catalog::type_name(std::uint16_t id) const noexcept {
  if (id < kFirstUserType) return {};
  return types_.at(id - kFirstUserType);
}

Status Catalog::add_type(std::uint16_t id, std::string_view name) {
  if (types_full() || id != next_type_id()) return refused("event type", id, name);
  if (type_ids_.contains(name)) return refused("event type", id, name);  // the only writer: no race
  // The id-to-name side first: whoever finds the id by name can then look its name up.
  types_.push(std::string(name));
  std::unique_lock lock(mutex_);
  type_ids_.emplace(std::string(name), id);
  return {};
}

}  // namespace annal::engine
