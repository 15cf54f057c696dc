// annal serve DIR [--listen ADDR:PORT] [--keys FILE]: the store over HTTP (annal/server/server.h)
// until SIGINT or SIGTERM, then a clean close: the next open replays nothing. SIGHUP reloads the
// keys file.
#include <chrono>
#include <cstdio>
#include <string>

#include "annal/engine/engine.h"
#include "annal/server/builtin_projections.h"
#include "annal/server/serve_command.h"
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
  std::vector<std::string> projections;
  std::size_t max_connections = server::ServerOptions{}.connections_max;
  std::size_t max_requests = server::ServerOptions{}.requests_per_connection_max;
  std::uint64_t request_timeout_ms = static_cast<std::uint64_t>(server::ServerOptions{}.read_timeout.count());
  bool accept_data_loss = false;
  std::string key_file;
};

int run(const ServeOptions& options) {
  server::ServerOptions serving;
  if (Status listen = server::parse_listen(options.listen, serving); !listen.ok()) return fail("serve", listen);
  serving.keys_file = options.keys;
  serving.tls_certificate_file = options.tls_certificate;
  serving.tls_key_file = options.tls_key;
  serving.connections_max = options.max_connections;
  serving.requests_per_connection_max = options.max_requests;
  serving.read_timeout = std::chrono::milliseconds(options.request_timeout_ms);
  server::block_serve_signals();
  engine::Options opening;
  opening.journal.accept_data_loss = options.accept_data_loss;
  if (Status keys = use_key_file(options.key_file, opening); !keys.ok()) return fail("serve", keys);
  auto opened = engine::Engine::open(options.directory, opening);
  if (!opened.ok()) return fail("serve", opened.status());
  for (const std::string& name : options.projections) {
    auto projection = server::builtin_projection(name);
    Status added = projection ? opened.value()->add_projection(name, projection, {})
                              : Status(ErrorCode::invalid_argument, "--projection " + name + ": no such projection");
    if (!added.ok()) {
      (void)opened.value()->close();
      return fail("serve", added);
    }
  }
  serving.projections = options.projections;
  const Status served = server::serve_until_stopped("annal serve", options.directory, *opened.value(), serving);
  const Status closed = opened.value()->close();
  if (!served.ok()) return fail("serve", served);
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
  std::string names;
  for (const std::string& name : server::builtin_projection_names()) names += (names.empty() ? "" : ", ") + name;
  command->add_option("--projection", options->projections,
                      "Keep a built-in projection (" + names + "); its state at GET /projections/NAME/state")
      ->check(CLI::IsMember(server::builtin_projection_names()));
  command->add_option("--tls-cert", options->tls_certificate, "Serve HTTPS: the PEM certificate chain (with --tls-key)");
  command->add_option("--tls-key", options->tls_key, "The certificate's PEM private key");
  command->add_option("--max-connections", options->max_connections, "Connections at once; past it a new one is answered 503")
      ->capture_default_str()
      ->check(whole_number(1, 1'000'000));
  command->add_option("--max-requests-per-connection", options->max_requests,
                      "Requests on one connection; the last one's answer closes it")
      ->capture_default_str()
      ->check(whole_number(1, 1'000'000'000));
  command->add_option("--request-timeout", options->request_timeout_ms, "Milliseconds a request may take to arrive whole (408 after)")
      ->capture_default_str()
      ->check(whole_number(1, 3'600'000));
  add_accept_data_loss(*command, options->accept_data_loss);
  add_key_file(*command, options->key_file);
  command->callback([&exit_code, options] { exit_code = run(*options); });
}

}  // namespace annal::cli
