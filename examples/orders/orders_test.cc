// The orders example's rules and read models, on a real engine.
#include "orders.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "annal/engine/engine.h"

namespace orders {
namespace {

using namespace std::chrono_literals;
using annal::engine::Engine;

class OrdersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    directory_ = std::filesystem::temp_directory_path() / ("annal-orders-" + std::to_string(::getpid()));
    std::filesystem::remove_all(directory_);
    open();
  }
  void TearDown() override {
    engine_.reset();
    std::filesystem::remove_all(directory_);
  }
  void open() {
    engine_.reset();
    auto engine = Engine::open(directory_, {});
    ASSERT_TRUE(engine.ok()) << engine.status().to_string();
    engine_ = std::move(engine.value());
    ASSERT_TRUE(engine_->add_projection("orders", std::make_shared<OrdersView>(), {}).ok());
    ASSERT_TRUE(engine_->add_projection("revenue", std::make_shared<Revenue>(), {}).ok());
  }
  annal::engine::AppendResult create(std::uint64_t id, std::int64_t amount) {
    return run_command(*engine_, id, [&](const Order& o) { return create_order(o, id, amount); });
  }
  annal::engine::AppendResult pay(std::uint64_t id, std::int64_t amount) {
    return run_command(*engine_, id, [&](const Order& o) { return pay_order(o, id, amount); });
  }
  annal::engine::AppendResult refund(std::uint64_t id, std::int64_t amount) {
    return run_command(*engine_, id, [&](const Order& o) { return create_refund(o, id, amount); });
  }
  OrdersView::Row row(std::uint64_t id, std::uint64_t sequence) {
    const auto found = annal::engine::query<OrdersView>(*engine_, "orders", sequence, [&](const OrdersView& view) {
      const auto* r = view.find(id);
      return r != nullptr ? *r : OrdersView::Row{};
    }, 30s);
    EXPECT_TRUE(found.ok()) << found.status().to_string();
    return found.ok() ? found.value() : OrdersView::Row{};
  }
  std::string directory_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(OrdersTest, ARefundBeyondWhatWasPaidIsRefusedAndNothingIsAppended) {
  ASSERT_TRUE(create(123456, 10'000).ok());
  ASSERT_TRUE(pay(123456, 10'000).ok());
  ASSERT_TRUE(refund(123456, 4'000).ok());
  const std::uint64_t before = engine_->last_sequence();
  const auto refused = refund(123456, 6'001);  // 10,000 paid, 4,000 back already
  EXPECT_EQ(refused.code(), annal::ErrorCode::invalid_argument);
  EXPECT_NE(refused.status().message().find("exceeds what was paid"), std::string::npos);
  EXPECT_EQ(engine_->last_sequence(), before);
  const auto last = refund(123456, 6'000);
  ASSERT_TRUE(last.ok());
  const OrdersView::Row seen = row(123456, last.value().last_sequence);
  EXPECT_EQ(seen.status, OrdersView::Status::refunded);
  EXPECT_EQ(seen.paid, 10'000);
  EXPECT_EQ(seen.refunded, 10'000);
  EXPECT_EQ(create(123456, 5).code(), annal::ErrorCode::invalid_argument);  // exists
  EXPECT_EQ(pay(7, 5).code(), annal::ErrorCode::not_found);
}

TEST_F(OrdersTest, TheReadModelsComeBackAfterAReopenAndAgreeWithTheHistory) {
  std::uint64_t last = 0;
  for (std::uint64_t id = 1; id <= 30; ++id) {
    ASSERT_TRUE(create(id, static_cast<std::int64_t>(id * 100)).ok());
    last = pay(id, static_cast<std::int64_t>(id * 100)).value().last_sequence;
    if (id % 3 == 0) last = refund(id, static_cast<std::int64_t>(id * 10)).value().last_sequence;
  }
  open();
  const auto totals = annal::engine::query<Revenue>(*engine_, "revenue", last, [](const Revenue& r) { return r.totals(); }, 30s);
  ASSERT_TRUE(totals.ok());
  EXPECT_EQ(totals.value().orders, 30u);
  EXPECT_EQ(totals.value().paid, 46'500);  // 100 * (1 + ... + 30)
  EXPECT_EQ(totals.value().refunded, 1'650);  // 10 * (3 + 6 + ... + 30)
  EXPECT_EQ(row(27, last).refunded, 270);
  const auto history = engine_->read_stream(stream_of(27), {});
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history.value().size(), 3u);
  EXPECT_EQ(history.value()[2].header.type, "RefundCreated");
  EXPECT_EQ(amount_of(history.value()[2].payload), 270);
  OrdersView fresh;
  const auto check = engine_->check_projection("orders", fresh, 30s);
  ASSERT_TRUE(check.ok());
  EXPECT_TRUE(check.value().consistent());
}

}  // namespace
}  // namespace orders
