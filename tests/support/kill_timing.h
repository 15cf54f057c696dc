// When a crash test SIGKILLs its child, timed from what the child reports it has done, never from
// fork. A window counted from fork that suits one machine kills every child before it has done
// anything on a machine ten times slower (ASan, a cold disk, two test processes on two cores): the
// test then checks nothing, and fails on "nothing was acknowledged".
//
// Rounds cycle through three points, so even a short run has each:
//   after_durable   a random delay after the child's first durable report: every such round has
//                   acknowledged data to check, on any machine;
//   after_open      a random delay after it reports open: early in its working life, often before
//                   anything is durable;
//   while_opening   a random moment inside its open (recovery included), drawn from the longest open
//                   measured so far, so it lands there at any machine speed (after_open until one is).
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>

namespace annal::test {

enum class KillPoint { after_durable, after_open, while_opening };

class KillTiming {
 public:
  using Clock = std::chrono::steady_clock;

  // `delay_max`: the longest random delay after the point, what spreads the kills over the work.
  KillTiming(std::uint64_t seed, std::chrono::microseconds delay_max) : random_(seed), delay_max_(delay_max) {}

  [[nodiscard]] KillPoint point(int round) const {
    switch (round % 4) {
      case 1: return KillPoint::after_open;
      case 3: return open_max_ > Clock::duration::zero() ? KillPoint::while_opening : KillPoint::after_open;
      default: return KillPoint::after_durable;
    }
  }
  // Call when a child reports open, `took` after its fork.
  void opened_after(Clock::duration took) { open_max_ = std::max(open_max_, took); }
  // From fork, for while_opening.
  [[nodiscard]] Clock::duration into_open() {
    return Clock::duration(std::uniform_int_distribution<Clock::rep>(0, open_max_.count())(random_));
  }
  // From the point, for the others.
  [[nodiscard]] std::chrono::microseconds delay() {
    return std::chrono::microseconds(
        std::uniform_int_distribution<std::chrono::microseconds::rep>(0, delay_max_.count())(random_));
  }

 private:
  std::mt19937_64 random_;
  std::chrono::microseconds delay_max_;
  Clock::duration open_max_{};
};

// A kill test's knob (how many kills, which seed) from the environment, or `otherwise`.
inline std::uint64_t env_or(const char* name, std::uint64_t otherwise) {
  const char* value = std::getenv(name);
  return value != nullptr ? std::strtoull(value, nullptr, 10) : otherwise;
}

// A kill test's child, forked: `body(reports)` runs in it with the write end of a pipe to report
// on, and must not return (it _exits); the child dies with the test process (PR_SET_PDEATHSIG).
// The parent gets its pid and the pipe's read end (close-on-exec); pid -1 if fork or pipe failed.
struct ForkedChild {
  pid_t pid = -1;
  int reports = -1;
};
template <class Body>
ForkedChild fork_child(Body&& body) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return {};
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return {};
  }
  if (pid == 0) {
    ::close(fds[0]);
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != parent) _exit(6);
    body(fds[1]);
    _exit(7);
  }
  ::close(fds[1]);
  return {.pid = pid, .reports = fds[0]};
}

// Reads exactly `size` bytes from `fd`; false if the writer closed it first or `deadline` passed
// (a hang guard: the deadlines given are minutes).
inline bool read_exactly(int fd, void* out, std::size_t size, KillTiming::Clock::time_point deadline) {
  std::size_t got = 0;
  while (got < size) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - KillTiming::Clock::now());
    pollfd ready{.fd = fd, .events = POLLIN, .revents = 0};
    if (left.count() < 0 || ::poll(&ready, 1, static_cast<int>(left.count())) <= 0) return false;
    const ssize_t n = ::read(fd, static_cast<char*>(out) + got, size - got);
    if (n <= 0) return false;
    got += static_cast<std::size_t>(n);
  }
  return true;
}

// Where each thread of process `pid` is waiting in the kernel (/proc's wchan), for the message of
// a test whose child stopped reporting: a lost wake-up and a slow disk look different there.
inline std::string describe_threads(int pid) {
  std::string out;
  const std::filesystem::path tasks = "/proc/" + std::to_string(pid) + "/task";
  std::error_code error;
  for (const auto& task : std::filesystem::directory_iterator(tasks, error)) {
    std::string wchan;
    std::getline(std::ifstream(task.path() / "wchan"), wchan);
    out += " " + task.path().filename().string() + ":" + (wchan.empty() ? "running" : wchan);
  }
  return out.empty() ? " (gone)" : out;
}

// What a kill test's child reports to the parent: kReportedOpen once its store is open, then a
// word after each durable step (the parent reads them with kill_at_point). In the child: a write
// that fails ends it.
inline constexpr std::uint64_t kReportedOpen = 0;
inline void report_to_parent(int fd, std::uint64_t word) {
  if (::write(fd, &word, sizeof word) != sizeof word) _exit(5);
}

// One round of a kill test whose child reports as report_to_parent says: waits for the child to reach `timing.point(round)`, with a
// deadline only against a hang, then SIGKILLs and reaps it. "" when the child was killed as
// planned; otherwise what went wrong (it is killed all the same).
inline std::string kill_at_point(KillTiming& timing, int round, pid_t pid, int reports, KillTiming::Clock::time_point forked,
                                 std::chrono::seconds patience) {
  std::string wrong;
  if (timing.point(round) == KillPoint::while_opening) {
    std::this_thread::sleep_for(timing.into_open());  // a moment to kill at, not a wait for the child
  } else {
    std::uint64_t word = 1;
    if (!read_exactly(reports, &word, sizeof word, forked + patience) || word != kReportedOpen) {
      wrong = "the child did not open its store";
    } else {
      timing.opened_after(KillTiming::Clock::now() - forked);
      if (timing.point(round) == KillPoint::after_durable && !read_exactly(reports, &word, sizeof word, forked + patience)) {
        wrong = "the child made nothing durable within " + std::to_string(patience.count()) + " s; its threads wait in" +
                describe_threads(pid);
      }
    }
    if (wrong.empty()) std::this_thread::sleep_for(timing.delay());
  }
  if (::kill(pid, SIGKILL) != 0) return wrong.empty() ? "kill failed" : wrong;
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return wrong.empty() ? "waitpid failed" : wrong;
  if (wrong.empty() && !WIFSIGNALED(status)) wrong = "the child exited by itself with " + std::to_string(WEXITSTATUS(status));
  return wrong;
}

}  // namespace annal::test
