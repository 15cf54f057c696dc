// run_program: runs a command line (through the shell) to its end and returns its exit code and
// everything it wrote to stdout and stderr. It runs under timeout(1), so a program that hangs
// fails its test instead of hanging CI.
#pragma once

#include <stdio.h>
#include <sys/wait.h>

#include <chrono>
#include <string>

namespace annal::test {

struct ProgramRun {
  int exit_code = -1;  // 128 + the signal if a signal ended it; 124 if it ran out of time
  std::string output;  // stdout and stderr, interleaved
};

inline ProgramRun run_program(const std::string& command, std::chrono::seconds limit = std::chrono::seconds(240)) {
  const std::string line = "timeout " + std::to_string(limit.count()) + " " + command + " 2>&1";
  ProgramRun ran;
  FILE* pipe = ::popen(line.c_str(), "r");
  if (pipe == nullptr) return ran;
  char buffer[4096];
  while (const std::size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) ran.output.append(buffer, n);
  const int status = ::pclose(pipe);
  ran.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return ran;
}

}  // namespace annal::test
