// A throw-away PostgreSQL cluster for one test: initdb into a temporary directory, the server
// listening on a Unix socket in that directory and on no TCP port, stopped and removed at the end.
// initdb refuses to run as root, so where the tests run as root the cluster belongs to the
// `postgres` account Debian's package makes, and its programs run through runuser.
#pragma once

#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "run_program.h"

namespace annal::test {

class PostgresCluster {
 public:
  // `bindir`: where initdb and pg_ctl are (ANNAL_POSTGRES_BINDIR, found by CMake).
  explicit PostgresCluster(std::string bindir) : bindir_(std::move(bindir)) {
    std::string pattern = (std::filesystem::temp_directory_path() / "annal-pg-XXXXXX").string();
    dir_ = ::mkdtemp(pattern.data()) != nullptr ? pattern : "";
    EXPECT_FALSE(dir_.empty());
    if (::geteuid() == 0) {
      as_owner_ = "runuser -u postgres -- ";
      EXPECT_EQ(run_program("chown postgres: " + dir_).exit_code, 0);
    }
    const ProgramRun made = run_program(as_owner_ + bindir_ + "/initdb --pgdata=" + data() +
                                        " --username=annal --auth=trust --encoding=UTF8 --no-sync");
    EXPECT_EQ(made.exit_code, 0) << made.output;
    start();
  }
  ~PostgresCluster() {
    run_program(as_owner_ + bindir_ + "/pg_ctl stop --pgdata=" + data() + " --mode=immediate --wait");
    std::filesystem::remove_all(dir_);
  }
  PostgresCluster(const PostgresCluster&) = delete;
  PostgresCluster& operator=(const PostgresCluster&) = delete;

  // Starts the server and returns once it takes connections (pg_ctl --wait).
  void start() {
    const std::string options = "-c listen_addresses='' -c unix_socket_directories='" + dir_ + "' -c fsync=on";
    const ProgramRun started = run_program(as_owner_ + bindir_ + "/pg_ctl start --pgdata=" + data() + " --wait --log=" +
                                           dir_ + "/server.log --options=\"" + options + "\"");
    EXPECT_EQ(started.exit_code, 0) << started.output;
  }
  // Stops it as a crash would: no checkpoint, the next start recovers from the WAL.
  void crash() {
    const ProgramRun stopped = run_program(as_owner_ + bindir_ + "/pg_ctl stop --pgdata=" + data() + " --mode=immediate --wait");
    EXPECT_EQ(stopped.exit_code, 0) << stopped.output;
  }
  // libpq's connection string for one of the cluster's databases.
  [[nodiscard]] std::string conninfo(const std::string& database = "postgres") const {
    return "host=" + dir_ + " dbname=" + database + " user=annal";
  }

 private:
  [[nodiscard]] std::string data() const { return dir_ + "/data"; }

  std::string bindir_;
  std::string dir_;
  std::string as_owner_;  // "runuser -u postgres -- " when the tests run as root
};

}  // namespace annal::test
