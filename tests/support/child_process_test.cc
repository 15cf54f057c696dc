// The test support's ways of starting programs (SpawnedTool, spawn_in_group, Guardian,
// run_program) hand the program stdin, stdout and stderr and nothing else of the test process: a
// descriptor the program kept would hold a pipe of the test's open after the test closed its end,
// and a reader waiting for end-of-file (SpawnedTool's "stderr closed", a guardian) would wait on.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "guardian.h"
#include "run_program.h"
#include "spawned_tool.h"

namespace annal::test {
namespace {

// A pipe of the test's that is not close-on-exec, as a library (or an older helper) may open one.
class PlainPipe {
 public:
  PlainPipe() { EXPECT_EQ(::pipe(ends_), 0); }
  ~PlainPipe() {
    if (ends_[0] >= 0) ::close(ends_[0]);
    if (ends_[1] >= 0) ::close(ends_[1]);
  }
  PlainPipe(const PlainPipe&) = delete;
  PlainPipe& operator=(const PlainPipe&) = delete;

  // Closes our write end; true if the read end then sees end-of-file, which it does not while a
  // program started meanwhile holds a copy of the write end.
  bool closed_by_all() {
    ::close(ends_[1]);
    ends_[1] = -1;
    pollfd ready{.fd = ends_[0], .events = POLLIN, .revents = 0};
    char c = 0;
    return ::poll(&ready, 1, 10'000) == 1 && ::read(ends_[0], &c, 1) == 0;
  }

 private:
  int ends_[2] = {-1, -1};
};

TEST(SpawnedTool, ToolHoldsNoDescriptorOfTheTest) {
  PlainPipe pipe;
  SpawnedTool tool("/bin/sh", {"-c", "exec sleep 60"});
  EXPECT_TRUE(pipe.closed_by_all());
  EXPECT_TRUE(tool.kill_now());
}

// wait_for's "stderr closed" must mean the tool's stderr: a second copy of the pipe's write end in
// the tool (the one dup2 copied from) kept it open until the tool died.
TEST(SpawnedTool, WaitForSeesStderrClosedWhileTheToolRuns) {
  SpawnedTool tool("/bin/sh", {"-c", "exec 2>&-; exec sleep 600"});
  EXPECT_FALSE(tool.wait_for("never printed"));
  EXPECT_TRUE(tool.stderr_closed()) << "waited for the limit, not for stderr to close";
  EXPECT_TRUE(tool.kill_now()) << "the tool ended before it was killed";
}

TEST(SpawnInGroup, ProgramHoldsNoDescriptorOfTheTest) {
  PlainPipe pipe;
  const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  char* argv[] = {const_cast<char*>("/bin/sh"), const_cast<char*>("-c"), const_cast<char*>("exec sleep 60"), nullptr};
  const pid_t pid = spawn_in_group(argv, environ, 0, null, null);
  ::close(null);
  ASSERT_GT(pid, 0);
  EXPECT_TRUE(pipe.closed_by_all());
  ::kill(-pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
}

// The guardian's shell outlives the test process on purpose: a descriptor of the test's in it
// would stay open as long.
TEST(Guardian, ShellHoldsNoDescriptorOfTheTestButItsOwnPipe) {
  PlainPipe pipe;
  {
    const Guardian guardian("true", {});
    EXPECT_TRUE(pipe.closed_by_all());
  }
}

// What a program run_program ran left running (a daemon, as pg_ctl starts) holds nothing either.
TEST(RunProgram, WhatTheProgramLeftRunningHoldsNoDescriptorOfTheTest) {
  PlainPipe pipe;
  const ProgramRun ran = run_program("/bin/sh -c 'sleep 60 >/dev/null 2>&1 & echo $!'");
  ASSERT_EQ(ran.exit_code, 0) << ran.output;
  const pid_t sleeper = std::stoi(ran.output);
  EXPECT_TRUE(pipe.closed_by_all());
  ::kill(sleeper, SIGKILL);
}

TEST(RunProgram, ReturnsTheOutputAndExitCode) {
  const ProgramRun ran = run_program("/bin/sh -c 'echo out; echo err >&2; exit 3'");
  EXPECT_EQ(ran.exit_code, 3);
  EXPECT_EQ(ran.output, "out\nerr\n");
}

}  // namespace
}  // namespace annal::test
