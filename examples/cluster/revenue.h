// The revenue read model of the cluster example: orders created, orders paid and the revenue they
// brought, over the seeds' order events ({"orderId": "...", "amount": cents}). The same class runs
// inside each instance (over its own streams) and on the topic (over both instances' streams), so
// the two can be compared number for number.
#pragma once

#include <simdjson.h>

#include <annal/base/little_endian.h>
#include <annal/engine/projection.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace cluster {

class Revenue final : public annal::engine::Projection {
 public:
  struct Totals {
    std::uint64_t events = 0;
    std::uint64_t orders = 0;
    std::uint64_t paid = 0;
    std::uint64_t revenue_cents = 0;
    bool operator==(const Totals&) const = default;
  };

  void apply(const annal::engine::EventView& event) override {
    ++totals_.events;
    if (event.header.type == "OrderCreated") ++totals_.orders;
    if (event.header.type != "OrderPaid") return;
    thread_local simdjson::ondemand::parser parser;
    const simdjson::padded_string json(reinterpret_cast<const char*>(event.payload.data()), event.payload.size());
    simdjson::ondemand::document order;
    std::uint64_t amount = 0;
    if (parser.iterate(json).get(order) != simdjson::SUCCESS || order["amount"].get_uint64().get(amount) != simdjson::SUCCESS) {
      throw std::runtime_error("OrderPaid " + std::to_string(event.header.sequence) + " of " +
                               std::string(event.header.stream_name) + ": no amount in its payload");
    }
    ++totals_.paid;
    totals_.revenue_cents += amount;
  }

  [[nodiscard]] std::uint32_t schema() const override { return 1; }
  [[nodiscard]] std::vector<std::byte> snapshot() const override {
    std::vector<std::byte> state(32);
    annal::store_le(std::span(state), 0, totals_.events);
    annal::store_le(std::span(state), 8, totals_.orders);
    annal::store_le(std::span(state), 16, totals_.paid);
    annal::store_le(std::span(state), 24, totals_.revenue_cents);
    return state;
  }
  annal::Status restore(std::span<const std::byte> state) override {
    if (state.size() != 32) return annal::Status(annal::ErrorCode::corruption, "revenue snapshot of a wrong size");
    totals_ = {annal::load_le<std::uint64_t>(state, 0), annal::load_le<std::uint64_t>(state, 8),
               annal::load_le<std::uint64_t>(state, 16), annal::load_le<std::uint64_t>(state, 24)};
    return {};
  }

  [[nodiscard]] const Totals& totals() const { return totals_; }

 private:
  Totals totals_;
};

// One line, the same shape from every process, for scripts to compare.
inline std::string describe(const Revenue::Totals& totals) {
  return "events=" + std::to_string(totals.events) + " orders=" + std::to_string(totals.orders) +
         " paid=" + std::to_string(totals.paid) + " revenue_cents=" + std::to_string(totals.revenue_cents);
}

}  // namespace cluster
