// The engine's own heap, for what it allocates and frees at a high rate (stream index and
// idempotency window nodes, catalog maps, ring slots grown for large events).
//
// It is mimalloc, loaded with dlopen(RTLD_LOCAL) and called through mi_malloc / mi_free, so that it
// serves the engine alone. Debian builds libmimalloc.so to override malloc: linking it, as a
// normal dependency would, replaces the malloc of the whole host program (every library in it),
// which an embedded engine has no business doing. Loaded privately its symbols never enter the
// program's global scope. When the library cannot be loaded, or under a sanitizer (which must see
// every allocation), the heap is the system malloc. bench/engine_bench.cc compares the two on
// the stream index (engine_stream_index/{mimalloc,glibc}).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <new>
#include <unordered_map>
#include <vector>

namespace annal::engine {

struct HeapFunctions {
  void* (*allocate)(std::size_t bytes);
  void (*free)(void* pointer);
  const char* name;  // "mimalloc" or "system malloc"
};

// Loaded at the first call; thread-safe.
const HeapFunctions& heap() noexcept;

// Fault injection for tests: allocations of at least this many bytes fail (std::bad_alloc), as they
// would on a machine out of memory. SIZE_MAX (no failures) unless a test lowers it.
inline std::atomic<std::size_t> heap_failing_from{SIZE_MAX};

template <class T>
struct HeapAllocator {
  using value_type = T;
  static_assert(alignof(T) <= alignof(std::max_align_t), "both heaps align to max_align_t only");

  HeapAllocator() = default;
  template <class U>
  HeapAllocator(const HeapAllocator<U>&) noexcept {}  // NOLINT: rebinding is implicit

  T* allocate(std::size_t n) {
    if (n * sizeof(T) >= heap_failing_from.load(std::memory_order_relaxed)) throw std::bad_alloc();
    void* p = heap().allocate(n * sizeof(T));
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t) noexcept { heap().free(p); }
  friend bool operator==(const HeapAllocator&, const HeapAllocator&) noexcept { return true; }
};

template <class K, class V, class Hash = std::hash<K>, template <class> class Allocator = HeapAllocator>
using HeapMap = std::unordered_map<K, V, Hash, std::equal_to<K>, Allocator<std::pair<const K, V>>>;

using HeapBytes = std::vector<std::byte, HeapAllocator<std::byte>>;

}  // namespace annal::engine
