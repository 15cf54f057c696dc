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
  const std::uint32_t tag = NameIndex::tag(name);
  std::shared_lock lock(mutex_);
  const auto found = stream_ids_.find(name, tag, streams_);
  if (!found) return std::nullopt;
  return kNamedStreamBit | *found;
}

std::string_view Catalog::stream_name(std::uint64_t id) const noexcept {
  if ((id & kNamedStreamBit) == 0) return {};
  return streams_.at(id & ~kNamedStreamBit);
}

Status Catalog::add_stream(std::uint64_t id, std::string_view name) {
  if (id != next_stream_id() || streams_.size() >= NameTable::kNamesMax) return refused("stream", id, name);
  if (name.empty()) {
    streams_.push(std::string());
    return {};
  }
  const std::uint32_t tag = NameIndex::tag(name);
  // The only writer: no race between the check and the insert.
  if (stream_ids_.find(name, tag, streams_)) return refused("stream", id, name);
  // The id-to-name side first: whoever finds the id by name can then look its name up.
  const std::size_t index = streams_.push(std::string(name));
  std::unique_lock lock(mutex_);
  stream_ids_.insert(tag, index);
  return {};
}

void Catalog::forget_stream(std::uint64_t id) {
  ANNAL_ASSERT(knows_stream(id));
  // The index keeps its slot for the id: a lookup compares the name the table now holds, "", and
  // never matches. Under the lock, so that no lookup is half-way through comparing.
  std::unique_lock lock(mutex_);
  streams_.blank(id & ~kNamedStreamBit);
}

void Catalog::reserve_streams(std::size_t streams) {
  std::unique_lock lock(mutex_);
  stream_ids_.reserve(streams);
}

std::optional<std::uint16_t> Catalog::find_type(std::string_view name) const {
  const std::uint32_t tag = NameIndex::tag(name);
  std::shared_lock lock(mutex_);
  const auto found = type_ids_.find(name, tag, types_);
  if (!found) return std::nullopt;
  return static_cast<std::uint16_t>(kFirstUserType + *found);
}

std::string_view Catalog::type_name(std::uint16_t id) const noexcept {
  if (id < kFirstUserType) return {};
  return types_.at(id - kFirstUserType);
}

Status Catalog::add_type(std::uint16_t id, std::string_view name) {
  if (types_full() || id != next_type_id()) return refused("event type", id, name);
  const std::uint32_t tag = NameIndex::tag(name);
  if (type_ids_.find(name, tag, types_)) return refused("event type", id, name);  // the only writer: no race
  // The id-to-name side first: whoever finds the id by name can then look its name up.
  const std::size_t index = types_.push(std::string(name));
  std::unique_lock lock(mutex_);
  type_ids_.insert(tag, index);
  return {};
}

}  // namespace annal::engine
