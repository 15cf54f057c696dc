// `orders serve`: the seed documents' order service over HTTP, as routes for annal's server.
//
//   POST /orders  {"orderId": "123456", "amount": 100}    OrderCreated    (409 if it exists)
//   POST /orders  {"orderId": "123456", "status": "Paid"}  OrderPaid: what is left to pay, or
//                                                          "amount" (404 if no such order)
//   POST /refunds {"orderId": "123456", "amount": 50}     RefundCreated   (422 beyond what was
//                                                          paid and not yet refunded)
//     each answers 201, once durable, {"orderId", "eventType", "timestamp", "sequence"}, and
//     the header Annal-Sequence; a refused command appends nothing.
//   GET  /orders?orderId=123456[&min_sequence=N]
//     the order's state from the `orders` read model (or, with --postgres, from the PostgreSQL
//     table), once it has applied sequence N (read your writes: N is a write's Annal-Sequence),
//     and its history from its stream, oldest first.
//
// Keys, when the server has them: write on stream order-ID to post, read on it to get.
#pragma once

#include "annal/engine/engine.h"
#include "annal/server/server.h"
#include "postgres_table.h"

namespace orders {

// The routes, for ServerOptions::routes. `engine` has the `orders` projection (main.cc,
// open_store) and outlives the server. With `table` (--postgres), GET /orders answers the order's
// state from PostgreSQL (postgres_table.h).
annal::server::Routes http_routes(annal::engine::Engine& engine, std::shared_ptr<const OrdersTable> table = nullptr);

}  // namespace orders
