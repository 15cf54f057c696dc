// The two read models of engine_e2e_2proj (engine_bench.cc), after the seeds' order example
// (orders created, paid, shipped, refunded): OrderBook keeps each order's status and amounts in a
// hash map keyed by the stream's name, TypeTotals counts events and sums amounts per event type.
// Each also measures, on its own thread, how long each event took from just before its append() to
// its apply(): the writer stamps the time into the payload, so no state is shared with the writers.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "annal/base/assert.h"
#include "annal/base/little_endian.h"
#include "annal/engine/projection.h"

namespace annal::bench {

// An order event's payload: the steady_clock time just before its append() (ns; 0 for events
// written before the clock starts, which are not measured), the amount in cents, then filler.
inline constexpr std::size_t kAppendedAtOffset = 0;
inline constexpr std::size_t kAmountOffset = 8;
inline constexpr std::size_t kOrderPayloadBytesMin = 16;

inline std::uint64_t steady_now_ns() {
  const auto since_boot = std::chrono::steady_clock::now().time_since_epoch();
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(since_boot).count());
}

inline void encode_order(std::span<std::byte> payload, std::uint64_t appended_at_ns, std::uint64_t amount_cents) {
  ANNAL_ASSERT(payload.size() >= kOrderPayloadBytesMin);
  store_le(payload, kAppendedAtOffset, appended_at_ns);
  store_le(payload, kAmountOffset, amount_cents);
}

// The event types, in the order an order's events cycle through them after OrderCreated.
inline constexpr std::string_view kOrderCreated = "OrderCreated";
inline constexpr std::string_view kOrderLifecycle[] = {"OrderPaid", "OrderShipped", "OrderRefunded"};

// What a projection measures, written by its thread only (read through Engine::query, which runs on
// that thread too). The latencies are reserved up front so that apply() does not allocate for them.
class Visibility {
 public:
  explicit Visibility(std::size_t events_max) { latencies_us_.reserve(events_max); }

  void see(std::span<const std::byte> payload) {
    const auto appended_at = load_le<std::uint64_t>(payload, kAppendedAtOffset);
    if (appended_at == 0) return;  // written before the clock started
    const std::uint64_t now = steady_now_ns();
    ANNAL_ASSERT(now >= appended_at);  // one steady clock, one process
    latencies_us_.push_back(static_cast<double>(now - appended_at) / 1e3);
    last_seen_ns_ = now;
    ++in_batch_;
  }
  void end_of_batch() {
    if (in_batch_ == 0) return;
    ++batches_;
    in_batch_ = 0;
  }

  [[nodiscard]] const std::vector<double>& latencies_us() const noexcept { return latencies_us_; }
  [[nodiscard]] std::uint64_t last_seen_ns() const noexcept { return last_seen_ns_; }
  [[nodiscard]] std::uint64_t batches() const noexcept { return batches_; }  // those with measured events

 private:
  std::vector<double> latencies_us_;
  std::uint64_t last_seen_ns_ = 0;
  std::uint64_t in_batch_ = 0;
  std::uint64_t batches_ = 0;
};

// A projection that measures itself: its events applied and its Visibility.
class MeasuredProjection : public engine::Projection {
 public:
  explicit MeasuredProjection(std::size_t events_max) : visibility_(events_max) {}
  void end_of_batch(std::uint64_t) override { visibility_.end_of_batch(); }
  [[nodiscard]] const Visibility& visibility() const noexcept { return visibility_; }
  [[nodiscard]] std::uint64_t applied() const noexcept { return applied_; }

 protected:
  void measure(const engine::EventView& event) {
    visibility_.see(event.payload);
    ++applied_;
  }

 private:
  Visibility visibility_;
  std::uint64_t applied_ = 0;
};

// Status and money of every order: one hash-map lookup by order (stream) name per event, an
// insert for a new order, a branch on the event type.
class OrderBook final : public MeasuredProjection {
 public:
  enum class Stage : std::uint8_t { created, paid, shipped, refunded };
  struct Order {
    Stage stage = Stage::created;
    std::uint32_t events = 0;
    std::uint64_t amount_cents = 0;
    std::uint64_t paid_cents = 0;
    std::uint64_t refunded_cents = 0;
  };

  using MeasuredProjection::MeasuredProjection;

  void apply(const engine::EventView& event) override {
    measure(event);
    auto found = orders_.find(event.header.stream_name);
    if (found == orders_.end()) found = orders_.emplace(std::string(event.header.stream_name), Order{}).first;
    Order& order = found->second;
    const auto amount = load_le<std::uint64_t>(event.payload, kAmountOffset);
    const std::string_view type = event.header.type;
    if (type == kOrderCreated) {
      order.stage = Stage::created;
      order.amount_cents = amount;
    } else if (type == kOrderLifecycle[0]) {
      order.stage = Stage::paid;
      order.paid_cents += amount;
    } else if (type == kOrderLifecycle[1]) {
      order.stage = Stage::shipped;
    } else {
      ANNAL_ASSERT(type == kOrderLifecycle[2]);  // the benchmark appends no other type
      order.stage = Stage::refunded;
      order.refunded_cents += amount;
    }
    ++order.events;
  }

  [[nodiscard]] std::size_t orders() const noexcept { return orders_.size(); }

 private:
  // Looked up by the event's string_view name, without building a std::string (C++20).
  struct NameHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view name) const noexcept { return std::hash<std::string_view>{}(name); }
  };
  std::unordered_map<std::string, Order, NameHash, std::equal_to<>> orders_;
};

// Events and money per event type: an ordered map, found by the event's type name.
class TypeTotals final : public MeasuredProjection {
 public:
  struct Total {
    std::uint64_t events = 0;
    std::uint64_t amount_cents = 0;
  };

  using MeasuredProjection::MeasuredProjection;

  void apply(const engine::EventView& event) override {
    measure(event);
    auto found = totals_.find(event.header.type);
    if (found == totals_.end()) found = totals_.emplace(std::string(event.header.type), Total{}).first;
    ++found->second.events;
    found->second.amount_cents += load_le<std::uint64_t>(event.payload, kAmountOffset);
  }

  [[nodiscard]] std::uint64_t events() const noexcept {
    std::uint64_t sum = 0;
    for (const auto& [type, total] : totals_) sum += total.events;
    return sum;
  }

 private:
  std::map<std::string, Total, std::less<>> totals_;
};

}  // namespace annal::bench
