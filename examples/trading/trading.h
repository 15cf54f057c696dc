// The trading example's domain: limit orders, an order book with price-time priority, the events
// the matcher journals, and "positions", the read model built from its trades. Nothing here
// touches a disk or a thread; matcher.h drives it.
//
// Prices are integer ticks (cents) and quantities whole units, so every sum is exact.
//
// Events go to one stream per symbol ("book-ACME"), not per account: a trade involves two accounts
// but one book, so it is one event in one place; a book's stream is its whole history, in order;
// and the matcher, the books' only writer, checks each stream's version on every append.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <variant>
#include <vector>

#include "annal/base/assert.h"
#include "annal/engine/projection.h"

namespace trading {

using annal::ErrorCode;
using annal::Result;
using annal::Status;

enum class Side : std::uint8_t { buy = 0, sell = 1 };

// An order fills against at most `quantity` resting orders, so one order's events (accepted, then
// its trades) number at most kEventsPerOrderMax and always fit in one append.
inline constexpr std::int64_t kQuantityMax = 100;
inline constexpr std::int64_t kPriceMax = 100'000'000;  // ticks
inline constexpr std::size_t kEventsPerOrderMax = 1 + static_cast<std::size_t>(kQuantityMax);

struct PlaceOrder {
  std::uint32_t account = 0;
  Side side = Side::buy;
  std::int64_t price = 0;  // the limit: the worst price the order accepts
  std::int64_t quantity = 0;
};

struct CancelOrder {
  std::uint64_t order_id = 0;
  std::uint32_t account = 0;
};

// The events. An order enters the book when accepted; trades reduce it; what is left rests.
struct OrderAccepted {
  std::uint64_t order_id = 0;
  std::uint32_t account = 0;
  Side side = Side::buy;
  std::int64_t price = 0;
  std::int64_t quantity = 0;
};
// One fill, at the resting (maker) order's price.
struct TradeExecuted {
  std::uint64_t taker = 0;
  std::uint64_t maker = 0;
  std::uint32_t buyer = 0;
  std::uint32_t seller = 0;
  std::int64_t price = 0;
  std::int64_t quantity = 0;
};
// A resting order taken off the book; `quantity` is what was still open.
struct OrderCancelled {
  std::uint64_t order_id = 0;
  std::uint32_t account = 0;
  std::int64_t quantity = 0;
};
using BookEvent = std::variant<OrderAccepted, TradeExecuted, OrderCancelled>;

inline constexpr std::string_view kOrderAccepted = "OrderAccepted";
inline constexpr std::string_view kTradeExecuted = "TradeExecuted";
inline constexpr std::string_view kOrderCancelled = "OrderCancelled";
inline std::string_view type_of(const BookEvent& event) {
  constexpr std::array<std::string_view, 3> kTypes{kOrderAccepted, kTradeExecuted, kOrderCancelled};
  return kTypes[event.index()];  // in BookEvent's order
}

inline constexpr std::string_view kStreamPrefix = "book-";
inline std::string stream_of(std::string_view symbol) { return std::string(kStreamPrefix) + std::string(symbol); }
inline std::string_view symbol_of(std::string_view stream) { return stream.substr(kStreamPrefix.size()); }

// Payloads are the fields in order, fixed-width and little-endian (as is every machine annal runs
// on), strings as a 16-bit length and the bytes.
class PayloadWriter {
 public:
  template <class T>
    requires std::is_integral_v<T> || std::is_enum_v<T>
  PayloadWriter& put(T value) {
    const auto* bytes = reinterpret_cast<const std::byte*>(&value);
    bytes_.insert(bytes_.end(), bytes, bytes + sizeof(T));
    return *this;
  }
  PayloadWriter& put(const std::string& text) {
    ANNAL_ASSERT(text.size() <= UINT16_MAX);  // symbols are short
    put(static_cast<std::uint16_t>(text.size()));
    const auto bytes = std::as_bytes(std::span(text));
    bytes_.insert(bytes_.end(), bytes.begin(), bytes.end());
    return *this;
  }
  [[nodiscard]] std::vector<std::byte> take() { return std::move(bytes_); }

