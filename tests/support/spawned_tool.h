// A tool run as a child process whose stderr the test reads, for the kill tests that SIGKILL it at
// a moment timed from a line it prints (the annal tool's export commands print one once they have
// read their target back).
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

#include "child_process.h"
#include "served.h"  // argv_of

namespace annal::test {

class SpawnedTool {
 public:
  SpawnedTool(const char* program, const std::vector<std::string>& args) {
    // Close-on-exec, so that no program the test starts holds either end; the tool gets its copy
    // of the write end as fd 2 and no other, or wait_for would not see it close.
    int err[2];
    if (::pipe2(err, O_CLOEXEC) != 0) return;
    std::vector<char*> argv = argv_of(program, args);  // before fork: the child must not allocate
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(err[1], 2);
      close_inherited_descriptors();
      ::execv(program, argv.data());
      ::_exit(127);
    }
    ::close(err[1]);
    err_ = err[0];
  }
  ~SpawnedTool() {
    if (pid_ > 0) (void)kill_now();
    if (err_ >= 0) ::close(err_);
  }
  SpawnedTool(const SpawnedTool&) = delete;
  SpawnedTool& operator=(const SpawnedTool&) = delete;

  // Reads its stderr until `text` appears; false if it closed stderr or `limit` passed first (a
  // hang guard). What it printed so far is in printed().
  bool wait_for(const std::string& text, std::chrono::milliseconds limit = std::chrono::minutes(2)) {
    return read_until([&] { return printed_.find(text) != std::string::npos; }, limit);
  }
  // Reads its stderr until `done(printed())` holds; false as wait_for.
  template <class Done>
  bool wait_until(const Done& done, std::chrono::milliseconds limit = std::chrono::minutes(2)) {
    return read_until([&] { return done(printed_); }, limit);
  }
  // wait_for(text), then on to the end of the line it is on: the whole line is in printed().
  bool wait_for_line(const std::string& text, std::chrono::milliseconds limit = std::chrono::minutes(2)) {
    if (!wait_for(text, limit)) return false;
    const std::size_t at = printed_.rfind(text);
    return read_until([&] { return printed_.find('\n', at) != std::string::npos; }, limit);
  }
  [[nodiscard]] const std::string& printed() const { return printed_; }
  // Whether a wait_for ended because the tool's stderr closed (not at its limit).
  [[nodiscard]] bool stderr_closed() const { return stderr_closed_; }

  // Sends `signal`, reads what it prints until it closes stderr (printed() has it: a full pipe
  // would hold a tool that prints on its way out), and reaps it: its exit code, or -1 if a signal
  // ended it. (No limit of its own: the test's Watchdog guards against a tool that does not end.)
  int end_with(int signal) {
    ::kill(pid_, signal);
    char c = 0;
    while (::read(err_, &c, 1) == 1) printed_ += c;
    stderr_closed_ = true;
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  // SIGKILL and reap; true if the signal ended it (it had not exited by itself before).
  bool kill_now() {
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFSIGNALED(status);
  }

 private:
  // Reads stderr a byte at a time until `done` holds; false if stderr closed or `limit` passed first.
  template <class Done>
  bool read_until(const Done& done, std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    pollfd ready{.fd = err_, .events = POLLIN, .revents = 0};
    char c = 0;
    while (!done()) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || ::poll(&ready, 1, static_cast<int>(left.count())) != 1) return false;
      const ssize_t got = ::read(err_, &c, 1);
      if (got != 1) {
        stderr_closed_ = got == 0;
        return false;
      }
      printed_ += c;
    }
    return true;
  }
  pid_t pid_ = -1;
  int err_ = -1;
  std::string printed_;
  bool stderr_closed_ = false;
};

}  // namespace annal::test
