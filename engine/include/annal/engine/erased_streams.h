// The streams erased (Engine::erase_stream) whose events a projection that passes them on (an
// exporter) may still be given with their payloads, read before their keys' end: it drops them
// rather than send them. Projection::stream_erased adds a stream; apply() asks; end_of_batch
// forgets the streams whose erasure record the projection has passed, after which none of their
// events can come (a stream takes no event after its erasure). Not thread-safe: the exporter's
// lock guards it, as stream_erased comes from another thread.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace annal::engine {

class ErasedStreams {
 public:
  void add(std::uint64_t stream_id, std::uint64_t erased_at) { streams_.push_back({stream_id, erased_at}); }
  [[nodiscard]] bool contains(std::uint64_t stream_id) const {
    return std::any_of(streams_.begin(), streams_.end(), [&](const Erased& e) { return e.stream_id == stream_id; });
  }
  [[nodiscard]] bool empty() const noexcept { return streams_.empty(); }
  // The projection has applied everything up to `applied`.
  void passed(std::uint64_t applied) {
    std::erase_if(streams_, [&](const Erased& e) { return e.erased_at <= applied; });
  }

 private:
  struct Erased {
    std::uint64_t stream_id;
    std::uint64_t erased_at;  // its erasure record's sequence: every event of the stream is below it
  };
  std::vector<Erased> streams_;  // few: erasures are rare, and each is forgotten soon
};

}  // namespace annal::engine
