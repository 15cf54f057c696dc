// run_program: runs a command line (through the shell) to its end and returns its exit code and
// everything it wrote to stdout and stderr. It runs under timeout(1), so a program that hangs
// fails its test instead of hanging CI.
//
// Not popen: its child inherits every descriptor of the test's that is not close-on-exec, and so
// would whatever the command leaves running (pg_ctl's postmaster). Here the command gets stdin,
// the output pipe and nothing else (child_process.h).
#pragma once

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <string>

#include "child_process.h"

namespace annal::test {

struct ProgramRun {
  int exit_code = -1;  // 128 + the signal if a signal ended it; 124 if it ran out of time
  std::string output;  // stdout and stderr, interleaved
};

inline ProgramRun run_program(const std::string& command, std::chrono::seconds limit = std::chrono::seconds(240)) {
  const std::string line = "timeout " + std::to_string(limit.count()) + " " + command + " 2>&1";
  ProgramRun ran;
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return ran;
  // Made before fork: the child of a process with other threads must not allocate before exec.
  char* argv[] = {const_cast<char*>("/bin/sh"), const_cast<char*>("-c"), const_cast<char*>(line.c_str()), nullptr};
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], 1);
    close_inherited_descriptors();
    ::execv(argv[0], argv);
    ::_exit(127);
  }
  ::close(out[1]);
  if (pid < 0) {
    ::close(out[0]);
    return ran;
  }
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::read(out[0], buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    ran.output.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(out[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  ran.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return ran;
}

}  // namespace annal::test
