// annal serve DIR [--listen ADDR:PORT] [--keys FILE]: the store over HTTP (annal/server/server.h)
// until SIGINT or SIGTERM, then a clean close: the next open replays nothing. SIGHUP reloads the
// keys file.
#include <signal.h>

#include <charconv>
#include <cstdio>
#include <string>

#include "annal/engine/engine.h"
#include "annal/server/server.h"
#include "arguments.h"
#include "commands.h"
#include "output.h"

namespace annal::cli {
namespace {

struct ServeOptions {
  std::string directory;
  std::string listen = "127.0.0.1:2113";
  std::string keys;
  std::string tls_certificate;
  std::string tls_key;
  bool accept_data_loss = false;
};

int run(const ServeOptions& options) {
  server::ServerOptions serving;
  const std::size_t colon = options.listen.rfind(':');
  unsigned port = 0;
  const char* digits = options.listen.data() + colon + 1;
  const char* end = options.listen.data() + options.listen.size();
  if (colon == std::string::npos || std::from_chars(digits, end, port).ptr != end || port > 65535) {
    return fail("serve", "--listen " + options.listen + ": expected ADDRESS:PORT, such as 127.0.0.1:2113 (port 0: any free one)");
  }
  serving.address = options.listen.substr(0, colon);
  serving.port = static_cast<std::uint16_t>(port);
  serving.keys_file = options.keys;
  serving.tls_certificate_file = options.tls_certificate;
  serving.tls_key_file = options.tls_key;
  // SIGINT, SIGTERM and SIGHUP are taken by sigwait below: blocked before any thread starts, so
  // that none of the engine's or the server's threads is picked to receive them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  engine::Options opening;
  opening.journal.accept_data_loss = options.accept_data_loss;
  auto opened = engine::Engine::open(options.directory, opening);
  if (!opened.ok()) return fail("serve", opened.status());
  auto server = server::Server::start(*opened.value(), serving);
  if (!server.ok()) {
    (void)opened.value()->close();
    return fail("serve", server.status());
  }
  if (options.keys.empty()) {
    std::fprintf(stderr, "annal serve: no --keys: anyone on this machine may read and write; listening on loopback only\n");
  }
  // On stdout, flushed: a script (or a test) that asked for port 0 reads the port here.
  std::printf("annal serve: %s on %s://%s:%u\n", options.directory.c_str(), options.tls_certificate.empty() ? "http" : "https",
              serving.address.c_str(),
              static_cast<unsigned>(server.value()->port()));
  std::fflush(stdout);
  int received = 0;
  while (sigwait(&signals, &received) == 0 && received == SIGHUP) {
    if (options.keys.empty()) {
      std::fprintf(stderr, "annal serve: SIGHUP: no keys file to reload\n");
    } else if (const Status reloaded = server.value()->reload_keys(); reloaded.ok()) {
      std::fprintf(stderr, "annal serve: SIGHUP: keys reloaded from %s\n", options.keys.c_str());
    } else {
      std::fprintf(stderr, "annal serve: SIGHUP: %s; the keys in force are unchanged\n", reloaded.to_string().c_str());
    }
  }
  std::fprintf(stderr, "annal serve: %s: stopping\n", received == SIGINT ? "SIGINT" : "SIGTERM");
  server.value()->stop();
  const Status closed = opened.value()->close();
  if (!closed.ok()) return fail("serve", closed);
  std::fprintf(stderr, "annal serve: closed cleanly at sequence %llu\n",
               static_cast<unsigned long long>(opened.value()->last_sequence()));
  return kOk;
}

}  // namespace

void add_serve(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<ServeOptions>();
  auto* command = app.add_subcommand("serve", "Serve the store over HTTP until SIGINT or SIGTERM (annal/server/server.h)");
  command->add_option("dir", options->directory, "The store's directory (created if missing)")->required();
  command->add_option("--listen", options->listen, "ADDRESS:PORT to listen on (port 0: any free one)")->capture_default_str();
  command->add_option("--keys", options->keys,
                      "API keys file (mode 0600; lines of ID SHA256 RIGHT..., see annal keygen); SIGHUP reloads it. "
                      "Without it, loopback addresses only");
  command->add_option("--tls-cert", options->tls_certificate, "Serve HTTPS: the PEM certificate chain (with --tls-key)");
  command->add_option("--tls-key", options->tls_key, "The certificate's PEM private key");
  add_accept_data_loss(*command, options->accept_data_loss);
  command->callback([&exit_code, options] { exit_code = run(*options); });
}

}  // namespace annal::cli
