// A throw-away RabbitMQ node for a test suite or a benchmark: Debian's rabbitmq-server run from
// /usr/lib/rabbitmq/bin (ANNAL_RABBITMQ_BINDIR) under a node name of its own, with its own AMQP,
// distribution and epmd ports, listening on 127.0.0.1 only, its data, logs, configuration and
// Erlang cookie (HOME) in a temporary directory; stopped, its epmd too, and removed at the end.
//
// Each run of the node is one process group, led by a guardian (guardian.h): our own epmd, the
// script, the VM and its helpers. If the test process dies without running the destructor, the
// guardian kills the group. epmd runs in the foreground, started by us before the VM: the one the
// VM starts itself daemonizes, leaving the group and the test's process tree (so neither a group
// kill nor ctest's kill of the tree reaches it), and `epmd -kill` is refused while a node is
// registered. ERL_AFLAGS tells every VM of the node's (the server, rabbitmqctl's) not to start one.
//
// Not /usr/sbin/rabbitmq-server: run as root, Debian's wrapper switches to the rabbitmq account
// with su, changes to /var/lib/rabbitmq and writes its start-up log to /var/log/rabbitmq. The
// script beneath it runs as whoever calls it, so the temporary directory stays ours.
//
// A step that fails throws std::runtime_error with what the programs said.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "eventually.h"
#include "guardian.h"
#include "run_program.h"
#include "temp_directory.h"

extern char** environ;

namespace annal::test {

// A TCP port free on 127.0.0.1 now (the kernel's pick; another process could take it before the
// server binds it, which would show as a failed start).
inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    throw std::runtime_error("free_port: cannot bind on loopback");
  }
  ::close(fd);
  return ntohs(address.sin_port);
}

// Whether something accepts connections on 127.0.0.1:`port`.
inline bool accepts_on(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  const bool accepted = fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  if (fd >= 0) ::close(fd);
  return accepted;
}

class RabbitServer {
 public:
  // `bindir`: where rabbitmq-server and rabbitmqctl are (ANNAL_RABBITMQ_BINDIR).
  explicit RabbitServer(std::string bindir) : bindir_(std::move(bindir)) {
    static int made = 0;
    node_ = "annal-test-" + std::to_string(::getpid()) + "-" + std::to_string(made++) + "@localhost";
    port_ = free_port();
    const int dist_port = free_port();
    epmd_port_ = free_port();
    std::ofstream(dir_.path() + "/rabbitmq.conf")
        << "listeners.tcp.default = 127.0.0.1:" << port_ << "\n"
        << "disk_free_limit.absolute = 1MB\n"  // a nearly full /tmp must not block publishers
        << "log.console = false\n";
    std::ofstream(dir_.path() + "/enabled_plugins") << "[].\n";
    env_ = {{"HOME", dir_.path()},
            {"RABBITMQ_NODENAME", node_},
            {"RABBITMQ_NODE_PORT", std::to_string(port_)},
            {"RABBITMQ_DIST_PORT", std::to_string(dist_port)},
            {"ERL_EPMD_PORT", std::to_string(epmd_port_)},
            {"ERL_EPMD_ADDRESS", "127.0.0.1"},
            {"ERL_AFLAGS", "-start_epmd false"},
            {"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS", "-kernel inet_dist_use_interface {127,0,0,1}"},
            {"RABBITMQ_MNESIA_BASE", dir_.path() + "/mnesia"},
            {"RABBITMQ_LOG_BASE", dir_.path() + "/log"},
            {"RABBITMQ_CONFIG_FILE", dir_.path() + "/rabbitmq.conf"},
            {"RABBITMQ_ADVANCED_CONFIG_FILE", dir_.path() + "/advanced.config"},
            {"RABBITMQ_ENABLED_PLUGINS_FILE", dir_.path() + "/enabled_plugins"},
            {"RABBITMQ_PID_FILE", dir_.path() + "/server.pid"},
            {"RABBITMQ_CONF_ENV_FILE", "/dev/null"}};  // not /etc/rabbitmq's
    try {
      start();
    } catch (...) {
      stop();
      throw;
    }
  }
  ~RabbitServer() { stop(); }
  RabbitServer(const RabbitServer&) = delete;
  RabbitServer& operator=(const RabbitServer&) = delete;

