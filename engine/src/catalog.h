// Catalog: stream names and event type names, both ways. Names map to ids without hashing them
// into the id (no collisions): each new name takes the next id, and the engine writes the pair to
// the journal (event_codec.h) before the first event that uses it.
//
// One writer (the thread holding the engine's sequencing lock, or recovery); any thread reads.
// Id-to-name lookups are lock-free (NameTable); name-to-id lookups (NameIndex, over the same
// names) take a shared lock.
#pragma once

#include <cstdint>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>

#include "annal/base/status.h"
#include "annal/engine/types.h"
#include "event_codec.h"
#include "name_index.h"
#include "name_table.h"

namespace annal::engine {

class Catalog {
 public:
  static constexpr std::size_t kTypesMax = std::size_t{UINT16_MAX} + 1 - kFirstUserType;

  [[nodiscard]] std::optional<std::uint64_t> find_stream(std::string_view name) const;
  [[nodiscard]] std::string_view stream_name(std::uint64_t id) const noexcept;
  // The id the next new stream name gets.
  [[nodiscard]] std::uint64_t next_stream_id() const noexcept { return kNamedStreamBit | streams_.size(); }
  // Writer only. corruption if `id` is not next_stream_id() or the name is taken (a journal that
  // says otherwise was not written by this engine). An empty name is an erased stream's: it has its
  // id, and no name to be found by.
  Status add_stream(std::uint64_t id, std::string_view name);
  // Whether the named stream `id` has been added (its name may be empty: erased).
  [[nodiscard]] bool knows_stream(std::uint64_t id) const noexcept {
    return (id & kNamedStreamBit) != 0 && streams_.contains(id & ~kNamedStreamBit);
  }
  // Writer only. Forgets the name of stream `id` (erased): find_stream no longer finds it, and the
  // name may be given to a new stream. Views of it handed out before stay valid.
  void forget_stream(std::uint64_t id);
  // Writer only: room for `streams` stream names in all, before many are added at once (recovery).
  void reserve_streams(std::size_t streams);

  [[nodiscard]] std::optional<std::uint16_t> find_type(std::string_view name) const;
  [[nodiscard]] std::string_view type_name(std::uint16_t id) const noexcept;
  [[nodiscard]] bool types_full() const noexcept { return types_.size() >= kTypesMax; }
  [[nodiscard]] std::uint16_t next_type_id() const noexcept {
    return static_cast<std::uint16_t>(kFirstUserType + types_.size());
  }
  Status add_type(std::uint16_t id, std::string_view name);

  // Names in id order, for the engine's state snapshot. Writer only.
  [[nodiscard]] std::size_t stream_names() const noexcept { return streams_.size(); }
  [[nodiscard]] std::string_view stream_name_at(std::size_t index) const noexcept { return streams_.at(index); }
  [[nodiscard]] std::size_t type_names() const noexcept { return types_.size(); }
  [[nodiscard]] std::string_view type_name_at(std::size_t index) const noexcept { return types_.at(index); }

 private:
  mutable std::shared_mutex mutex_;  // guards the two indexes
  NameIndex stream_ids_;  // into streams_
  NameIndex type_ids_;    // into types_
  NameTable streams_;  // index: id without kNamedStreamBit
  NameTable types_;    // index: id - kFirstUserType
};

}  // namespace annal::engine
