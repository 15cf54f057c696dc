// The catalog's names both ways, and the NameIndex under it: probing past equal tags, growing,
// and readers looking names up while the writer adds them.
#include "catalog.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>

#include "name_index.h"
#include "watchdog.h"

namespace annal::engine {
namespace {

std::string name_of(std::size_t n) { return "order-" + std::to_string(n); }

TEST(Catalog, FindsEveryNameItWasGivenAndRefusesContradictions) {
  Catalog catalog;
  constexpr std::size_t kNames = 100'000;  // grows the index from empty through 14 doublings
  for (std::size_t n = 0; n < kNames; ++n) {
    ASSERT_TRUE(catalog.add_stream(catalog.next_stream_id(), name_of(n)).ok()) << n;
  }
  for (std::size_t n = 0; n < kNames; ++n) {
    ASSERT_EQ(catalog.find_stream(name_of(n)), kNamedStreamBit | n) << n;
    ASSERT_EQ(catalog.stream_name(kNamedStreamBit | n), name_of(n));
  }
  EXPECT_FALSE(catalog.find_stream("order-").has_value());
  EXPECT_FALSE(catalog.find_stream(name_of(kNames)).has_value());
  EXPECT_FALSE(catalog.find_stream("").has_value());
  // A journal that names a stream twice, or out of order, was not written by this engine.
  EXPECT_EQ(catalog.add_stream(catalog.next_stream_id(), name_of(7)).code(), ErrorCode::corruption);
  EXPECT_EQ(catalog.add_stream(catalog.next_stream_id() + 1, "fresh").code(), ErrorCode::corruption);
  EXPECT_EQ(catalog.stream_names(), kNames);

  ASSERT_TRUE(catalog.add_type(catalog.next_type_id(), "OrderCreated").ok());
  ASSERT_TRUE(catalog.add_type(catalog.next_type_id(), "OrderPaid").ok());
  EXPECT_EQ(catalog.find_type("OrderPaid"), kFirstUserType + 1);
  EXPECT_EQ(catalog.type_name(kFirstUserType), "OrderCreated");
  EXPECT_FALSE(catalog.find_type("order-1").has_value());  // streams and types are apart
  EXPECT_EQ(catalog.add_type(catalog.next_type_id(), "OrderPaid").code(), ErrorCode::corruption);
}

// Every name under one tag: each lookup walks the others and tells them apart by the name alone,
// across the doublings that move them all.
TEST(NameIndex, TellsNamesWithEqualTagsApartAcrossGrowth) {
  NameTable names;
  NameIndex index;
  constexpr std::uint32_t kTag = 0xDEADBEEF;
  for (std::size_t n = 0; n < 300; ++n) {
    ASSERT_FALSE(index.find(name_of(n), kTag, names).has_value());
    index.insert(kTag, names.push(name_of(n)));
    for (std::size_t m = 0; m <= n; m += 37) ASSERT_EQ(index.find(name_of(m), kTag, names), m);
  }
  for (std::size_t n = 0; n < 300; ++n) EXPECT_EQ(index.find(name_of(n), kTag, names), n);
  EXPECT_FALSE(index.find(name_of(300), kTag, names).has_value());
  EXPECT_FALSE(index.find(name_of(1), kTag + 1, names).has_value());  // its tag decides where to look
  // Reserving after the fact keeps everything findable.
  index.reserve(5000);
  for (std::size_t n = 0; n < 300; ++n) EXPECT_EQ(index.find(name_of(n), kTag, names), n);
}

// Readers find names by id and ids by name while the writer adds more (TSan: the locking).
TEST(Catalog, ReadersFindWhatTheWriterHasAddedWhileItAddsMore) {
  annal::test::Watchdog watchdog("catalog readers");
  Catalog catalog;
  constexpr std::size_t kNames = 20'000;
  std::atomic<std::size_t> added{0};
  std::thread writer([&] {
    for (std::size_t n = 0; n < kNames; ++n) {
      ASSERT_TRUE(catalog.add_stream(catalog.next_stream_id(), name_of(n)).ok());
      added.store(n + 1, std::memory_order_release);
    }
  });
  std::size_t checked = 0;
  for (std::size_t round = 0; added.load(std::memory_order_acquire) < kNames || round == 0; ++round) {
    const std::size_t known = added.load(std::memory_order_acquire);
    for (std::size_t n = known > 64 ? known - 64 : 0; n < known; ++n, ++checked) {
      ASSERT_EQ(catalog.find_stream(name_of(n)), kNamedStreamBit | n);
      ASSERT_EQ(catalog.stream_name(kNamedStreamBit | n), name_of(n));
    }
  }
  writer.join();
  EXPECT_GT(checked, 0u);
}

}  // namespace
}  // namespace annal::engine
