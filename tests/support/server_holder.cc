// server_holder: starts a throw-away server as a test does, says so, and waits to be killed; for
// the tests that kill a process holding a server and check that nothing of the server outlives it.
//
//   server_holder rabbitmq|postgres BINDIR TMPDIR
//
// The server's directory goes under TMPDIR, which the calling test owns and removes. Once the
// server takes connections it prints "holding" and the node's name (rabbitmq) or the cluster's
// socket directory (postgres) on stderr, then sleeps until a signal ends it, unless its parent
// dies first: it must not outlive a test that dies before killing it.
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <exception>

#include "postgres_cluster.h"
#include "rabbitmq_server.h"

int main(int argc, char** argv) {
  const pid_t parent = ::getppid();
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != parent) return 2;
  if (argc != 4 || ::setenv("TMPDIR", argv[3], 1) != 0) {
    std::fprintf(stderr, "usage: server_holder rabbitmq|postgres BINDIR TMPDIR\n");
    return 2;
  }
  try {
    if (std::strcmp(argv[1], "rabbitmq") == 0) {
      const annal::test::RabbitServer server(argv[2]);
      std::fprintf(stderr, "holding %s\n", server.node().c_str());
      for (;;) ::pause();
    }
    if (std::strcmp(argv[1], "postgres") == 0) {
      const annal::test::PostgresCluster cluster(argv[2]);
      std::fprintf(stderr, "holding %s\n", cluster.socket_directory().c_str());
      for (;;) ::pause();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "server_holder: %s\n", e.what());
    return 1;
  }
  std::fprintf(stderr, "server_holder: no server named %s\n", argv[1]);
  return 2;
}