 private:
  std::vector<std::byte> bytes_;
};

// Reads what PayloadWriter wrote; a short payload leaves ok() false instead of reading past it.
class PayloadReader {
 public:
  explicit PayloadReader(std::span<const std::byte> in) : in_(in) {}
  template <class T>
    requires std::is_integral_v<T> || std::is_enum_v<T>
  PayloadReader& get(T& value) {
    if (in_.size() - at_ < sizeof(T)) return fail();
    std::memcpy(&value, in_.data() + at_, sizeof(T));
    at_ += sizeof(T);
    return *this;
  }
  PayloadReader& get(std::string& text) {
    std::uint16_t size = 0;
    if (!get(size).ok_ || in_.size() - at_ < size) return fail();
    text.assign(reinterpret_cast<const char*>(in_.data() + at_), size);
    at_ += size;
    return *this;
  }
  [[nodiscard]] bool ok() const { return ok_; }
  [[nodiscard]] bool done() const { return ok_ && at_ == in_.size(); }  // all of it read, no more

 private:
  PayloadReader& fail() {
    ok_ = false;
    at_ = in_.size();
    return *this;
  }
  std::span<const std::byte> in_;
  std::size_t at_ = 0;
  bool ok_ = true;
};

// Each event's fields, listed once for encode() and decode().
inline auto fields(OrderAccepted& e) { return std::tie(e.order_id, e.account, e.side, e.price, e.quantity); }
inline auto fields(TradeExecuted& e) { return std::tie(e.taker, e.maker, e.buyer, e.seller, e.price, e.quantity); }
inline auto fields(OrderCancelled& e) { return std::tie(e.order_id, e.account, e.quantity); }

inline std::vector<std::byte> encode(BookEvent event) {
  PayloadWriter out;
  std::visit([&](auto& e) { std::apply([&](auto&... field) { (out.put(field), ...); }, fields(e)); }, event);
  return out.take();
}

// The event of type `type` in `payload`; nullopt if it is not one of ours or not well formed.
inline std::optional<BookEvent> decode(std::string_view type, std::span<const std::byte> payload) {
  BookEvent event;
  if (type == kOrderAccepted) {
    event = OrderAccepted{};
  } else if (type == kTradeExecuted) {
    event = TradeExecuted{};
  } else if (type == kOrderCancelled) {
    event = OrderCancelled{};
  } else {
    return std::nullopt;
  }
  PayloadReader in(payload);
  std::visit([&](auto& e) { std::apply([&](auto&... field) { (in.get(field), ...); }, fields(e)); }, event);
  if (!in.done()) return std::nullopt;
  if (const auto* accepted = std::get_if<OrderAccepted>(&event); accepted && accepted->side > Side::sell) {
    return std::nullopt;
  }
  return event;
}

struct Resting {
  std::uint64_t order_id = 0;
  std::uint32_t account = 0;
  std::int64_t quantity = 0;  // still open
  friend bool operator==(const Resting&, const Resting&) = default;
};

// One symbol's book. place() and cancel() decide (the book does not change); apply() is the only
// way it changes, the same live and when rebuilt from the journal.
class OrderBook {
 public:
  // OrderAccepted, then a trade against each resting order the new one crosses: best price first,
  // oldest first at one price, each at the resting order's price. What is left rests.
  [[nodiscard]] Result<std::vector<BookEvent>> place(std::uint64_t id, const PlaceOrder& order) const {
    if (order.quantity <= 0 || order.quantity > kQuantityMax) {
      return Status(ErrorCode::invalid_argument, "quantity must be 1 to " + std::to_string(kQuantityMax));
    }
    if (order.price <= 0 || order.price > kPriceMax) {
      return Status(ErrorCode::invalid_argument, "price must be 1 to " + std::to_string(kPriceMax) + " ticks");
    }
    std::vector<BookEvent> events{OrderAccepted{id, order.account, order.side, order.price, order.quantity}};
    std::int64_t left = order.quantity;
    auto take = [&](const auto& levels, auto crosses) {
      for (auto level = levels.begin(); level != levels.end() && left > 0 && crosses(level->first); ++level) {
        for (auto maker = level->second.begin(); maker != level->second.end() && left > 0; ++maker) {
          const std::int64_t fill = std::min(left, maker->quantity);
          const bool buying = order.side == Side::buy;
          events.push_back(TradeExecuted{.taker = id, .maker = maker->order_id,
                                         .buyer = buying ? order.account : maker->account,
                                         .seller = buying ? maker->account : order.account,
                                         .price = level->first, .quantity = fill});
          left -= fill;
        }
      }
    };
    if (order.side == Side::buy) {
      take(asks_, [&](std::int64_t ask) { return ask <= order.price; });
    } else {
      take(bids_, [&](std::int64_t bid) { return bid >= order.price; });
    }
    return events;
  }