  // Starts the node (again, with the same data after stop()) and returns once it takes connections.
  void start() {
    if (pid_ > 0) return;
    std::vector<std::string> strings;
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string entry(*e);
      if (!env_.contains(entry.substr(0, entry.find('=')))) strings.push_back(entry);
    }
    for (const auto& [name, value] : env_) strings.push_back(name + "=" + value);
    std::vector<char*> envp;
    for (std::string& s : strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    const std::string program = bindir_ + "/rabbitmq-server";
    char* argv[] = {const_cast<char*>(program.c_str()), nullptr};
    guardian_.emplace("kill -KILL 0", std::vector<std::string>{});  // before anything it guards
    const int log = ::open((dir_.path() + "/server.out").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    const int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (start_epmd(envp.data(), null, log)) pid_ = spawn_in_group(argv, envp.data(), guardian_->group(), null, log);
    ::close(log);
    ::close(null);
    if (pid_ <= 0) throw std::runtime_error("epmd on port " + std::to_string(epmd_port_) + " did not start: " + output());
    const ProgramRun waited = ctl("wait --timeout 120 " + dir_.path() + "/server.pid", std::chrono::seconds(150));
    if (waited.exit_code != 0) {
      throw std::runtime_error("rabbitmq-server " + node_ + " did not start: " + waited.output + "\n" + output());
    }
  }

  // Stops the node as an operator would (SIGTERM: the VM shuts down in order) and waits for it;
  // SIGKILL to its group after two minutes. Then its epmd, and whatever else is left of the group.
  void stop() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      reap(std::chrono::seconds(120));
    }
    if (!guardian_) return;
    // The guardian is in the group until this kill: the group's number is still ours.
    ::kill(-guardian_->group(), SIGKILL);
    guardian_.reset();
    if (epmd_pid_ > 0) ::waitpid(epmd_pid_, nullptr, 0);  // its port is free again for the next start
    epmd_pid_ = -1;
  }

  [[nodiscard]] int port() const { return port_; }
  [[nodiscard]] const std::string& node() const { return node_; }
  [[nodiscard]] std::string url() const { return "amqp://guest:guest@127.0.0.1:" + std::to_string(port_) + "/%2f"; }

  // rabbitmqctl against this node.
  [[nodiscard]] ProgramRun ctl(const std::string& args, std::chrono::seconds limit = std::chrono::seconds(120)) const {
    return run_program(with_env() + bindir_ + "/rabbitmqctl -q -n " + node_ + " " + args, limit);
  }
  // The message count rabbitmqctl list_queues shows for a queue (a stream's: every message in it).
  [[nodiscard]] std::int64_t messages(const std::string& queue) const {
    const ProgramRun listed = ctl("list_queues --no-table-headers name messages");
    if (listed.exit_code != 0) throw std::runtime_error("rabbitmqctl list_queues: " + listed.output);
    std::istringstream lines(listed.output);
    for (std::string name, count; lines >> name >> count;) {
      if (name == queue) return std::stoll(count);
    }
    return -1;
  }

 private:
  [[nodiscard]] std::string with_env() const {
    return "env HOME=" + dir_.path() + " ERL_EPMD_PORT=" + std::to_string(epmd_port_) + " ERL_AFLAGS='-start_epmd false' ";
  }
  // Starts epmd (its port and address from the environment) in the node's group and returns once it
  // takes connections, before the VM looks for it; false if it exited first (its port taken).
  bool start_epmd(char* const envp[], int in, int out) {
    char* argv[] = {const_cast<char*>("/bin/sh"), const_cast<char*>("-c"), const_cast<char*>("exec epmd"), nullptr};
    epmd_pid_ = spawn_in_group(argv, envp, guardian_->group(), in, out);
    bool exited = epmd_pid_ < 0;
    const bool listening = eventually([&] {
      exited = exited || ::waitpid(epmd_pid_, nullptr, WNOHANG) == epmd_pid_;
      return exited || accepts_on(epmd_port_);
    });
    if (exited) epmd_pid_ = -1;
    return listening && !exited;
  }
  // What the script, the VM and epmd wrote.
  [[nodiscard]] std::string output() const {
    std::string out;
    std::getline(std::ifstream(dir_.path() + "/server.out"), out, '\0');
    return out;
  }
  void reap(std::chrono::seconds patience) {
    const auto deadline = std::chrono::steady_clock::now() + patience;
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() >= deadline) {
        ::kill(-guardian_->group(), SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a poll of the child, not a wait for time
    }
    pid_ = -1;  // the VM's helpers (erl_child_setup, inet_gethost) end with it, or with the group in stop()
  }

  std::string bindir_;
  TempDirectory dir_;
  std::string node_;
  int port_ = 0;
  int epmd_port_ = 0;
  std::map<std::string, std::string> env_;
  std::optional<Guardian> guardian_;  // while the node runs
  pid_t epmd_pid_ = -1;
  pid_t pid_ = -1;  // the script's
};

}  // namespace annal::test
