#include "annal/server/builtin_projections.h"

#include <array>
#include <cstring>
#include <span>

#include "annal/server/event_json.h"

namespace annal::server {
namespace {

// Counts per key, snapshotted as [key length, key, counts...] records of 64-bit words.
template <std::size_t kCounts>
class Counting : public JsonStateProjection {
 public:
  using Counts = std::array<std::uint64_t, kCounts>;

  std::uint32_t schema() const override { return 1; }

  std::vector<std::byte> snapshot() const override {
    std::vector<std::byte> out;
    for (const auto& [key, counts] : counts_) {
      put(out, key.size());
      const auto* bytes = reinterpret_cast<const std::byte*>(key.data());
      out.insert(out.end(), bytes, bytes + key.size());
      for (const std::uint64_t count : counts) put(out, count);
    }
    return out;
  }

  Status restore(std::span<const std::byte> state) override {
    std::map<std::string, Counts, std::less<>> counts;
    while (!state.empty()) {
      std::uint64_t length = 0;
      if (!take(state, length) || length > state.size()) return cut_short();
      std::string key(reinterpret_cast<const char*>(state.data()), length);
      state = state.subspan(length);
      Counts values{};
      for (std::uint64_t& value : values) {
        if (!take(state, value)) return cut_short();
      }
      counts.emplace(std::move(key), values);
    }
    counts_ = std::move(counts);
    return {};
  }

 protected:
  Counts& counts_of(std::string_view key) {
    auto found = counts_.find(key);
    if (found == counts_.end()) found = counts_.emplace(std::string(key), Counts{}).first;
    return found->second;
  }
  const std::map<std::string, Counts, std::less<>>& counts() const { return counts_; }

 private:
  static void put(std::vector<std::byte>& out, std::uint64_t word) {
    const std::size_t at = out.size();
    out.resize(at + sizeof(word));
    std::memcpy(out.data() + at, &word, sizeof(word));
  }
  static bool take(std::span<const std::byte>& in, std::uint64_t& word) {
    if (in.size() < sizeof(word)) return false;
    std::memcpy(&word, in.data(), sizeof(word));
    in = in.subspan(sizeof(word));
    return true;
  }
  static Status cut_short() { return Status(ErrorCode::corruption, "built-in projection snapshot: a record is cut short"); }

  std::map<std::string, Counts, std::less<>> counts_;
};

class ByEventType final : public Counting<1> {
 public:
  void apply(const engine::EventView& event) override { ++counts_of(event.header.type)[0]; }
  std::string state_json() const override {
    std::string out = "{";
    for (const auto& [type, counts] : counts()) {
      out += (out.size() > 1 ? "," : "") + json_string(type) + ":" + std::to_string(counts[0]);
    }
    return out + "}";
  }
};

class ByCategory final : public Counting<2> {
 public:
  void apply(const engine::EventView& event) override {
    const std::string_view stream = event.header.stream_name;
    Counts& counts = counts_of(stream.substr(0, stream.find('-')));
    if (event.header.version == 0) ++counts[0];  // a stream's first event: one more stream
    ++counts[1];
  }
  std::string state_json() const override {
    std::string out = "{";
    for (const auto& [category, counts] : counts()) {
      out += (out.size() > 1 ? "," : "") + json_string(category) + ":{\"streams\":" + std::to_string(counts[0]) +
             ",\"events\":" + std::to_string(counts[1]) + "}";
    }
    return out + "}";
  }
};

}  // namespace

std::shared_ptr<JsonStateProjection> builtin_projection(std::string_view name) {
  if (name == "by_event_type") return std::make_shared<ByEventType>();
  if (name == "by_category") return std::make_shared<ByCategory>();
  return nullptr;
}

std::vector<std::string> builtin_projection_names() { return {"by_event_type", "by_category"}; }

}  // namespace annal::server
