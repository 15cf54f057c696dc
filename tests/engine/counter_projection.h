// Counter: the engine tests' projection. It counts events per stream and folds their sequences
// into a number that any reordering, gap or duplicate changes, so two Counters that saw the same
// log agree and any difference in what they saw shows. Its state is (total, digest, per-stream
// counts), as 64-bit words; schema 0 makes one that is never snapshotted (a from-scratch replay).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <span>
#include <vector>

#include "annal/engine/projection.h"

namespace annal::engine::test {

struct Counter final : Projection {
  explicit Counter(std::uint32_t schema = 1) : schema_version(schema) {}
  std::uint32_t schema_version;
  std::uint64_t total = 0;
  std::uint64_t digest = 0;
  std::map<std::uint64_t, std::uint64_t> per_stream;

  void apply(const EventView& event) override {
    ++total;
    digest = digest * 1'000'003 + event.header.sequence;
    ++per_stream[event.header.stream_id];
  }
  std::uint32_t schema() const override { return schema_version; }
  std::vector<std::byte> snapshot() const override {
    std::vector<std::uint64_t> words = {total, digest};
    for (const auto& [stream, count] : per_stream) words.insert(words.end(), {stream, count});
    std::vector<std::byte> out(words.size() * 8);
    std::memcpy(out.data(), words.data(), out.size());
    return out;
  }
  Status restore(std::span<const std::byte> state) override {
    if (state.size() < 16 || state.size() % 16 != 0) return Status(ErrorCode::corruption, "bad counter state");
    std::vector<std::uint64_t> words(state.size() / 8);
    std::memcpy(words.data(), state.data(), state.size());
    total = words[0];
    digest = words[1];
    per_stream.clear();
    for (std::size_t i = 2; i < words.size(); i += 2) per_stream[words[i]] = words[i + 1];
    return {};
  }
};

}  // namespace annal::engine::test
