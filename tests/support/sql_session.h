// SqlSession: one libpq session for tests to look at and change a PostgreSQL database beside the
// code under test (read a table back, lock it, alter it). Throws with PostgreSQL's message when a
// statement fails, which fails the test that ran it.
#pragma once

#include <libpq-fe.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace annal::test {

class SqlSession {
 public:
  explicit SqlSession(const std::string& conninfo) : connection_(PQconnectdb(conninfo.c_str()), PQfinish) {
    if (PQstatus(connection_.get()) != CONNECTION_OK) throw std::runtime_error(PQerrorMessage(connection_.get()));
  }
  // Runs `sql` (statements separated by ";"); a transaction it begins stays open until the
  // session ends or commits it.
  void run(const std::string& sql) { (void)exec(sql, PGRES_COMMAND_OK); }
  // Every row of a query, each column as text.
  std::vector<std::vector<std::string>> rows(const std::string& sql) {
    const auto result = exec(sql, PGRES_TUPLES_OK);
    std::vector<std::vector<std::string>> out(static_cast<std::size_t>(PQntuples(result.get())));
    for (int row = 0; row < PQntuples(result.get()); ++row) {
      for (int column = 0; column < PQnfields(result.get()); ++column) {
        out[static_cast<std::size_t>(row)].emplace_back(PQgetvalue(result.get(), row, column));
      }
    }
    return out;
  }

 private:
  std::unique_ptr<PGresult, void (*)(PGresult*)> exec(const std::string& sql, ExecStatusType expected) {
    std::unique_ptr<PGresult, void (*)(PGresult*)> result(PQexec(connection_.get(), sql.c_str()), PQclear);
    if (PQresultStatus(result.get()) != expected) {
      throw std::runtime_error(sql + ": " + PQerrorMessage(connection_.get()));
    }
    return result;
  }
  std::unique_ptr<PGconn, void (*)(PGconn*)> connection_;
};

}  // namespace annal::test
