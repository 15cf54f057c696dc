// The matcher: the business-logic processor of the LMAX architecture. One thread owns every order
// book in memory and handles one command at a time (no locks: nothing else touches the books); the
// events it decides go to the journal, and read models such as Positions follow the journal.
//
//   gateways --Command--> ring (annal::ringbuf) --> Matcher::on_event --> books (memory)
//                                                           | end of batch: flush()
//                                                           v
//                                   engine: one append per symbol --> journal --> "positions"
//
// For each command it decides with the book as it stands, applies the events to the book at once
// (the next command must see them) and stages them; flush() appends each symbol's staged events
// as one atomic batch. So the books run ahead of the journal by at most one batch. If an append
// fails the matcher stops taking commands: its books hold events the journal refused, and the
// journal is the truth. A new Matcher then recover()s the books from the journal.
//
// It never waits for the disk: the engine reports durability on its notifier thread (on_durable),
// where a real exchange would send its confirmations.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "annal/engine/engine.h"
#include "trading.h"

namespace trading {

namespace ae = annal::engine;

// What a gateway puts into the ring: a place or a cancel.
struct Command {
  enum class Kind : std::uint8_t { place, cancel };
  Kind kind = Kind::place;
  std::uint16_t symbol = 0;  // place: an index into the matcher's symbols
  PlaceOrder place{};
  CancelOrder cancel{};
};

struct MatcherStats {
  std::uint64_t accepted = 0;
  std::uint64_t cancelled = 0;
  std::uint64_t rejected = 0;  // invalid orders, cancels of orders not resting, and commands after a failure
  std::uint64_t trades = 0;
  std::uint64_t appends = 0;
  std::uint64_t events = 0;  // appended
};

// Not thread-safe: one thread (the matcher thread) makes every call after recover().
class Matcher {
 public:
  // `engine` must outlive the matcher.
  Matcher(ae::Engine& engine, std::vector<std::string> symbols)
      : engine_(engine), symbols_(std::move(symbols)), books_(symbols_.size()), staged_(symbols_.size()),
        versions_(symbols_.size()) {}

  // Rebuilds the books by folding their streams' events, read from the journal in one pass in
  // pages of kRecoverPage (so memory stays bounded however long the history). Returns how many
  // it folded. Call before the first command. Its cost grows with the history: a long-lived
  // exchange would start from a snapshot of the books instead (README.md).
  annal::Result<std::uint64_t> recover() {
    std::uint64_t folded = 0;
    for (std::uint64_t from = 1; from <= engine_.durable_sequence();) {
      auto page = engine_.read_all(from, kRecoverPage);
      if (!page.ok()) return page.status();
      if (page.value().empty()) break;
      for (const ae::Event& stored : page.value()) {
        from = stored.header.sequence + 1;
        const auto book = book_of(stored.header.stream_name);
        if (!book) continue;  // another stream in the same store
        const auto event = decode(stored.header.type, stored.payload);
        if (!event) {
          return Status(ErrorCode::corruption, "bad event at sequence " + std::to_string(stored.header.sequence));
        }
        apply(*book, *event);
        versions_[*book] = stored.header.version;
        ++folded;
      }
    }
    return folded;
  }

  // The ring's event handler (annal::ringbuf::BatchEventProcessor calls it on the matcher thread).
  void on_event(const Command& command, std::int64_t /*sequence*/, bool end_of_batch) {
    handle(command);
    if (end_of_batch) (void)flush();
  }

  // Decides, applies and stages one command; a refused one counts in stats().rejected.
  void handle(const Command& command) {
    if (!failed_.ok()) {
      ++stats_.rejected;
      return;
    }
    if (command.kind == Command::Kind::cancel) return handle_cancel(command.cancel);
    const std::size_t book = command.symbol;
    if (book >= books_.size()) {
      ++stats_.rejected;
      return;
    }
    // Keep each append within the engine's limit: this order's events all go into the next one.
    if (staged_[book].size() + kEventsPerOrderMax > kEventsPerAppendMax && !flush(book).ok()) {
      ++stats_.rejected;
      return;
    }
    auto events = books_[book].place(next_order_id_, command.place);
    if (!events.ok()) {
      ++stats_.rejected;
      return;
    }
    ++stats_.accepted;
    stats_.trades += events.value().size() - 1;
    for (const BookEvent& event : events.value()) {
      apply(book, event);
      staged_[book].push_back(event);
    }
  }

  // Appends every symbol's staged events. The first error stops the matcher for good.
  Status flush() {
    for (std::size_t book = 0; book < books_.size(); ++book) {
      if (Status flushed = flush(book); !flushed.ok()) return flushed;
    }
    return {};
  }

  [[nodiscard]] const Status& failure() const { return failed_; }
  [[nodiscard]] const MatcherStats& stats() const { return stats_; }
  [[nodiscard]] const std::vector<std::string>& symbols() const { return symbols_; }
  [[nodiscard]] const OrderBook& book(std::size_t index) const { return books_[index]; }
  [[nodiscard]] std::uint64_t next_order_id() const { return next_order_id_; }
  // The receipt of the last append: its last_sequence is what a query waits for to read these writes.
  [[nodiscard]] const std::optional<ae::Receipt>& last_receipt() const { return last_receipt_; }
  // Events the engine has reported durable (updated on its notifier thread).
  [[nodiscard]] std::uint64_t durable_events() const { return durable_->load(std::memory_order_relaxed); }

