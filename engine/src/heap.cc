#include "heap.h"

#include <dlfcn.h>

#include <cstdlib>

namespace annal::engine {
namespace {

HeapFunctions load() noexcept {
  const HeapFunctions system{&std::malloc, &std::free, "system malloc"};
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  return system;
#else
  // Never closed: memory from it lives as long as the process may free it.
  void* library = ::dlopen("libmimalloc.so.2", RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) return system;
  auto* allocate = reinterpret_cast<void* (*)(std::size_t)>(::dlsym(library, "mi_malloc"));
  auto* free = reinterpret_cast<void (*)(void*)>(::dlsym(library, "mi_free"));
  if (allocate == nullptr || free == nullptr) return system;
  return {allocate, free, "mimalloc"};
#endif
}

}  // namespace

const HeapFunctions& heap() noexcept {
  static const HeapFunctions functions = load();  // thread-safe initialisation
  return functions;
}

}  // namespace annal::engine
