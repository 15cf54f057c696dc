#include "annal/server/serve_command.h"

#include <signal.h>
#include <sys/resource.h>

#include <charconv>
#include <cstdio>
#include <string>

namespace annal::server {
namespace {

sigset_t serve_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  return signals;
}

// A connection is a descriptor: the soft limit many systems start a process with (1,024) would run
// out before --max-connections does. Raised to the hard limit, as servers do; said if still short.
void raise_open_file_limit(const std::string& name, std::size_t connections_max) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
    getrlimit(RLIMIT_NOFILE, &limit);
  }
  // Room for the store's own files and the connections refused past the limit.
  constexpr rlim_t kReserve = 64;
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < connections_max + kReserve) {
    std::fprintf(stderr, "%s: the open-file limit (%llu) is below --max-connections (%zu) plus %llu for the store: "
                         "connections past it wait until others end (raise ulimit -n)\n",
                 name.c_str(), static_cast<unsigned long long>(limit.rlim_cur), connections_max,
                 static_cast<unsigned long long>(kReserve));
  }
}

}  // namespace

Status parse_listen(std::string_view listen, ServerOptions& options) {
  const std::size_t colon = listen.rfind(':');
  unsigned port = 0;
  const char* digits = listen.data() + colon + 1;
  const char* end = listen.data() + listen.size();
  if (colon == std::string_view::npos || std::from_chars(digits, end, port).ptr != end || port > 65535) {
    return Status(ErrorCode::invalid_argument, "--listen " + std::string(listen) +
                                                   ": expected ADDRESS:PORT, such as 127.0.0.1:2113 (port 0: any free one)");
  }
  options.address = std::string(listen.substr(0, colon));
  options.port = static_cast<std::uint16_t>(port);
  return {};
}

void block_serve_signals() {
  const sigset_t signals = serve_signals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
}

Status serve_until_stopped(std::string_view program, std::string_view directory, engine::Engine& engine,
                           const ServerOptions& options) {
  const std::string name(program);
  raise_open_file_limit(name, options.connections_max);
  auto server = Server::start(engine, options);
  if (!server.ok()) return server.status();
  if (options.keys_file.empty()) {
    std::fprintf(stderr, "%s: no keys file: anyone on this machine may read and write; listening on loopback only\n",
                 name.c_str());
  }
  std::printf("%s: %.*s on %s://%s:%u\n", name.c_str(), static_cast<int>(directory.size()), directory.data(),
              options.tls_certificate_file.empty() ? "http" : "https", options.address.c_str(),
              static_cast<unsigned>(server.value()->port()));
  std::fflush(stdout);
  const sigset_t signals = serve_signals();
  int received = 0;
  while (sigwait(&signals, &received) == 0 && received == SIGHUP) {
    if (const Status reloaded = server.value()->reload_keys(); reloaded.ok()) {
      std::fprintf(stderr, "%s: SIGHUP: keys reloaded from %s\n", name.c_str(), options.keys_file.c_str());
    } else {
      std::fprintf(stderr, "%s: SIGHUP: %s; the keys in force are unchanged\n", name.c_str(), reloaded.to_string().c_str());
    }
  }
  std::fprintf(stderr, "%s: %s: stopping\n", name.c_str(), received == SIGINT ? "SIGINT" : "SIGTERM");
  server.value()->stop();
  return {};
}

}  // namespace annal::server
