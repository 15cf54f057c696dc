// A throw-away PostgreSQL cluster for a test or a benchmark: initdb into a temporary directory, the
// server listening on a Unix socket in that directory and on no TCP port, stopped and removed at
// the end. initdb refuses to run as root, so where the process runs as root the cluster belongs to
// the `postgres` account Debian's package makes, and its programs run through runuser. A step that
// fails throws std::runtime_error with the program's output (a test fails on it).
//
// pg_ctl daemonizes the postmaster (setsid), out of any group and tree of the test's. If the test
// process dies without running the destructor, a guardian (guardian.h) stops it as the destructor
// would: SIGQUIT, an immediate shutdown, in which the postmaster ends its backends and removes its
// shared memory (SIGKILL would leave the segment). Only a postmaster whose working directory is
// this cluster's data directory: the pid in postmaster.pid may be stale, and its number reused.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>

#include "guardian.h"
#include "run_program.h"
#include "temp_directory.h"

namespace annal::test {

class PostgresCluster {
 public:
  // `bindir`: where initdb and pg_ctl are (ANNAL_POSTGRES_BINDIR, found by CMake).
  explicit PostgresCluster(std::string bindir) : bindir_(std::move(bindir)) {
    if (::geteuid() == 0) {
      as_owner_ = "runuser -u postgres -- ";
      must("chown postgres: " + dir_.path());
    }
    must(as_owner_ + bindir_ + "/initdb --pgdata=" + data() + " --username=annal --auth=trust --encoding=UTF8 --no-sync");
    guardian_.emplace(R"sh(pid=$(head -n 1 "$1/postmaster.pid") && [ "$(readlink "/proc/$pid/cwd")" = "$1" ] && kill -QUIT "$pid")sh",
                      std::vector<std::string>{std::filesystem::canonical(data()).string()});
    start();
  }
  // The directory goes with dir_, after the server has stopped.
  ~PostgresCluster() { run_program(as_owner_ + bindir_ + "/pg_ctl stop --pgdata=" + data() + " --mode=immediate --wait"); }
  PostgresCluster(const PostgresCluster&) = delete;
  PostgresCluster& operator=(const PostgresCluster&) = delete;

  // Starts the server and returns once it takes connections (pg_ctl --wait). fsync stays on: the
  // figures and crash tests are for a server as durable as a real one.
  void start() {
    const std::string options = "-c listen_addresses='' -c unix_socket_directories='" + dir_.path() + "' -c fsync=on";
    must(as_owner_ + bindir_ + "/pg_ctl start --pgdata=" + data() + " --wait --log=" + dir_.path() + "/server.log --options=\"" +
         options + "\"");
  }
  // Stops it as a crash would: no checkpoint, the next start recovers from the WAL.
  void crash() { must(as_owner_ + bindir_ + "/pg_ctl stop --pgdata=" + data() + " --mode=immediate --wait"); }
  // The directory of the server's Unix socket (libpq's host).
  [[nodiscard]] const std::string& socket_directory() const { return dir_.path(); }
  // The socket itself ("" if not found), for what connects to it by path (a proxy).
  [[nodiscard]] std::string socket_path() const {
    for (const auto& entry : std::filesystem::directory_iterator(dir_.path())) {
      if (entry.path().filename().string().starts_with(".s.PGSQL.") && entry.path().extension() != ".lock") {
        return entry.path().string();
      }
    }
    return "";
  }
  // libpq's connection string for one of the cluster's databases.
  [[nodiscard]] std::string conninfo(const std::string& database = "postgres") const {
    return "host=" + dir_.path() + " dbname=" + database + " user=annal";
  }

 private:
  [[nodiscard]] std::string data() const { return dir_.path() + "/data"; }
  static void must(const std::string& command) {
    const ProgramRun ran = run_program(command);
    if (ran.exit_code != 0) throw std::runtime_error(command + " exited with " + std::to_string(ran.exit_code) + ": " + ran.output);
  }

  std::string bindir_;
  TempDirectory dir_;  // removed if the constructor throws, too
  std::string as_owner_;  // "runuser -u postgres -- " when the process runs as root
  std::optional<Guardian> guardian_;  // after dir_: gone before it, once the server has stopped
};

}  // namespace annal::test
