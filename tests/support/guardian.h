// Guardian: ends a test's throw-away server when the test process dies without running the
// server's destructor: the watchdog's abort from another thread, a sanitizer's report, a crash,
// SIGKILL from ctest's timeout. Without one, the server runs for ever on a shared machine.
//
// A guardian is a small shell waiting on a pipe whose only write end this object holds. The kernel
// closes that end however the test process ends, and then the shell does what it was given: kill
// the server's process group, or stop a postmaster. The write end is O_CLOEXEC, so no program the
// test starts holds it open; a child the test forks without exec does until it dies (the crash
// tests' children die with the test: PR_SET_PDEATHSIG). The shell gets the read end as its stdin
// and no other descriptor of the test's (spawn_in_group), since it outlives the test process.
//
// Why not PR_SET_PDEATHSIG on the server itself: it fires when the forking *thread* ends (a test
// restarts its node from a helper thread), reaches only that one child (not beam.smp behind
// rabbitmq-server's script, not a daemonized postmaster) and is not inherited.
//
// The shell backgrounds itself and leaves the test's process tree: on a timeout ctest stops and
// kills the whole tree, which would take the guardian too and leave a daemonized postmaster. It
// stays in a process group of its own, group(), which the server's processes may join: the
// group's number cannot be reused while the guardian waits in it.
#pragma once

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "child_process.h"

extern char** environ;

namespace annal::test {

// fork and execve in process group `group` (0: a new group led by the child), stdin from `in`,
// stdout and stderr to `out`, and no other descriptor of the test's: a server outlives many of
// them, and would keep their pipes open. Everything is made before the fork: the child of a
// process with other threads may only make async-signal-safe calls until exec. -1 if fork failed.
inline pid_t spawn_in_group(char* const argv[], char* const envp[], pid_t group, int in, int out) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, group);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(out, 2);
    close_inherited_descriptors();
    ::execve(argv[0], argv, envp);
    ::_exit(127);
  }
  // The parent sets it too, so that the group exists once this returns, whichever runs first.
  if (pid > 0) ::setpgid(pid, group == 0 ? pid : group);
  return pid;
}

class Guardian {
 public:
  // Runs `action` (sh, arguments in $1...) once the test process is gone or this object is destroyed.
  Guardian(const std::string& action, const std::vector<std::string>& args) {
    int ends[2];
    if (::pipe2(ends, O_CLOEXEC) != 0) throw std::runtime_error("guardian: no pipe");
    // The background list's stdin is /dev/null (no job control), so the pipe goes to it as fd 3.
    std::vector<std::string> words{"/bin/sh", "-c", "exec 3<&0; { read _ <&3; " + action + "; } &", "annal-test-guardian"};
    words.insert(words.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& word : words) argv.push_back(word.data());
    argv.push_back(nullptr);
    const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    const pid_t shell = spawn_in_group(argv.data(), environ, 0, ends[0], null);
    ::close(ends[0]);
    ::close(null);
    int status = 0;
    if (shell < 0 || ::waitpid(shell, &status, 0) != shell || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      ::close(ends[1]);
      throw std::runtime_error("guardian: the shell did not start");
    }
    group_ = shell;  // its background list lives on in the group
    write_end_ = ends[1];
  }
  ~Guardian() { ::close(write_end_); }
  Guardian(const Guardian&) = delete;
  Guardian& operator=(const Guardian&) = delete;

  [[nodiscard]] pid_t group() const { return group_; }

 private:
  pid_t group_ = -1;
  int write_end_ = -1;
};

}  // namespace annal::test
