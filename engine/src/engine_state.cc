#include "engine_state.h"

#include <algorithm>
#include <cstring>
#include <string>

namespace annal::engine {
namespace {

// Appends to a buffer reserved up front: the encode runs under the sequencing lock, where every
// reallocation (or zeroing a value's bytes before writing them) is time appends wait.
class Writer {
 public:
  explicit Writer(std::size_t bytes) { out_.reserve(bytes); }
  template <class T>
  void put(T value) {
    const auto bytes = std::as_bytes(std::span(&value, 1));
    out_.insert(out_.end(), bytes.begin(), bytes.end());
  }
  // Overwrites the value put at `at` (a count known only once its items are written).
  template <class T>
  void put_at(std::size_t at, T value) {
    std::memcpy(out_.data() + at, &value, sizeof(T));
  }
  void put_name(std::string_view name) {
    put<std::uint16_t>(static_cast<std::uint16_t>(name.size()));
    const auto bytes = std::as_bytes(std::span(name));
    out_.insert(out_.end(), bytes.begin(), bytes.end());
  }
  [[nodiscard]] std::size_t size() const noexcept { return out_.size(); }
  std::vector<std::byte> take() { return std::move(out_); }

 private:
  std::vector<std::byte> out_;
};

// Bytes per entry of the index and the window, as encode writes them (engine_state.h).
constexpr std::size_t kStreamBytes = 3 * 8;
constexpr std::size_t kWindowEntryBytes = 7 * 8 + 4;

// Reads what Writer wrote; any read past the end makes ok() false for good.
class Reader {
 public:
  explicit Reader(std::span<const std::byte> in) : in_(in) {}
  template <class T>
  T get() {
    T value{};
    if (!take(sizeof(T))) return value;
    std::memcpy(&value, in_.data() + at_ - sizeof(T), sizeof(T));
    return value;
  }
  std::string_view get_name() {
    const auto length = get<std::uint16_t>();
    if (!take(length)) return {};
    return {reinterpret_cast<const char*>(in_.data() + at_ - length), length};
  }
  [[nodiscard]] bool ok() const noexcept { return ok_; }
  [[nodiscard]] bool done() const noexcept { return ok_ && at_ == in_.size(); }
  // At most how many items of at least `bytes` each are left: what a count read from the input
  // may reserve room for, so that a damaged count cannot reserve more than the input could hold.
  [[nodiscard]] std::size_t room_for(std::size_t bytes) const noexcept { return (in_.size() - at_) / bytes; }

 private:
  bool take(std::size_t bytes) {
    if (!ok_ || in_.size() - at_ < bytes) return ok_ = false;
    at_ += bytes;
    return true;
  }
  std::span<const std::byte> in_;
  std::size_t at_ = 0;
  bool ok_ = true;
};

Status bad(const std::string& what) { return Status(ErrorCode::corruption, "engine state snapshot: " + what); }

}  // namespace

std::vector<std::byte> encode_engine_state(const Catalog& catalog, const StreamIndex& index,
                                           const IdempotencyWindow& window) {
  std::size_t names_bytes = 0;
  for (std::size_t i = 0; i < catalog.stream_names(); ++i) names_bytes += 2 + catalog.stream_name_at(i).size();
  for (std::size_t i = 0; i < catalog.type_names(); ++i) names_bytes += 2 + catalog.type_name_at(i).size();
  Writer out(4 + 4 + names_bytes + 8 + index.size() * kStreamBytes + 8 + window.size() * kWindowEntryBytes + 8);
  out.put<std::uint32_t>(static_cast<std::uint32_t>(catalog.stream_names()));
  for (std::size_t i = 0; i < catalog.stream_names(); ++i) out.put_name(catalog.stream_name_at(i));
  out.put<std::uint32_t>(static_cast<std::uint32_t>(catalog.type_names()));
  for (std::size_t i = 0; i < catalog.type_names(); ++i) out.put_name(catalog.type_name_at(i));
  out.put<std::uint64_t>(index.size());
  index.for_each([&](std::uint64_t stream, const StreamState& state) {
    out.put(stream);
    out.put(state.last_version);
    out.put(state.last_sequence);
  });
  // Counted while written: counting first would cost a second walk, a lookup per id.
  const std::size_t count_at = out.size();
  std::uint64_t remembered = 0;
  out.put(remembered);
  window.for_each([&](const Id128& id, const IdempotencyWindow::Entry& entry) {
    for (const std::uint64_t word : {id.hi, id.lo, entry.receipt.first_sequence, entry.receipt.last_sequence,
                                     entry.receipt.stream_id, entry.receipt.first_version, entry.receipt.last_version}) {
      out.put(word);
    }
    out.put(entry.index);
    ++remembered;
  });
  out.put_at(count_at, remembered);
  out.put(static_cast<std::uint64_t>(window.capacity()));
  return out.take();
}

Result<StoredWindow> decode_engine_state(std::span<const std::byte> state, Catalog& catalog, StreamIndex& index,
                                         IdempotencyWindow& window) {
  Reader in(state);
  const auto streams_named = in.get<std::uint32_t>();
  catalog.reserve_streams(std::min({std::size_t{streams_named}, in.room_for(2), NameTable::kNamesMax}));
  for (std::uint32_t i = 0; i < streams_named && in.ok(); ++i) {
    const std::string_view name = in.get_name();
    if (in.ok()) {
      if (Status added = catalog.add_stream(catalog.next_stream_id(), name); !added.ok()) return added;
    }
  }
  const auto types_named = in.get<std::uint32_t>();
  for (std::uint32_t i = 0; i < types_named && in.ok(); ++i) {
    const std::string_view name = in.get_name();
    if (in.ok()) {
      if (Status added = catalog.add_type(catalog.next_type_id(), name); !added.ok()) return added;
    }
  }
  const auto streams = in.get<std::uint64_t>();
  index.reserve(std::min<std::size_t>(streams, in.room_for(kStreamBytes)));
  for (std::uint64_t i = 0; i < streams && in.ok(); ++i) {
    const auto stream = in.get<std::uint64_t>();
    const auto last_version = in.get<std::uint64_t>();
    const auto last_sequence = in.get<std::uint64_t>();
    if (in.ok()) index.put(stream, {last_version, last_sequence});
  }
  const auto remembered = in.get<std::uint64_t>();
  for (std::uint64_t i = 0; i < remembered && in.ok(); ++i) {
    const Id128 id{in.get<std::uint64_t>(), in.get<std::uint64_t>()};
    Receipt receipt;
    receipt.first_sequence = in.get<std::uint64_t>();
    receipt.last_sequence = in.get<std::uint64_t>();
    receipt.stream_id = in.get<std::uint64_t>();
    receipt.first_version = in.get<std::uint64_t>();
    receipt.last_version = in.get<std::uint64_t>();
    const auto at = in.get<std::uint32_t>();
    if (in.ok() && receipt.first_sequence + at <= receipt.last_sequence) window.remember(id, receipt, at);
  }
  StoredWindow stored{.capacity = std::nullopt, .ids = remembered};
  if (in.ok() && !in.done()) stored.capacity = in.get<std::uint64_t>();
  if (!in.done()) return bad("lengths do not add up");
  return stored;
}

}  // namespace annal::engine
