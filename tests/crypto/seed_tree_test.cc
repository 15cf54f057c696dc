// SeedTree: every id has a seed, fixed for as long as it is not punctured; a puncture destroys
// one id's seed and changes no other's; the tree survives being written out and read back, and
// refuses bytes no tree could have written.
#include "annal/crypto/seed_tree.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <random>
#include <set>
#include <vector>

#include "hex.h"

namespace annal::crypto {
namespace {

Key counting_root() {
  std::array<std::byte, kKeyBytes> bytes{};
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::byte>(i);
  return Key(bytes);
}

std::string seed_hex(const SeedTree& tree, std::uint64_t id) {
  const auto seed = tree.seed(id);
  EXPECT_TRUE(seed.ok()) << id << ": " << seed.status().to_string();
  return seed.ok() ? testing::to_hex(seed.value().bytes()) : std::string();
}

TEST(SeedTree, SeedsAreTheLeavesOfHmacStepsFromTheRoot) {
  // Computed apart from this code: node = HMAC-SHA256(key = node, message = bytes([bit])), 64
  // steps, the top bit first (Python's hmac and hashlib, root bytes 0..31).
  const SeedTree tree = SeedTree::from_root(counting_root());
  EXPECT_EQ(seed_hex(tree, 0), "f322a407baf732666ee98e9a976b0eddee120c01950c30a799243499a7721092");
  EXPECT_EQ(seed_hex(tree, 5), "6bccb41c390e34e361e3a6e1d07deced24ececf75d8f6eff6cdf51f8c714c2f4");
  EXPECT_EQ(seed_hex(tree, ~std::uint64_t{0}), "7ff9c36971ee4c50477fdbbedda787f0eede196446629d33528d1c9ad34617d7");
  EXPECT_EQ(tree.nodes(), 1u);
}

TEST(SeedTree, APunctureDestroysOneSeedAndChangesNoOther) {
  SeedTree tree = SeedTree::from_root(counting_root());
  const SeedTree untouched = SeedTree::from_root(counting_root());
  tree.puncture(42);
  EXPECT_TRUE(tree.punctured(42));
  const auto gone = tree.seed(42);
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.status().code(), ErrorCode::not_found);
  EXPECT_NE(gone.status().message().find("id 42"), std::string::npos) << gone.status().message();
  EXPECT_EQ(tree.nodes(), 64u);  // the siblings of the path, one per level
  std::mt19937_64 random(7);
  std::vector<std::uint64_t> others = {0, 41, 43, 40, 44, ~std::uint64_t{0}, std::uint64_t{1} << 63};
  for (int i = 0; i < 200; ++i) others.push_back(random());
  for (const std::uint64_t id : others) {
    if (id == 42) continue;
    EXPECT_FALSE(tree.punctured(id)) << id;
    EXPECT_EQ(seed_hex(tree, id), seed_hex(untouched, id)) << id;
  }
  tree.puncture(42);  // again: nothing changes
  EXPECT_EQ(tree.nodes(), 64u);
  tree.puncture(43);  // its leaf was a node of its own: taken, nothing added
  EXPECT_EQ(tree.nodes(), 63u);
  EXPECT_FALSE(tree.seed(43).ok());
  EXPECT_EQ(seed_hex(tree, 41), seed_hex(untouched, 41));
}

TEST(SeedTree, TheCachedPathGivesTheSameSeedsAndDiesWithAPuncture) {
  const SeedTree fresh = SeedTree::from_root(counting_root());
  SeedTree tree = SeedTree::from_root(counting_root());
  // A run of ids across a 256-id block's edge, as new streams come: each walked from the cache.
  for (std::uint64_t id = 200; id < 320; ++id) {
    EXPECT_EQ(seed_hex(tree, id), seed_hex(SeedTree::from_root(counting_root()), id)) << id;
  }
  (void)seed_hex(tree, 41);  // caches the node over 0..255
  tree.puncture(42);
  EXPECT_FALSE(tree.seed(42).ok());
  for (const std::uint64_t id : {0u, 41u, 43u, 255u, 256u}) EXPECT_EQ(seed_hex(tree, id), seed_hex(fresh, id)) << id;
  EXPECT_FALSE(tree.seed(42).ok());  // and not after the cache was filled again nearby
}

// Ids asked in any order (an engine's streams, 2^63 | k, met at random after an open): the nodes
// kept from earlier walks (the last path, the 256-id blocks' nodes, more blocks than are kept)
// give the seeds a walk from the root gives, before and after a puncture.
TEST(SeedTree, TheKeptNodesGiveTheSameSeedsInAnyOrder) {
  SeedTree tree = SeedTree::from_root(counting_root());
  const SeedTree fresh = SeedTree::from_root(counting_root());
  std::mt19937_64 random(5);
  std::vector<std::uint64_t> ids;
  for (int i = 0; i < 6000; ++i) ids.push_back(std::uint64_t{1} << 63 | random() % (std::uint64_t{1} << 22));
  for (int i = 0; i < 500; ++i) ids.push_back(random());
  std::shuffle(ids.begin(), ids.end(), random);
  const std::uint64_t erased = ids[ids.size() / 2];
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i == ids.size() / 2) tree.puncture(erased);
    if (i >= ids.size() / 2 && ids[i] == erased) {
      EXPECT_FALSE(tree.seed(erased).ok());
      continue;
    }
    // A fresh tree for each: one walk from the root, nothing kept.
    EXPECT_EQ(seed_hex(tree, ids[i]), seed_hex(SeedTree::from_root(counting_root()), ids[i])) << ids[i];
  }
  EXPECT_FALSE(tree.seed(erased).ok());
  EXPECT_EQ(seed_hex(tree, erased ^ 1), seed_hex(fresh, erased ^ 1));
}