  [[nodiscard]] Result<OrderCancelled> cancel(const CancelOrder& command) const {
    const Resting* order = find(command.order_id);
    if (order == nullptr) {
      return Status(ErrorCode::not_found, "order " + std::to_string(command.order_id) + " is not resting");
    }
    if (order->account != command.account) {
      return Status(ErrorCode::invalid_argument, "order " + std::to_string(command.order_id) + " is another account's");
    }
    return OrderCancelled{command.order_id, order->account, order->quantity};
  }

  void apply(const BookEvent& event) {
    if (const auto* accepted = std::get_if<OrderAccepted>(&event)) {
      const Resting order{accepted->order_id, accepted->account, accepted->quantity};
      if (accepted->side == Side::buy) {
        bids_[accepted->price].push_back(order);
      } else {
        asks_[accepted->price].push_back(order);
      }
      where_[accepted->order_id] = Place{accepted->side, accepted->price};
    } else if (const auto* trade = std::get_if<TradeExecuted>(&event)) {
      reduce(trade->maker, trade->quantity);
      reduce(trade->taker, trade->quantity);
    } else {
      const auto& cancelled = std::get<OrderCancelled>(event);
      reduce(cancelled.order_id, cancelled.quantity);
    }
  }

  [[nodiscard]] const Resting* find(std::uint64_t id) const {
    const auto place = where_.find(id);
    if (place == where_.end()) return nullptr;
    return place->second.side == Side::buy ? find_in(bids_, place->second.price, id)
                                           : find_in(asks_, place->second.price, id);
  }
  [[nodiscard]] std::optional<std::int64_t> best_bid() const {
    return bids_.empty() ? std::nullopt : std::optional(bids_.begin()->first);
  }
  [[nodiscard]] std::optional<std::int64_t> best_ask() const {
    return asks_.empty() ? std::nullopt : std::optional(asks_.begin()->first);
  }
  [[nodiscard]] std::size_t resting() const { return where_.size(); }
  friend bool operator==(const OrderBook&, const OrderBook&) = default;

 private:
  struct Place {
    Side side = Side::buy;
    std::int64_t price = 0;
    friend bool operator==(const Place&, const Place&) = default;
  };
  using Queue = std::deque<Resting>;  // one price level, oldest first

  template <class Levels>
  static const Resting* find_in(const Levels& levels, std::int64_t price, std::uint64_t id) {
    const Queue& queue = levels.at(price);
    const auto order = std::find_if(queue.begin(), queue.end(), [&](const Resting& r) { return r.order_id == id; });
    return order == queue.end() ? nullptr : &*order;
  }

  // Takes `quantity` off a resting order; a filled or cancelled order leaves the book.
  void reduce(std::uint64_t id, std::int64_t quantity) {
    const auto place = where_.find(id);
    ANNAL_ASSERT(place != where_.end());  // the events came from this book: the order is here
    if (place->second.side == Side::buy) {
      reduce_in(bids_, place->second.price, id, quantity);
    } else {
      reduce_in(asks_, place->second.price, id, quantity);
    }
  }
  template <class Levels>
  void reduce_in(Levels& levels, std::int64_t price, std::uint64_t id, std::int64_t quantity) {
    const auto level = levels.find(price);
    Queue& queue = level->second;
    const auto order = std::find_if(queue.begin(), queue.end(), [&](const Resting& r) { return r.order_id == id; });
    ANNAL_ASSERT(order != queue.end() && order->quantity >= quantity);
    order->quantity -= quantity;
    if (order->quantity > 0) return;
    queue.erase(order);
    where_.erase(id);
    if (queue.empty()) levels.erase(level);
  }

