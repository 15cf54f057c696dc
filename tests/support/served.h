// Running a server program as its users do, for the tests of annal serve and orders serve: a
// child process on a free loopback port, stopped with SIGTERM (or SIGKILL, as a crash).
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "child_process.h"

namespace annal::test {

// execv's arguments for `PROGRAM ARGS...`, pointing into `args`. Made before fork: a forked child
// of a process with other threads (a watchdog) must not allocate before exec, since an allocator
// lock another thread held at the fork stays held in the child.
inline std::vector<char*> argv_of(const char* program, const std::vector<std::string>& args) {
  std::vector<char*> argv{const_cast<char*>(program)};
  for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  return argv;
}

// `PROGRAM serve DIR --listen 127.0.0.1:0 OPTIONS...` (annal, or an example), its port read from
// the line it prints once it listens (annal/server/serve_command.h).
class Served {
 public:
  Served(const char* program, const std::string& directory, const std::vector<std::string>& options = {}) {
    int out[2];
    EXPECT_EQ(pipe2(out, O_CLOEXEC), 0);  // the server gets the write end as fd 1 only
    std::vector<std::string> args{"serve", directory, "--listen", "127.0.0.1:0"};
    args.insert(args.end(), options.begin(), options.end());
    std::vector<char*> argv = argv_of(program, args);
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], 1);
      close_inherited_descriptors();
      execv(program, argv.data());
      _exit(127);
    }
    close(out[1]);
    std::string line;
    pollfd ready{.fd = out[0], .events = POLLIN, .revents = 0};
    char c = 0;
    // A deadline only against a server that never starts: it prints the line once it listens.
    while (line.find('\n') == std::string::npos && poll(&ready, 1, 120'000) == 1 && read(out[0], &c, 1) == 1) line += c;
    close(out[0]);
    const std::size_t colon = line.rfind(':');
    EXPECT_NE(colon, std::string::npos) << program << " serve printed: " << line;
    if (colon != std::string::npos) port_ = std::stoi(line.substr(colon + 1));
  }
  ~Served() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  // SIGKILL, as a crash would.
  void kill_now() {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  void signal(int number) { kill(pid_, number); }
  // SIGTERM, and the exit code.
  int stop() {
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  [[nodiscard]] int port() const { return port_; }
  [[nodiscard]] pid_t pid() const { return pid_; }
  [[nodiscard]] std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
};

}  // namespace annal::test
