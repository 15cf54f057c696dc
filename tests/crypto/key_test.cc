// Key: wiped when moved from, compared in constant time, copied only on request.
#include "annal/crypto/key.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <type_traits>

namespace annal::crypto {
namespace {

static_assert(!std::is_copy_constructible_v<Key> && !std::is_copy_assignable_v<Key>);
static_assert(std::is_nothrow_move_constructible_v<Key>);

Key filled(std::byte value) {
  std::array<std::byte, kKeyBytes> bytes;
  bytes.fill(value);
  return Key(bytes);
}

bool all_zero(const Key& key) {
  return std::all_of(key.bytes().begin(), key.bytes().end(), [](std::byte b) { return b == std::byte{0}; });
}

TEST(Key, MovingWipesTheSource) {
  Key source = filled(std::byte{0x5A});
  Key moved = std::move(source);
  EXPECT_TRUE(all_zero(source));  // NOLINT(bugprone-use-after-move): the wipe is what is tested
  EXPECT_TRUE(moved == filled(std::byte{0x5A}));

  Key target = filled(std::byte{1});
  target = std::move(moved);
  EXPECT_TRUE(all_zero(moved));  // NOLINT(bugprone-use-after-move)
  EXPECT_TRUE(target == filled(std::byte{0x5A}));
}

TEST(Key, EqualityComparesEveryByte) {
  std::array<std::byte, kKeyBytes> bytes{};
  const Key zero(bytes);
  for (std::size_t i = 0; i < kKeyBytes; ++i) {
    bytes.fill(std::byte{0});
    bytes[i] = std::byte{0x80};
    EXPECT_FALSE(Key(bytes) == zero) << "byte " << i;
  }
  EXPECT_TRUE(zero.clone() == zero);
}

TEST(Key, RandomKeysDiffer) {
  Result<Key> a = Key::random();
  Result<Key> b = Key::random();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_FALSE(a.value() == b.value());
  EXPECT_FALSE(all_zero(a.value()));
}

}  // namespace
}  // namespace annal::crypto
