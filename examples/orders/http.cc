#include "http.h"

#include <simdjson.h>

#include <chrono>
#include <optional>
#include <string>

#include "annal/server/event_json.h"
#include "orders.h"

namespace orders {
namespace {

using annal::engine::Engine;
using annal::server::Answer;
using annal::server::error_answer;
using annal::server::json_string;
using annal::server::Later;
using annal::server::Need;
using annal::server::Refused;
using annal::server::Reply;
using annal::server::Request;
using annal::server::Right;

using orders::order_id;
// "123456" (a string, as the seeds send it, or a number): an order id; nullopt if not one.
std::optional<std::uint64_t> order_id(const simdjson::dom::element& value) {
  std::string_view text;
  std::uint64_t number = 0;
  if (value.get(text) == simdjson::SUCCESS) return order_id(text);
  if (value.get(number) == simdjson::SUCCESS) return order_id(std::to_string(number));
  return std::nullopt;
}

// One event as the seeds show it.
std::string event_json(std::uint64_t id, const annal::engine::EventHeader& header, std::int64_t amount) {
  return "{\"orderId\":\"" + std::to_string(id) + "\",\"eventType\":" + json_string(header.type) +
         ",\"timestamp\":" + std::to_string(header.timestamp_ns / 1'000'000'000) +
         ",\"sequence\":" + std::to_string(header.sequence) + ",\"amount\":" + std::to_string(amount) + "}";
}

enum class Command { create, pay, refund };

void post(Engine& engine, Command command, const Request& request, const Refused& refused, Reply& reply) {
  thread_local simdjson::dom::parser parser;
  simdjson::dom::object body;
  if (parser.parse(request.body.data(), request.body.size()).get(body) != simdjson::SUCCESS) {
    return reply(error_answer(400, "bad_json", "the body is a JSON object, such as {\"orderId\": \"123456\", \"amount\": 100}"));
  }
  simdjson::dom::element field;
  const auto id = body["orderId"].get(field) == simdjson::SUCCESS ? order_id(field) : std::nullopt;
  if (!id) return reply(error_answer(400, "bad_order_id", "orderId is the order's number, 1 to 18 digits, such as \"123456\""));
  std::optional<std::int64_t> amount;
  if (body["amount"].get(field) == simdjson::SUCCESS) {
    std::int64_t value = 0;
    if (field.get(value) != simdjson::SUCCESS) return reply(error_answer(400, "bad_amount", "amount is a whole number"));
    amount = value;
  }
  std::string_view status;
  const bool paying = body["status"].get(status) == simdjson::SUCCESS;
  if (paying && status != "Paid") return reply(error_answer(400, "bad_status", "status is \"Paid\", the one change an order takes"));
  if (command == Command::create && paying) command = Command::pay;
  if (command != Command::pay && !amount) return reply(error_answer(400, "bad_amount", "amount is missing"));
  if (auto refusal = refused(Need::on(Right::write, stream_of(*id)))) return reply(std::move(*refusal));

  unsigned refused_with = 422;  // a rule of the order's: what it is now does not allow the command
  const auto appended = run_command(engine, *id, [&](const Order& order) -> Result<NewEvent> {
    switch (command) {
      case Command::create:
        if (order.created) refused_with = 409;
        return create_order(order, *id, *amount);
      case Command::pay: return pay_order(order, *id, amount.value_or(order.amount - order.paid));
      case Command::refund: return create_refund(order, *id, *amount);
    }
    return Status(ErrorCode::invalid_argument, "no such command");
  });
  if (!appended.ok()) {
    const ErrorCode code = appended.code();
    const unsigned answer = code == ErrorCode::not_found ? 404 : code == ErrorCode::invalid_argument ? refused_with : 503;
    return reply(error_answer(answer, answer == 503 ? "unavailable" : "refused", appended.status().message()));
  }
  // Answered once durable, with the event as stored (its timestamp is the engine's).
  const annal::engine::Receipt receipt = appended.value();
  engine.on_durable(receipt, [&engine, receipt, id = *id, reply = std::move(reply)](const annal::Status& durable) {
    if (!durable.ok()) return reply(error_answer(503, "not_durable", durable.to_string()));
    annal::engine::ReadStreamOptions last;
    last.from_version = receipt.last_version;
    last.max_count = 1;
    const auto stored = engine.read_stream(stream_of(id), last);
    if (!stored.ok() || stored.value().empty()) return reply(error_answer(503, "read_failed", stored.status().to_string()));
    const annal::engine::Event& event = stored.value().front();
    reply(Answer(201, event_json(id, event.header, amount_of(event.payload)), receipt.last_sequence));
  });
}

// The answer: the order's state, and its history from its stream.
Answer order_answer(Engine& engine, std::uint64_t id, const OrdersView::Row& state) {
  const auto history = engine.read_stream(stream_of(id), {});
  if (!history.ok()) return error_answer(503, "read_failed", history.status().message());
  std::string body = "{\"orderId\":\"" + std::to_string(id) + "\",\"status\":\"" + to_string(state.status) +
                     "\",\"amount\":" + std::to_string(state.amount) + ",\"paid\":" + std::to_string(state.paid) +
                     ",\"refunded\":" + std::to_string(state.refunded) + ",\"events\":[";
  for (std::size_t i = 0; i < history.value().size(); ++i) {
    const annal::engine::Event& event = history.value()[i];
    body += (i == 0 ? "" : ",") + event_json(id, event.header, amount_of(event.payload));
  }
  return Answer(200, body + "]}");
}

// The state from the in-memory read model once it has applied min_sequence. May wait: runs on a
// query thread (Later).
Answer from_view(Engine& engine, std::uint64_t id, std::uint64_t min_sequence, Engine::Clock::time_point deadline) {
  const auto row = annal::engine::query<OrdersView>(engine, "orders", min_sequence, [&](const OrdersView& view) {
    const auto* found = view.find(id);
    return found != nullptr ? std::optional<OrdersView::Row>(*found) : std::nullopt;
  }, deadline - Engine::Clock::now());
  if (!row.ok()) {
    const bool late = row.code() == ErrorCode::timed_out;
    return error_answer(late ? 504 : 503, late ? "not_yet_applied" : "unavailable", row.status().message());
  }
  if (!row.value()) return error_answer(404, "no_order", "no order " + std::to_string(id));
  return order_answer(engine, id, *row.value());
}

// The same from the PostgreSQL table once its checkpoint has reached min_sequence.
Answer from_table(Engine& engine, const OrdersTable& table, std::uint64_t id, std::uint64_t min_sequence,
                  Engine::Clock::time_point deadline) {
  if (!table.projection->wait_for(min_sequence, deadline)) {
    // A projection that stopped (a statement PostgreSQL refused) will not get there.
    if (const annal::Status refused = table.projection->refusal(); !refused.ok()) {
      return error_answer(503, "projection_stopped", refused.message());
    }
    if (Engine::Clock::now() < deadline) return error_answer(503, "unavailable", "the server is stopping");
    return error_answer(504, "not_yet_applied", "the PostgreSQL table holds sequence " +
                                                    std::to_string(table.projection->checkpoint()) + ", not yet " +
                                                    std::to_string(min_sequence));
  }
  const auto row = read_order(table, id, deadline);
  if (!row.ok()) {
    const bool late = row.code() == ErrorCode::timed_out;
    return error_answer(late ? 504 : 503, late ? "timed_out" : "unavailable", row.status().message());
  }
  if (!row.value()) return error_answer(404, "no_order", "no order " + std::to_string(id));
  return order_answer(engine, id, *row.value());
}

void get(Engine& engine, const std::shared_ptr<const OrdersTable>& table, const Request& request, const Refused& refused,
         const Later& later, Reply& reply) {
  const auto given = annal::server::query_parameter(request.target, "orderId");
  const auto id = given ? order_id(*given) : std::nullopt;
  if (!id) return reply(error_answer(400, "bad_order_id", "GET /orders?orderId=123456"));
  if (auto refusal = refused(Need::on(Right::read, stream_of(*id)))) return reply(std::move(*refusal));
  const auto min_sequence = annal::server::min_sequence_of(engine, request.target);
  if (!min_sequence.ok()) return reply(error_answer(400, "bad_min_sequence", min_sequence.status().message()));
  later([&engine, table, id = *id, at_least = min_sequence.value()](Engine::Clock::time_point deadline) {
    return table ? from_table(engine, *table, id, at_least, deadline) : from_view(engine, id, at_least, deadline);
  }, std::move(reply));
}

}  // namespace

annal::server::Routes http_routes(Engine& engine, std::shared_ptr<const OrdersTable> table) {
  return [&engine, table](const Request& request, const Refused& refused, const Later& later, Reply& reply) {
    const std::string_view path = request.target.substr(0, request.target.find('?'));
    if (path != "/orders" && path != "/refunds") return false;
    if (request.method == "POST") {
      post(engine, path == "/orders" ? Command::create : Command::refund, request, refused, reply);
    } else if (request.method == "GET" && path == "/orders") {
      get(engine, table, request, refused, later, reply);
    } else {
      reply(error_answer(405, "method_not_allowed", path == "/orders" ? "GET or POST /orders" : "POST /refunds"));
    }
    return true;
  };
}

}  // namespace orders
