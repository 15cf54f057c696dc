// StreamIndex: each stream's last version and the global sequence of its last event. One entry
// per stream, whatever its length: reads walk back from the last event through each event's
// pointer to the one before (event_codec.h), so memory grows with streams, not events.
//
// Written by the engine's sequencing lock holder (or recovery); read by any thread.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <shared_mutex>

#include "heap.h"

namespace annal::engine {

struct StreamState {
  std::uint64_t last_version = 0;
  std::uint64_t last_sequence = 0;
};

template <template <class> class Allocator = HeapAllocator>
class BasicStreamIndex {
  using Map = HeapMap<std::uint64_t, StreamState, std::hash<std::uint64_t>, Allocator>;

 public:
  [[nodiscard]] std::optional<StreamState> find(std::uint64_t stream) const {
    std::shared_lock lock(mutex_);
    const auto found = streams_.find(stream);
    if (found == streams_.end()) return std::nullopt;
    return found->second;
  }
  // Writer only: it alone changes the map, so it reads without the lock.
  [[nodiscard]] const StreamState* find_as_writer(std::uint64_t stream) const {
    const auto found = streams_.find(stream);
    return found == streams_.end() ? nullptr : &found->second;
  }
  void put(std::uint64_t stream, const StreamState& state) {
    std::unique_lock lock(mutex_);
    streams_.insert_or_assign(stream, state);
  }
  // The index held exclusively for a run of updates (recovery, before any reader exists): one lock
  // for the run instead of one per event, and an update in place instead of a second lookup.
  class Exclusive {
   public:
    explicit Exclusive(BasicStreamIndex& index) : lock_(index.mutex_), streams_(index.streams_) {}
    [[nodiscard]] StreamState* find(std::uint64_t stream) {
      const auto found = streams_.find(stream);
      return found == streams_.end() ? nullptr : &found->second;
    }
    void add(std::uint64_t stream, const StreamState& state) { streams_.emplace(stream, state); }

   private:
    std::unique_lock<std::shared_mutex> lock_;
    Map& streams_;
  };
  [[nodiscard]] Exclusive exclusive() { return Exclusive(*this); }

  // Room for `streams` entries in all, before many are put at once (recovery).
  void reserve(std::size_t streams) {
    std::unique_lock lock(mutex_);
    streams_.reserve(streams);
  }
  // Every entry, in no particular order. Writer only (it alone changes the map).
  template <class Visit>
  void for_each(Visit&& visit) const {
    for (const auto& [stream, state] : streams_) visit(stream, state);
  }
  [[nodiscard]] std::size_t size() const {
    std::shared_lock lock(mutex_);
    return streams_.size();
  }
  // Events in all streams: each stream's versions count from 0. O(streams), for tools.
  [[nodiscard]] std::uint64_t events() const {
    std::shared_lock lock(mutex_);
    std::uint64_t out = 0;
    for (const auto& [stream, state] : streams_) out += state.last_version + 1;
    return out;
  }

 private:
  mutable std::shared_mutex mutex_;
  Map streams_;
};

using StreamIndex = BasicStreamIndex<>;

}  // namespace annal::engine
