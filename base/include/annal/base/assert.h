// Invariant checks that stay on in release builds.
//
// annal asserts what it believes at every boundary (TigerBeetle's habit): a broken invariant in an
// event store means the next write may corrupt history, so the process stops at once with the
// condition, file and line rather than carrying on. ANNAL_ASSERT is for cheap checks and is always
// on; ANNAL_DEBUG_ASSERT is for checks too costly for a hot path and compiles away under NDEBUG.
#pragma once

#include <cstdio>
#include <cstdlib>

namespace annal::detail {

[[noreturn, gnu::cold, gnu::noinline]] inline void assert_fail(const char* condition,
                                                              const char* file, int line) noexcept {
  std::fprintf(stderr, "annal: invariant violated: %s (%s:%d)\n", condition, file, line);
  std::fflush(stderr);
  std::abort();
}

}  // namespace annal::detail

#define ANNAL_ASSERT(condition)                                         \
  do {                                                                  \
    if (!(condition)) [[unlikely]]                                      \
      ::annal::detail::assert_fail(#condition, __FILE__, __LINE__);     \
  } while (false)

#ifdef NDEBUG
#define ANNAL_DEBUG_ASSERT(condition) static_cast<void>(sizeof(!(condition)))
#else
#define ANNAL_DEBUG_ASSERT(condition) ANNAL_ASSERT(condition)
#endif
