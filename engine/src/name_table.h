// NameTable: ids 0, 1, 2 ... to names, appended by one writer and read by any thread without a
// lock. Names are never freed (blank() only hides one), so a string_view handed out stays valid as
// long as the table.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <deque>
#include <memory>
#include <string>
#include <string_view>

#include "annal/base/assert.h"

namespace annal::engine {

class NameTable {
 public:
  // A limit like every other: 2^28 names (256 M streams) in chunks of 4096 pointers.
  static constexpr std::size_t kChunkBits = 12;
  static constexpr std::size_t kChunkSize = std::size_t{1} << kChunkBits;
  static constexpr std::size_t kChunksMax = std::size_t{1} << 16;
  static constexpr std::size_t kNamesMax = kChunkSize * kChunksMax;

  NameTable() : chunks_(std::make_unique<std::atomic<Chunk*>[]>(kChunksMax)) {}
  ~NameTable() {
    for (std::size_t c = 0; c < kChunksMax; ++c) delete chunks_[c].load(std::memory_order_relaxed);
  }
  NameTable(const NameTable&) = delete;
  NameTable& operator=(const NameTable&) = delete;

  // Writer only. Returns the new name's id.
  std::size_t push(std::string name) {
    const std::size_t id = size_.load(std::memory_order_relaxed);
    ANNAL_ASSERT(id < kNamesMax);
    const std::string& stored = storage_.emplace_back(std::move(name));  // deque: never moves
    Chunk* chunk = chunks_[id >> kChunkBits].load(std::memory_order_relaxed);
    if (chunk == nullptr) {
      chunk = new Chunk();
      chunks_[id >> kChunkBits].store(chunk, std::memory_order_release);
    }
    (*chunk)[id & (kChunkSize - 1)].store(&stored, std::memory_order_release);
    // Release: a reader that sees the new size sees the chunk and the string too.
    size_.store(id + 1, std::memory_order_release);
    return id;
  }

  // Writer only. Makes `id`'s name empty (an erased stream's): later lookups see ""; a view handed
  // out before stays valid, for the string is kept.
  void blank(std::size_t id) {
    ANNAL_ASSERT(contains(id));
    static const std::string kBlank;
    (*chunks_[id >> kChunkBits].load(std::memory_order_relaxed))[id & (kChunkSize - 1)].store(&kBlank,
                                                                                           std::memory_order_release);
  }

  [[nodiscard]] std::size_t size() const noexcept { return size_.load(std::memory_order_acquire); }

  // Any thread. at() of an id never pushed is empty.
  [[nodiscard]] bool contains(std::size_t id) const noexcept { return id < size(); }
  [[nodiscard]] std::string_view at(std::size_t id) const noexcept {
    if (!contains(id)) return {};
    const Chunk* chunk = chunks_[id >> kChunkBits].load(std::memory_order_acquire);
    return *(*chunk)[id & (kChunkSize - 1)].load(std::memory_order_acquire);
  }

 private:
  using Chunk = std::array<std::atomic<const std::string*>, kChunkSize>;
  std::unique_ptr<std::atomic<Chunk*>[]> chunks_;
  std::deque<std::string> storage_;  // writer only
  std::atomic<std::size_t> size_{0};
};

}  // namespace annal::engine
