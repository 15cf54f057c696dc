// The engine's own heap: mimalloc, for what the engine allocates and frees at a high rate (stream
// index nodes, ring slots grown for large events, read buffers). bench/engine_bench.cc measures
// it against glibc malloc on the stream index (engine_stream_index/{mimalloc,glibc}).
#pragma once

#include <mimalloc.h>

#include <cstdint>
#include <functional>
#include <unordered_map>
#include <vector>

namespace annal::engine {

template <class T>
using HeapAllocator = mi_stl_allocator<T>;

template <class K, class V, class Hash = std::hash<K>, template <class> class Allocator = HeapAllocator>
using HeapMap = std::unordered_map<K, V, Hash, std::equal_to<K>, Allocator<std::pair<const K, V>>>;

using HeapBytes = std::vector<std::byte, HeapAllocator<std::byte>>;

}  // namespace annal::engine
