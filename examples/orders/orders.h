// The shop from the seed documents: orders are created, paid and (partly) refunded. Commands are
// checked against the order's events (a refund may not exceed what was paid and not yet refunded);
// two read models answer queries: "orders" (each order's status and amounts) and "revenue" (totals).
//
// Events are JSON, as in the seeds: {"order":"123456","amount":100} (amounts in cents), one stream
// per order ("order-123456").
#pragma once

#include <simdjson.h>

#include <charconv>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "annal/engine/aggregate.h"
#include "annal/engine/projection.h"

namespace orders {

using annal::ErrorCode;
using annal::Result;
using annal::Status;
using annal::engine::EventView;
using annal::engine::NewEvent;

inline std::string stream_of(std::uint64_t order) { return "order-" + std::to_string(order); }

// An order's number as clients write it: 1 to 18 digits, so that it fits PostgreSQL's bigint.
inline std::optional<std::uint64_t> order_id(std::string_view text) {
  std::uint64_t id = 0;
  const auto parsed = std::from_chars(text.data(), text.data() + text.size(), id);
  if (text.empty() || text.size() > 18 || parsed.ec != std::errc() || parsed.ptr != text.data() + text.size()) {
    return std::nullopt;
  }
  return id;
}

// The order a stream is the history of; nullopt for any other stream. The generic API
// (POST /streams) can append anything anywhere: the read models count only an order's own stream,
// spelled as stream_of() spells it, so "order-abc" or "order-007" change nothing.
inline std::optional<std::uint64_t> order_of_stream(std::string_view name) {
  if (!name.starts_with("order-")) return std::nullopt;
  const auto id = order_id(name.substr(6));
  if (!id || stream_of(*id) != name) return std::nullopt;
  return id;
}

inline std::vector<std::byte> payload(std::uint64_t order, std::int64_t amount) {
  const std::string json = "{\"order\":\"" + std::to_string(order) + "\",\"amount\":" + std::to_string(amount) + "}";
  const auto bytes = std::as_bytes(std::span(json));
  return {bytes.begin(), bytes.end()};
}

// The amount in an event's payload: 0 if there is none or it is negative (the commands write
// positive amounts, but POST /streams can write any payload on an order's stream).
inline std::int64_t amount_of(std::span<const std::byte> bytes) {
  thread_local simdjson::ondemand::parser parser;
  const simdjson::padded_string json(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  std::int64_t amount = 0;
  auto document = parser.iterate(json);
  if (document.error() || document["amount"].get_int64().get(amount) || amount < 0) return 0;
  return amount;
}

// A sum of amounts (both >= 0), held at the largest int64 rather than overflowing: events
// written through POST /streams may carry any amount, and the read models must not fail on them.
// The PostgreSQL table computes the same, as LEAST(sum, max - amount) + amount.
inline std::int64_t plus(std::int64_t sum, std::int64_t amount) {
  constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
  return sum > kMax - amount ? kMax : sum + amount;
}

// The command side's view of one order: all a decision needs, folded from its events.
struct Order {
  bool created = false;
  std::int64_t amount = 0;
  std::int64_t paid = 0;
  std::int64_t refunded = 0;

  void apply(std::string_view type, std::int64_t value) {
    if (type == "OrderCreated") {
      created = true;
      amount = value;
    } else if (type == "OrderPaid") {
      paid = plus(paid, value);
    } else if (type == "RefundCreated") {
      refunded = plus(refunded, value);
    }
  }
};

// The commands: each checks the order and returns the event it produces, or why it is refused.
inline Result<NewEvent> create_order(const Order& order, std::uint64_t id, std::int64_t amount) {
  if (order.created) return Status(ErrorCode::invalid_argument, "order " + std::to_string(id) + " exists");
  if (amount <= 0) return Status(ErrorCode::invalid_argument, "an order's amount must be positive");
  return NewEvent{.type = "OrderCreated", .payload = payload(id, amount)};
}

inline Result<NewEvent> pay_order(const Order& order, std::uint64_t id, std::int64_t amount) {
  if (!order.created) return Status(ErrorCode::not_found, "no order " + std::to_string(id));
  if (amount <= 0 || amount > order.amount - order.paid) {
    return Status(ErrorCode::invalid_argument, "order " + std::to_string(id) + " is " + std::to_string(order.amount) +
                                                   ", paid " + std::to_string(order.paid) + ": cannot pay " +
                                                   std::to_string(amount) + " more");
  }
  return NewEvent{.type = "OrderPaid", .payload = payload(id, amount)};
}

inline Result<NewEvent> create_refund(const Order& order, std::uint64_t id, std::int64_t amount) {
  if (!order.created) return Status(ErrorCode::not_found, "no order " + std::to_string(id));
  if (amount <= 0 || amount > order.paid - order.refunded) {
    return Status(ErrorCode::invalid_argument, "order " + std::to_string(id) + ": paid " + std::to_string(order.paid) +
                                                   ", refunded " + std::to_string(order.refunded) + ": a refund of " +
                                                   std::to_string(amount) + " exceeds what was paid");
  }
  return NewEvent{.type = "RefundCreated", .payload = payload(id, amount)};
}

// Runs a command against the store the way any client would: fold the order's stream, decide,
// append at the version read (annal::engine::execute retries on a conflict).
template <class Decide>
annal::engine::AppendResult run_command(annal::engine::Engine& engine, std::uint64_t id, Decide&& decide) {
  return annal::engine::execute<Order>(
      engine, stream_of(id),
      [](Order& order, const annal::engine::Event& e) { order.apply(e.header.type, amount_of(e.payload)); },
      [&](const Order& order) -> Result<std::vector<NewEvent>> {
        auto event = decide(order);
        if (!event.ok()) return event.status();
        return std::vector<NewEvent>{std::move(event.value())};
      });
}

// Little-endian words, for the projections' snapshots.
inline void put(std::vector<std::byte>& out, std::uint64_t word) {
  const auto at = out.size();
  out.resize(at + 8);
  std::memcpy(out.data() + at, &word, 8);
}
inline bool take(std::span<const std::byte>& in, std::uint64_t& word) {
  if (in.size() < 8) return false;
  std::memcpy(&word, in.data(), 8);
  in = in.subspan(8);
  return true;
}

// Read model "orders": each order's status and amounts.
class OrdersView final : public annal::engine::Projection {
 public:
  enum class Status : std::uint8_t { created, paid, refunded };
  struct Row {
    Status status = Status::created;
    std::int64_t amount = 0;
    std::int64_t paid = 0;
    std::int64_t refunded = 0;
  };

  // Any event of the three types on an order's stream makes its row, whatever came before (the
  // generic API can write an OrderPaid with no OrderCreated): the PostgreSQL table does the same.
  void apply(const EventView& event) override {
    const std::string_view type = event.header.type;
    if (type != "OrderCreated" && type != "OrderPaid" && type != "RefundCreated") return;
    const auto id = order_of_stream(event.header.stream_name);
    if (!id) return;
    const std::int64_t value = amount_of(event.payload);
    Row& row = rows_[*id];
    if (type == "OrderCreated") {
      row.amount = value;
    } else if (type == "OrderPaid") {
      row.paid = plus(row.paid, value);
      row.status = Status::paid;
    } else {
      row.refunded = plus(row.refunded, value);
      row.status = Status::refunded;
    }
  }
  [[nodiscard]] const Row* find(std::uint64_t id) const {
    const auto found = rows_.find(id);
    return found == rows_.end() ? nullptr : &found->second;
  }
  [[nodiscard]] std::size_t size() const { return rows_.size(); }

  std::uint32_t schema() const override { return 2; }  // 2: only orders' own streams count
  std::vector<std::byte> snapshot() const override {
    std::vector<std::byte> out;
    out.reserve(rows_.size() * 40);
    for (const auto& [id, row] : rows_) {
      for (const std::uint64_t word : {id, static_cast<std::uint64_t>(row.status), static_cast<std::uint64_t>(row.amount),
                                       static_cast<std::uint64_t>(row.paid), static_cast<std::uint64_t>(row.refunded)}) {
        put(out, word);
      }
    }
    return out;
  }
  annal::Status restore(std::span<const std::byte> state) override {
    std::map<std::uint64_t, Row> rows;
    std::uint64_t id, status, amount, paid, refunded;
    while (take(state, id)) {
      if (!take(state, status) || !take(state, amount) || !take(state, paid) || !take(state, refunded) || status > 2) {
        return annal::Status(ErrorCode::corruption, "orders snapshot: a row is cut short");
      }
      rows[id] = {static_cast<Status>(status), static_cast<std::int64_t>(amount), static_cast<std::int64_t>(paid),
                  static_cast<std::int64_t>(refunded)};
    }
    rows_ = std::move(rows);
    return {};
  }

 private:
  std::map<std::uint64_t, Row> rows_;
};

inline const char* to_string(OrdersView::Status status) {
  switch (status) {
    case OrdersView::Status::created: return "created";
    case OrdersView::Status::paid: return "paid";
    case OrdersView::Status::refunded: return "refunded";
  }
  return "?";
}

// Read model "revenue": totals over all orders.
class Revenue final : public annal::engine::Projection {
 public:
  struct Totals {
    std::uint64_t orders = 0;
    std::int64_t ordered = 0;
    std::int64_t paid = 0;
    std::int64_t refunded = 0;
  };
  void apply(const EventView& event) override {
    if (!order_of_stream(event.header.stream_name)) return;
    const std::int64_t value = amount_of(event.payload);
    if (event.header.type == "OrderCreated") {
      ++totals_.orders;
      totals_.ordered = plus(totals_.ordered, value);
    } else if (event.header.type == "OrderPaid") {
      totals_.paid = plus(totals_.paid, value);
    } else if (event.header.type == "RefundCreated") {
      totals_.refunded = plus(totals_.refunded, value);
    }
  }
  [[nodiscard]] const Totals& totals() const { return totals_; }

  std::uint32_t schema() const override { return 2; }  // 2: only orders' own streams count
  std::vector<std::byte> snapshot() const override {
    std::vector<std::byte> out;
    for (const std::uint64_t word : {totals_.orders, static_cast<std::uint64_t>(totals_.ordered),
                                     static_cast<std::uint64_t>(totals_.paid), static_cast<std::uint64_t>(totals_.refunded)}) {
      put(out, word);
    }
    return out;
  }
  annal::Status restore(std::span<const std::byte> state) override {
    std::uint64_t words[4];
    for (auto& word : words) {
      if (!take(state, word)) return annal::Status(ErrorCode::corruption, "revenue snapshot: cut short");
    }
    totals_ = {words[0], static_cast<std::int64_t>(words[1]), static_cast<std::int64_t>(words[2]),
               static_cast<std::int64_t>(words[3])};
    return {};
  }

 private:
  Totals totals_;
};

}  // namespace orders
