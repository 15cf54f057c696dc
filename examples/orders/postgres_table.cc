#include "postgres_table.h"

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <string_view>

namespace orders {
namespace {

using annal::engine::EventView;
using annal::postgres::Statements;

// Each event is an upsert, so that the table agrees with OrdersView whatever the generic API
// (POST /streams) wrote on an order's stream: an OrderPaid with no OrderCreated, a second
// OrderCreated, amounts that would overflow (sums are held at the largest bigint, as plus() does).
// A statement PostgreSQL refused would stop the projection for good, since every restart would
// replay the same event.
void upsert(const EventView& event, const char* sql, Statements& out) {
  const auto id = order_of_stream(event.header.stream_name);
  if (!id) return;
  out.add(sql, {std::to_string(*id), std::to_string(amount_of(event.payload)), std::to_string(event.header.sequence)});
}

}  // namespace

OrdersTable orders_table(const std::string& conninfo) {
  auto projection = std::make_shared<annal::postgres::PostgresProjection>(
      OrdersTable::kName, annal::postgres::PostgresOptions{
                       .conninfo = conninfo,
                       .schema = {"CREATE TABLE IF NOT EXISTS orders (order_id bigint PRIMARY KEY, status text NOT NULL, "
                                  "amount bigint NOT NULL, paid bigint NOT NULL, refunded bigint NOT NULL, "
                                  "updated_at bigint NOT NULL)"}});
  projection->on("OrderCreated", [](const EventView& event, Statements& out) {
    upsert(event,
           "INSERT INTO orders VALUES ($1, 'created', $2, 0, 0, $3) ON CONFLICT (order_id) DO UPDATE "
           "SET amount = EXCLUDED.amount, updated_at = EXCLUDED.updated_at",
           out);
  });
  projection->on("OrderPaid", [](const EventView& event, Statements& out) {
    upsert(event,
           "INSERT INTO orders VALUES ($1, 'paid', 0, $2, 0, $3) ON CONFLICT (order_id) DO UPDATE "
           "SET status = 'paid', paid = LEAST(orders.paid, 9223372036854775807 - EXCLUDED.paid) + EXCLUDED.paid, "
           "updated_at = EXCLUDED.updated_at",
           out);
  });
  projection->on("RefundCreated", [](const EventView& event, Statements& out) {
    upsert(event,
           "INSERT INTO orders VALUES ($1, 'refunded', 0, 0, $2, $3) ON CONFLICT (order_id) DO UPDATE "
           "SET status = 'refunded', "
           "refunded = LEAST(orders.refunded, 9223372036854775807 - EXCLUDED.refunded) + EXCLUDED.refunded, "
           "updated_at = EXCLUDED.updated_at",
           out);
  });
  return {std::move(projection), conninfo};
}

annal::Result<std::optional<OrdersView::Row>> read_order(const OrdersTable& table, std::uint64_t id,
                                                        std::chrono::steady_clock::time_point deadline) {
  // Within the request's deadline, connecting and reading both: a host gone silent or a lock held
  // by a migration must not hold a query thread longer. The table's conninfo comes last and
  // expands (a bare word is a database name), so its own settings win.
  const auto left = [&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
  };
  const auto late = [] { return annal::Status(ErrorCode::timed_out, "the table was not read in time"); };
  if (left() <= 0) return late();
  const std::string connect_timeout = std::to_string(std::max<std::int64_t>(1, left() / 1000));
  const char* keywords[] = {"connect_timeout", "dbname", nullptr};
  const char* values[] = {connect_timeout.c_str(), table.conninfo.c_str(), nullptr};
  // A connection per read keeps the example short; a service would keep a pool.
  const std::unique_ptr<PGconn, void (*)(PGconn*)> connection(PQconnectdbParams(keywords, values, 1), PQfinish);
  if (PQstatus(connection.get()) != CONNECTION_OK) {
    return annal::Status(ErrorCode::io_error, std::string("PostgreSQL: ") + PQerrorMessage(connection.get()));
  }
  // Each statement's answer is awaited with poll() until the deadline, not in a blocking libpq
  // call: a server that stops answering (a stuck backend, a network partition) never times a
  // statement out itself, and would hold the query thread, and the server's shutdown, for ever.
  using Result = std::unique_ptr<PGresult, void (*)(PGresult*)>;
  bool timed_out = false;
  const auto run = [&](const std::string& sql, const char* parameter) -> Result {
    Result last(nullptr, PQclear);
    if (PQsendQueryParams(connection.get(), sql.c_str(), parameter != nullptr ? 1 : 0, nullptr, &parameter, nullptr,
                          nullptr, 0) != 1) {
      return last;
    }
    for (;;) {
      while (PQisBusy(connection.get()) == 1) {
        pollfd ready{.fd = PQsocket(connection.get()), .events = POLLIN, .revents = 0};
        const auto wait = left();
        if (wait <= 0) {
          timed_out = true;
          return Result(nullptr, PQclear);
        }
        const int polled = ::poll(&ready, 1, static_cast<int>(std::min<std::int64_t>(wait, 60'000)));
        if ((polled < 0 && errno != EINTR) || (polled > 0 && PQconsumeInput(connection.get()) != 1)) {
          return Result(nullptr, PQclear);
        }
      }
      PGresult* next = PQgetResult(connection.get());
      if (next == nullptr) return last;
      last.reset(next);
    }
  };
  // What is left once connected; SET after connecting overrides any the conninfo's options= set.
  if (left() <= 0) return late();
  (void)run("SET statement_timeout = " + std::to_string(left()), nullptr);
  if (timed_out) return late();
  const std::string key = std::to_string(id);
  const Result result = run("SELECT status, amount, paid, refunded FROM orders WHERE order_id = $1", key.c_str());
  if (timed_out) return late();
  if (PQresultStatus(result.get()) != PGRES_TUPLES_OK) {
    const char* state = result ? PQresultErrorField(result.get(), PG_DIAG_SQLSTATE) : nullptr;
    if (state != nullptr && std::string_view(state) == "57014") return late();  // statement_timeout
    return annal::Status(ErrorCode::io_error, std::string("PostgreSQL: ") + PQerrorMessage(connection.get()));
  }
  if (PQntuples(result.get()) == 0) return std::optional<OrdersView::Row>{};
  const std::string_view status = PQgetvalue(result.get(), 0, 0);
  OrdersView::Row row;
  row.status = status == "paid" ? OrdersView::Status::paid
               : status == "refunded" ? OrdersView::Status::refunded
                                      : OrdersView::Status::created;
  row.amount = std::stoll(PQgetvalue(result.get(), 0, 1));
  row.paid = std::stoll(PQgetvalue(result.get(), 0, 2));
  row.refunded = std::stoll(PQgetvalue(result.get(), 0, 3));
  return std::optional<OrdersView::Row>(row);
}

}  // namespace orders