 private:
  static constexpr std::size_t kEventsPerAppendMax = 1024;  // ae::Options::events_per_append_max's default
  static constexpr std::size_t kRecoverPage = 4096;

  [[nodiscard]] std::optional<std::size_t> book_of(std::string_view stream) const {
    if (!stream.starts_with(kStreamPrefix)) return std::nullopt;
    const auto symbol = std::find(symbols_.begin(), symbols_.end(), symbol_of(stream));
    if (symbol == symbols_.end()) return std::nullopt;
    return static_cast<std::size_t>(symbol - symbols_.begin());
  }

  void apply(std::size_t book, const BookEvent& event) {
    books_[book].apply(event);
    if (const auto* accepted = std::get_if<OrderAccepted>(&event)) {
      next_order_id_ = std::max(next_order_id_, accepted->order_id + 1);
    }
  }

  void handle_cancel(const CancelOrder& cancel) {
    for (std::size_t book = 0; book < books_.size(); ++book) {
      if (books_[book].find(cancel.order_id) == nullptr) continue;
      auto cancelled = books_[book].cancel(cancel);
      if (!cancelled.ok()) break;
      if (staged_[book].size() + 1 > kEventsPerAppendMax && !flush(book).ok()) break;
      apply(book, cancelled.value());
      staged_[book].push_back(cancelled.value());
      ++stats_.cancelled;
      return;
    }
    ++stats_.rejected;
  }

  Status flush(std::size_t book) {
    if (!failed_.ok()) return failed_;
    std::vector<BookEvent>& staged = staged_[book];
    if (staged.empty()) return {};
    std::vector<std::vector<std::byte>> payloads;
    std::vector<ae::EventData> events;
    payloads.reserve(staged.size());
    events.reserve(staged.size());
    for (const BookEvent& event : staged) {
      payloads.push_back(encode(event));
      events.push_back({.type = type_of(event), .payload = payloads.back()});
    }
    // The matcher is the streams' only writer, so it knows each one's version. A conflict means
    // another process appended to this book: two matchers, and this one must stop.
    const auto& version = versions_[book];
    const auto expected = version ? ae::ExpectedVersion::exactly(*version) : ae::ExpectedVersion::no_stream();
    const ae::AppendResult appended = engine_.append(stream_of(symbols_[book]), expected, events);
    if (!appended.ok()) {
      failed_ = Status(appended.code(), "append to " + stream_of(symbols_[book]) + ": " + appended.status().message());
      return failed_;
    }
    const ae::Receipt& receipt = appended.value();
    versions_[book] = receipt.last_version;
    last_receipt_ = receipt;
    ++stats_.appends;
    stats_.events += staged.size();
    engine_.on_durable(receipt, [durable = durable_, count = staged.size()](const Status& status) {
      if (status.ok()) durable->fetch_add(count, std::memory_order_relaxed);
    });
    staged.clear();
    return {};
  }

  ae::Engine& engine_;
  std::vector<std::string> symbols_;
  std::vector<OrderBook> books_;
  std::vector<std::vector<BookEvent>> staged_;            // per book: decided, applied, not yet appended
  std::vector<std::optional<std::uint64_t>> versions_;    // per book: its stream's last version
  std::uint64_t next_order_id_ = 1;
  std::optional<ae::Receipt> last_receipt_;
  MatcherStats stats_;
  Status failed_;
  // Shared with the callbacks, which may run after the matcher is gone (at the engine's close).
  std::shared_ptr<std::atomic<std::uint64_t>> durable_ = std::make_shared<std::atomic<std::uint64_t>>(0);
};

// The demo's order flow (and the tests'): limit orders around a mid price of 100.00 with small
// quantities, so books stay shallow and most orders trade; about one command in ten cancels a
// random earlier order for its owner (it may have filled already, and the cancel is then refused).
// It numbers orders as the matcher will, from first_order_id, since every order it makes is valid.
class RandomOrders {
 public:
  RandomOrders(std::uint64_t seed, std::uint32_t accounts, std::uint16_t symbols, std::uint64_t first_order_id)
      : random_(seed), accounts_(accounts), symbols_(symbols), first_order_id_(first_order_id) {}

  Command next() {
    Command command;
    if (!owners_.empty() && uniform(0, 9) == 0) {
      const std::size_t placed = uniform<std::size_t>(0, owners_.size() - 1);
      command.kind = Command::Kind::cancel;
      command.cancel = {.order_id = first_order_id_ + placed, .account = owners_[placed]};
      return command;
    }
    command.symbol = uniform<std::uint16_t>(0, static_cast<std::uint16_t>(symbols_ - 1));
    command.place = {.account = uniform<std::uint32_t>(1, accounts_),
                     .side = uniform(0, 1) == 0 ? Side::buy : Side::sell,
                     .price = 10'000 + uniform(-20, 20),
                     .quantity = uniform(1, 10) * uniform(1, 10)};
    owners_.push_back(command.place.account);
    return command;
  }

 private:
  template <class T>
  T uniform(T low, T high) {
    return std::uniform_int_distribution<T>(low, high)(random_);
  }
  std::mt19937_64 random_;
  std::uint32_t accounts_;
  std::uint16_t symbols_;
  std::uint64_t first_order_id_;
  std::vector<std::uint32_t> owners_;  // the account of each order placed, by order id - first_order_id
};

}  // namespace trading