  std::map<std::int64_t, Queue, std::greater<>> bids_;  // best (highest) first
  std::map<std::int64_t, Queue> asks_;                  // best (lowest) first
  std::unordered_map<std::uint64_t, Place> where_;      // resting order -> its level
};

// The "positions" read model: per account, units held per symbol (negative: short) and cash in
// ticks (what it received for sales less what it paid for purchases). Built from TradeExecuted
// alone; every trade moves units and cash between two accounts, so across all accounts each
// symbol's units and all the cash sum to zero.
struct Account {
  std::int64_t cash = 0;
  std::map<std::string, std::int64_t, std::less<>> units;  // symbol -> units
  friend bool operator==(const Account&, const Account&) = default;
};

class Positions final : public annal::engine::Projection {
 public:
  void apply(const annal::engine::EventView& event) override {
    if (event.header.type != kTradeExecuted) return;
    const auto decoded = decode(event.header.type, event.payload);
    // Our own events, checksummed by the journal: one we cannot read is a bug. Throwing stops the
    // projection, and its queries then return this message.
    if (!decoded) throw std::runtime_error("bad TradeExecuted at sequence " + std::to_string(event.header.sequence));
    const auto& trade = std::get<TradeExecuted>(*decoded);
    const std::string symbol(symbol_of(event.header.stream_name));
    Account& buyer = accounts_[trade.buyer];
    buyer.units[symbol] += trade.quantity;
    buyer.cash -= trade.price * trade.quantity;
    Account& seller = accounts_[trade.seller];
    seller.units[symbol] -= trade.quantity;
    seller.cash += trade.price * trade.quantity;
    ++trades_;
  }

  [[nodiscard]] std::uint32_t schema() const override { return 1; }
  // Deterministic (std::map order), as the engine's consistency check needs.
  [[nodiscard]] std::vector<std::byte> snapshot() const override {
    PayloadWriter out;
    out.put(trades_).put(static_cast<std::uint32_t>(accounts_.size()));
    for (const auto& [id, account] : accounts_) {
      out.put(id).put(account.cash).put(static_cast<std::uint32_t>(account.units.size()));
      for (const auto& [symbol, units] : account.units) out.put(symbol).put(units);
    }
    return out.take();
  }
  // Decodes into new state first, so a bad snapshot leaves this one as it was.
  Status restore(std::span<const std::byte> state) override {
    PayloadReader in(state);
    std::uint64_t trades = 0;
    std::uint32_t count = 0;
    std::map<std::uint32_t, Account> accounts;
    in.get(trades).get(count);
    for (std::uint32_t i = 0; i < count && in.ok(); ++i) {
      std::uint32_t id = 0;
      std::uint32_t symbols = 0;
      Account account;
      in.get(id).get(account.cash).get(symbols);
      for (std::uint32_t s = 0; s < symbols && in.ok(); ++s) {
        std::string symbol;
        in.get(symbol).get(account.units[symbol]);
      }
      accounts.emplace(id, std::move(account));  // a repeated id makes the count come out short
    }
    if (!in.done() || accounts.size() != count) return Status(ErrorCode::corruption, "positions snapshot is malformed");
    trades_ = trades;
    accounts_ = std::move(accounts);
    return {};
  }

  [[nodiscard]] const std::map<std::uint32_t, Account>& accounts() const { return accounts_; }
  [[nodiscard]] std::uint64_t trades() const { return trades_; }

 private:
  std::map<std::uint32_t, Account> accounts_;
  std::uint64_t trades_ = 0;
};

}  // namespace trading
