// What a forked child does between fork and exec so that the program it starts holds only stdin,
// stdout and stderr of the test process's descriptors.
//
// Why it matters: a descriptor that is not close-on-exec (a pipe(), a library's socket) is
// inherited by every program the test starts, and by whatever that program leaves running (a
// daemonized postmaster, beam.smp, epmd, a guardian's shell). A copy of a pipe's write end held
// there keeps its reader from ever seeing end-of-file: SpawnedTool's "stderr closed" and a
// guardian's "the test process is gone" both rest on that end-of-file.
#pragma once

#include <sys/resource.h>
#include <unistd.h>

namespace annal::test {

// Closes every descriptor from 3 up; call in the child after its dup2s onto 0, 1 and 2, then exec.
// Async-signal-safe, as the child of a threaded process must be until exec: close_range is one
// system call (Linux 5.9 and glibc 2.34; Debian 12 has 6.1 and 2.36). On an older kernel (ENOSYS)
// a loop of close() up to the descriptor limit does the same; getrlimit is a bare system call
// too, though POSIX does not list it as async-signal-safe.
inline void close_inherited_descriptors() noexcept {
  if (::close_range(3, ~0U, 0) == 0) return;
  rlimit limit{};
  const bool known = ::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY;
  const rlim_t end = known ? limit.rlim_cur : 1 << 20;
  for (rlim_t fd = 3; fd < end; ++fd) ::close(static_cast<int>(fd));
}

}  // namespace annal::test
