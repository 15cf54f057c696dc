// A seed tree as large as many erasures leave one, made in one pass: puncturing its way there would
// take a pass over the tree per erasure. Its nodes are `leaves` single ids at 2^62 + 2i (so the
// odd ids among them read as erased), one node over every id below 2^62 and one over every id from
// 2^63 (named streams, the engine's own leaves); the rest of [2^62, 2^63) is punctured. Values are
// random, so it is a fresh store's tree, to be saved before the store's first open.
#pragma once

#include <openssl/rand.h>

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "annal/base/assert.h"
#include "annal/base/little_endian.h"
#include "annal/crypto/seed_tree.h"

namespace annal::test {

inline crypto::SeedTree large_seed_tree(std::size_t leaves) {
  // SeedTree::encode's layout: version u8, count u32, then depth u8, prefix u64, value 32 B a node.
  constexpr std::size_t kNodeBytes = 1 + 8 + 32;
  const std::size_t count = leaves + 2;
  std::vector<std::byte> bytes(1 + 4 + count * kNodeBytes);
  ANNAL_ASSERT(RAND_bytes(reinterpret_cast<unsigned char*>(bytes.data()), static_cast<int>(bytes.size())) == 1);
  bytes[0] = std::byte{1};
  store_le<std::uint32_t>(bytes, 1, static_cast<std::uint32_t>(count));
  std::size_t at = 5;
  const auto node = [&](unsigned depth, std::uint64_t prefix) {
    bytes[at] = static_cast<std::byte>(depth);
    store_le<std::uint64_t>(bytes, at + 1, prefix);  // the value after it: random already
    at += kNodeBytes;
  };
  node(2, 0);
  for (std::size_t i = 0; i < leaves; ++i) node(64, (std::uint64_t{1} << 62) + 2 * i);
  node(1, std::uint64_t{1} << 63);
  auto tree = crypto::SeedTree::decode(bytes);
  ANNAL_ASSERT(tree.ok());
  return std::move(tree).value();
}

}  // namespace annal::test