// What the engine does to derive outside its lock: the ancestor taken from the tree, the walk
// finished apart, even after the tree was punctured elsewhere in between.
TEST(SeedTree, AnAncestorDescendedApartGivesTheSeedWhileTheIdIsNotPunctured) {
  SeedTree tree = SeedTree::from_root(counting_root());
  std::mt19937_64 random(9);
  for (int i = 0; i < 2000; ++i) {
    const std::uint64_t id = i % 2 == 0 ? std::uint64_t{1} << 63 | random() % 100'000 : random();
    if (tree.punctured(id)) continue;  // a neighbour erased before
    const auto from = tree.ancestor(id);
    ASSERT_TRUE(from.ok()) << id;
    // At most 8 levels above the leaf: what is left to walk outside the caller's lock.
    EXPECT_GE(from.value().depth, 56u);
    EXPECT_LE(from.value().depth, 64u);
    if (i % 7 == 0) tree.puncture(id ^ 1);  // a neighbour erased between the two halves
    EXPECT_EQ(testing::to_hex(SeedTree::descend(from.value(), id).bytes()),
              seed_hex(SeedTree::from_root(counting_root()), id))
        << id;
  }
  tree.puncture(42);
  EXPECT_EQ(tree.ancestor(42).status().code(), ErrorCode::not_found);
}

TEST(SeedTree, ManyPuncturesEachDestroyOnlyTheirOwn) {
  SeedTree tree = SeedTree::create().value();
  const SeedTree before = tree.clone();  // punctured apart from it
  std::mt19937_64 random(11);
  std::set<std::uint64_t> erased;
  for (int i = 0; i < 100; ++i) erased.insert(random());
  for (std::uint64_t id = 1000; id < 1100; ++id) erased.insert(id);  // neighbours share paths
  for (const std::uint64_t id : erased) tree.puncture(id);
  EXPECT_LE(tree.nodes(), 64u * erased.size());
  for (const std::uint64_t id : erased) {
    EXPECT_FALSE(tree.seed(id).ok()) << id;
    EXPECT_TRUE(before.seed(id).ok()) << id;
  }
  EXPECT_EQ(tree.encoded_bytes(), tree.encode().size());
  EXPECT_TRUE(SeedTree::decode(tree.encode()).ok()) << "the nodes are no longer disjoint and in order";
  for (int i = 0; i < 1000; ++i) {
    const std::uint64_t id = i < 200 ? 900 + static_cast<std::uint64_t>(i) : random();
    if (erased.contains(id)) continue;
    EXPECT_EQ(seed_hex(tree, id), seed_hex(before, id)) << id;
  }
}

TEST(SeedTree, WrittenOutAndReadBackItIsTheSameTree) {
  SeedTree tree = SeedTree::create().value();
  for (const std::uint64_t id : {3u, 4u, 1000u, 77777u}) tree.puncture(id);
  const auto read = SeedTree::decode(tree.encode());
  ASSERT_TRUE(read.ok()) << read.status().to_string();
  EXPECT_EQ(read.value().nodes(), tree.nodes());
  for (const std::uint64_t id : {0u, 3u, 4u, 5u, 999u, 1000u, 1001u, 77777u, 123456789u}) {
    EXPECT_EQ(read.value().punctured(id), tree.punctured(id)) << id;
    if (!tree.punctured(id)) {
      EXPECT_EQ(seed_hex(read.value(), id), seed_hex(tree, id)) << id;
    }
  }
}

TEST(SeedTree, BytesNoTreeCouldHaveWrittenAreRefused) {
  SeedTree tree = SeedTree::from_root(counting_root());
  tree.puncture(42);
  const std::vector<std::byte> good = tree.encode();
  const auto refused = [](std::vector<std::byte> bytes, const std::string& what) {
    const auto read = SeedTree::decode(bytes);
    ASSERT_FALSE(read.ok()) << what;
    EXPECT_EQ(read.status().code(), ErrorCode::corruption) << what;
  };
  refused({}, "empty");
  refused(std::vector<std::byte>(good.begin(), good.end() - 1), "one byte short");
  std::vector<std::byte> version = good;
  version[0] = std::byte{9};
  refused(version, "another version");
  std::vector<std::byte> deep = good;
  deep[5] = std::byte{65};  // the first node's depth
  refused(deep, "deeper than 64");
  std::vector<std::byte> low_bits = good;
  low_bits[5 + 1] = std::byte{1};  // the first node's prefix, a bit below its depth
  refused(low_bits, "a prefix with bits below its depth");
  std::vector<std::byte> swapped = good;
  std::swap_ranges(swapped.begin() + 5, swapped.begin() + 5 + 41, swapped.begin() + 5 + 41);
  refused(swapped, "nodes out of order");
}

}  // namespace
}  // namespace annal::crypto
