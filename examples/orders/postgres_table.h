// `orders serve DIR --postgres CONNINFO`: the orders read model kept in PostgreSQL as well, exactly
// once (connectors/postgres), in a table anyone can query with SQL:
//
//   orders (order_id bigint PRIMARY KEY, status text, amount bigint, paid bigint, refunded bigint,
//           updated_at bigint)   -- updated_at: the sequence of the order's last event
//
// GET /orders then answers the order's state from this table, once it holds ?min_sequence=.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "annal/postgres/postgres_projection.h"
#include "orders.h"

namespace orders {

struct OrdersTable {
  static constexpr const char* kName = "orders_pg";                 // the projection's, in the engine and its checkpoint
  std::shared_ptr<annal::postgres::PostgresProjection> projection;  // add it to the engine as kName
  std::string conninfo;                                             // for reading the table
};

// The projection that keeps the table, and where to read it.
OrdersTable orders_table(const std::string& conninfo);

// Order `id`'s row as PostgreSQL holds it now; nullopt if the table has no such order. Gives up
// at `deadline`, connecting or reading.
annal::Result<std::optional<OrdersView::Row>> read_order(const OrdersTable& table, std::uint64_t id,
                                                        std::chrono::steady_clock::time_point deadline);

}  // namespace orders
