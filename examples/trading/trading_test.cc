// The trading example's tests: the book's matching rules, the payloads, the positions read model,
// the matcher on a real engine (balances, restart, a second writer), and the program itself.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "matcher.h"
#include "run_program.h"
#include "temp_directory.h"

namespace trading {
namespace {

using namespace std::chrono_literals;

PlaceOrder buy(std::uint32_t account, std::int64_t price, std::int64_t quantity) {
  return {.account = account, .side = Side::buy, .price = price, .quantity = quantity};
}
PlaceOrder sell(std::uint32_t account, std::int64_t price, std::int64_t quantity) {
  return {.account = account, .side = Side::sell, .price = price, .quantity = quantity};
}

// Decides and applies, as the matcher does; returns the trades.
std::vector<TradeExecuted> place(OrderBook& book, std::uint64_t id, const PlaceOrder& order) {
  auto events = book.place(id, order);
  EXPECT_TRUE(events.ok()) << events.status().to_string();
  std::vector<TradeExecuted> trades;
  for (const BookEvent& event : events.value()) {
    book.apply(event);
    if (const auto* trade = std::get_if<TradeExecuted>(&event)) trades.push_back(*trade);
  }
  return trades;
}

TEST(OrderBookTest, FillsTheBestPriceFirstAndAtOnePriceTheOldestFirst) {
  OrderBook book;
  place(book, 1, sell(1, 10'100, 5));
  place(book, 2, sell(2, 10'000, 5));
  place(book, 3, sell(3, 10'000, 5));
  const auto trades = place(book, 4, buy(9, 10'100, 12));
  ASSERT_EQ(trades.size(), 3u);
  EXPECT_EQ(trades[0].maker, 2u);  // 100.00, first there
  EXPECT_EQ(trades[1].maker, 3u);  // 100.00, second
  EXPECT_EQ(trades[2].maker, 1u);  // 101.00
  EXPECT_EQ(trades[2].quantity, 2);
  for (const auto& trade : trades) {
    EXPECT_EQ(trade.taker, 4u);
    EXPECT_EQ(trade.buyer, 9u);
  }
  EXPECT_EQ(book.find(4), nullptr);  // filled
  ASSERT_NE(book.find(1), nullptr);
  EXPECT_EQ(book.find(1)->quantity, 3);
  EXPECT_EQ(book.best_ask(), 10'100);
}

TEST(OrderBookTest, APartialFillLeavesTheRestResting) {
  OrderBook book;
  place(book, 1, sell(1, 10'000, 5));
  const auto trades = place(book, 2, buy(2, 10'000, 8));
  ASSERT_EQ(trades.size(), 1u);
  EXPECT_EQ(trades[0].quantity, 5);
  ASSERT_NE(book.find(2), nullptr);
  EXPECT_EQ(book.find(2)->quantity, 3);
  EXPECT_EQ(book.best_bid(), 10'000);
  EXPECT_EQ(book.best_ask(), std::nullopt);
}

TEST(OrderBookTest, OrdersThatDoNotCrossRestOnBothSides) {
  OrderBook book;
  place(book, 1, sell(1, 10'001, 5));
  EXPECT_TRUE(place(book, 2, buy(2, 10'000, 5)).empty());
  EXPECT_EQ(book.best_bid(), 10'000);
  EXPECT_EQ(book.best_ask(), 10'001);
  EXPECT_EQ(book.resting(), 2u);
}

TEST(OrderBookTest, TradesAtTheRestingOrdersPrice) {
  OrderBook book;
  place(book, 1, buy(1, 10'500, 5));
  const auto trades = place(book, 2, sell(2, 10'000, 5));
  ASSERT_EQ(trades.size(), 1u);
  EXPECT_EQ(trades[0].price, 10'500);
  EXPECT_EQ(trades[0].buyer, 1u);
  EXPECT_EQ(trades[0].seller, 2u);
}

TEST(OrderBookTest, ACancelTakesOffWhatIsLeftForItsOwnerOnly) {
  OrderBook book;
  place(book, 1, sell(1, 10'000, 5));
  place(book, 2, buy(2, 10'000, 2));
  EXPECT_EQ(book.cancel({.order_id = 1, .account = 2}).code(), ErrorCode::invalid_argument);
  EXPECT_EQ(book.cancel({.order_id = 7, .account = 1}).code(), ErrorCode::not_found);
  auto cancelled = book.cancel({.order_id = 1, .account = 1});
  ASSERT_TRUE(cancelled.ok());
  EXPECT_EQ(cancelled.value().quantity, 3);
  book.apply(cancelled.value());
  EXPECT_EQ(book.resting(), 0u);
  EXPECT_EQ(book.cancel({.order_id = 1, .account = 1}).code(), ErrorCode::not_found);
}

TEST(OrderBookTest, RefusesQuantitiesAndPricesOutOfRange) {
  const OrderBook book;
  EXPECT_EQ(book.place(1, buy(1, 10'000, 0)).code(), ErrorCode::invalid_argument);
  EXPECT_EQ(book.place(1, buy(1, 10'000, kQuantityMax + 1)).code(), ErrorCode::invalid_argument);
  EXPECT_EQ(book.place(1, buy(1, 0, 1)).code(), ErrorCode::invalid_argument);
  EXPECT_EQ(book.place(1, sell(1, kPriceMax + 1, 1)).code(), ErrorCode::invalid_argument);
}

TEST(PayloadTest, EventsRoundTripAndMalformedOnesAreRefused) {
  const BookEvent events[] = {OrderAccepted{7, 3, Side::sell, 10'050, 40}, TradeExecuted{7, 5, 1, 3, 10'050, 12},
                              OrderCancelled{5, 1, 28}};
  for (const BookEvent& event : events) {
    const auto bytes = encode(event);
    const auto decoded = decode(type_of(event), bytes);
    ASSERT_TRUE(decoded.has_value()) << type_of(event);
    EXPECT_EQ(encode(*decoded), bytes);
    EXPECT_FALSE(decode(type_of(event), std::span(bytes).first(bytes.size() - 1)).has_value());
    auto longer = bytes;
    longer.push_back(std::byte{0});
    EXPECT_FALSE(decode(type_of(event), longer).has_value());
  }
  EXPECT_FALSE(decode("OrderAmended", encode(events[0])).has_value());
  auto bad_side = encode(events[0]);
  bad_side[12] = std::byte{2};  // after the order id (8 bytes) and the account (4)
  EXPECT_FALSE(decode(type_of(events[0]), bad_side).has_value());
}

TEST(PositionsTest, ASnapshotRestoresTheStateAndABadOneChangesNothing) {
  Positions positions;
  const auto trade = encode(TradeExecuted{2, 1, 10, 20, 10'000, 3});
  ae::EventHeader header;
  header.sequence = 1;
  header.type = kTradeExecuted;
  header.stream_name = "book-ACME";
  positions.apply({header, trade});
  EXPECT_EQ(positions.accounts().at(10).units.at("ACME"), 3);
  EXPECT_EQ(positions.accounts().at(20).cash, 30'000);
  Positions restored;
  ASSERT_TRUE(restored.restore(positions.snapshot()).ok());
  EXPECT_EQ(restored.accounts(), positions.accounts());
  EXPECT_EQ(restored.trades(), 1u);
  auto cut = positions.snapshot();
  cut.pop_back();
  EXPECT_EQ(restored.restore(cut).code(), ErrorCode::corruption);
  EXPECT_EQ(restored.accounts(), positions.accounts());
}

class MatcherTest : public ::testing::Test {
 protected:
  void SetUp() override { open(); }
  void open() {
    auto opened = ae::Engine::open(dir_.path(), {});
    ASSERT_TRUE(opened.ok()) << opened.status().to_string();
    engine_ = std::move(opened.value());
    matcher_ = std::make_unique<Matcher>(*engine_, std::vector<std::string>{"ACME", "BOLT", "CRUX"});
    ASSERT_TRUE(matcher_->recover().ok());
    const ae::ProjectionOptions options{.snapshot_every_events = 500};
    ASSERT_TRUE(engine_->add_projection("positions", std::make_shared<Positions>(), options).ok());
  }
  // `count` random commands, appended every 64 as a ring's batches would be; checks after each
  // append that no book is crossed (a bid at or above an ask would have traded).
  void trade(std::uint64_t count, std::uint64_t seed) {
    RandomOrders flow(seed, 8, 3, matcher_->next_order_id());
    for (std::uint64_t i = 1; i <= count; ++i) {
      matcher_->handle(flow.next());
      if (i % 64 != 0 && i != count) continue;
      ASSERT_TRUE(matcher_->flush().ok()) << matcher_->failure().to_string();
      for (std::size_t b = 0; b < 3; ++b) {
        const auto bid = matcher_->book(b).best_bid();
        const auto ask = matcher_->book(b).best_ask();
        if (bid && ask) {
          ASSERT_LT(*bid, *ask);
        }
      }
    }
  }
  Positions positions() {
    auto copy = ae::query<Positions>(*engine_, "positions", matcher_->last_receipt()->last_sequence,
                                     [](const Positions& p) { return p; }, 60s);
    EXPECT_TRUE(copy.ok()) << copy.status().to_string();
    return copy.ok() ? copy.value() : Positions();
  }

  annal::test::TempDirectory dir_;
  std::unique_ptr<ae::Engine> engine_;
  std::unique_ptr<Matcher> matcher_;
};

TEST_F(MatcherTest, PositionsBalanceAndAgreeWithTheJournalsTrades) {
  trade(3000, 1);
  const Positions seen = positions();
  EXPECT_EQ(seen.trades(), matcher_->stats().trades);
  EXPECT_GT(seen.trades(), 1000u);
  // Units per symbol and cash sum to zero: every trade moves both between two accounts.
  std::map<std::string, std::int64_t> units;
  std::int64_t cash = 0;
  for (const auto& [id, account] : seen.accounts()) {
    cash += account.cash;
    for (const auto& [symbol, held] : account.units) units[symbol] += held;
  }
  EXPECT_EQ(cash, 0);
  for (const auto& [symbol, sum] : units) EXPECT_EQ(sum, 0) << symbol;
  // The same positions, computed straight from the books' streams.
  std::map<std::uint32_t, Account> direct;
  for (const std::string& symbol : matcher_->symbols()) {
    auto events = engine_->read_stream(stream_of(symbol), {});
    ASSERT_TRUE(events.ok());
    for (const ae::Event& event : events.value()) {
      const auto decoded = decode(event.header.type, event.payload);
      ASSERT_TRUE(decoded.has_value());
      if (const auto* t = std::get_if<TradeExecuted>(&*decoded)) {
        direct[t->buyer].units[symbol] += t->quantity;
        direct[t->buyer].cash -= t->price * t->quantity;
        direct[t->seller].units[symbol] -= t->quantity;
        direct[t->seller].cash += t->price * t->quantity;
      }
    }
  }
  EXPECT_EQ(seen.accounts(), direct);
}

TEST_F(MatcherTest, ARestartRebuildsTheBooksAndRestoresPositionsFromASnapshot) {
  trade(3000, 2);
  const Positions before = positions();
  std::vector<OrderBook> books{matcher_->book(0), matcher_->book(1), matcher_->book(2)};
  const std::uint64_t next_id = matcher_->next_order_id();
  const std::uint64_t events = engine_->event_count();
  ASSERT_TRUE(engine_->close().ok());
  EXPECT_EQ(matcher_->durable_events(), matcher_->stats().events);  // every append reported durable
  matcher_.reset();
  engine_.reset();

  open();
  for (std::size_t b = 0; b < 3; ++b) EXPECT_TRUE(matcher_->book(b) == books[b]) << "book " << b;
  EXPECT_EQ(matcher_->next_order_id(), next_id);
  auto after = ae::query<Positions>(*engine_, "positions", engine_->last_sequence(),
                                    [](const Positions& p) { return p; }, 60s);
  ASSERT_TRUE(after.ok()) << after.status().to_string();
  EXPECT_EQ(after.value().accounts(), before.accounts());
  EXPECT_EQ(after.value().trades(), before.trades());
  const auto status = engine_->projection_status("positions");
  ASSERT_TRUE(status.ok());
  EXPECT_GT(status.value().restored_from, 0u);
  EXPECT_LT(status.value().replayed, events);

  // Trading goes on from where it stopped: the versions and order ids continue.
  trade(500, 3);
  EXPECT_TRUE(matcher_->failure().ok());
}

TEST_F(MatcherTest, ASecondWriterToABookStopsTheMatcher) {
  matcher_->handle({.kind = Command::Kind::place, .symbol = 0, .place = buy(1, 10'000, 5)});
  ASSERT_TRUE(matcher_->flush().ok());
  const std::string intruder = "x";
  const ae::EventData event{.type = "Intruder", .payload = std::as_bytes(std::span(intruder))};
  ASSERT_TRUE(engine_->append(stream_of("ACME"), ae::ExpectedVersion::any(), {&event, 1}).ok());
  matcher_->handle({.kind = Command::Kind::place, .symbol = 0, .place = sell(2, 10'000, 5)});
  EXPECT_EQ(matcher_->flush().code(), ErrorCode::conflict);
  EXPECT_EQ(matcher_->failure().code(), ErrorCode::conflict);
  const std::uint64_t refused = matcher_->stats().rejected;
  matcher_->handle({.kind = Command::Kind::place, .symbol = 1, .place = sell(2, 10'000, 5)});
  EXPECT_EQ(matcher_->stats().rejected, refused + 1);
}

// The program itself, small: it trades, restarts and finds everything as it was.
TEST(TradingExampleTest, RunsAndComesBackIdenticalAfterARestart) {
  annal::test::TempDirectory dir;
  const auto ran = annal::test::run_program(std::string(ANNAL_EXAMPLE_PROGRAM) +
                                            " --orders=3000 --accounts=10 --symbols=3 --dir=" + dir.path());
  const std::string& output = ran.output;
  ASSERT_EQ(ran.exit_code, 0) << output;
  EXPECT_NE(output.find("cash sums to 0: ok"), std::string::npos) << output;
  EXPECT_NE(output.find("books identical, positions identical"), std::string::npos) << output;
  EXPECT_EQ(output.find("DIFFERENT"), std::string::npos) << output;
}

}  // namespace
}  // namespace trading
