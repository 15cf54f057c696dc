// SeedTree: a secret seed for every 64-bit id (a stream's), from which any one can later be
// destroyed alone (crypto-shredding), with nothing to store for a new id.
//
// A GGM tree (Goldreich, Goldwasser, Micali): from a random 32-byte root, the node one level down
// is HMAC-SHA256(key = node, message = the one byte bit), and id `s`'s seed is the leaf reached by
// the 64 bits of `s`, the top bit first. A new stream needs no write: its seed follows from the root. To destroy one seed the
// tree is punctured: the node that covers `s` is replaced by the siblings of the path from it
// down to `s` (at most 64 nodes), from which every other leaf is still reached and `s`'s is not:
// a node's children say nothing of it, or of each other (HMAC is a PRF under its key). Erasures
// that share a path share nodes, so the tree grows by less than 64 nodes an erasure.
//
//   auto tree = SeedTree::create().value();
//   auto seed = tree.seed(42);           // the same for as long as 42 is not punctured
//   tree.puncture(42);                   // tree.seed(42) is now not_found; tree.seed(43) unchanged
//   store(tree.encode());                // the key store keeps it, sealed (docs/security.md)
//
// Not thread-safe, seed() included: it keeps the nodes it walked through, so that a new id costs
// 8 steps, not 64, where one of its 256 neighbours was asked before (the engine numbers streams in
// order, and a store's ids share their top bits), and a step for each bit it does not share with
// the last id asked otherwise. Node values are key material: wiped when the tree lets go of them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "annal/base/status.h"
#include "annal/crypto/key.h"

namespace annal::crypto {

class SeedTree {
 public:
  // A tree from a fresh random root (RAND_bytes).
  [[nodiscard]] static Result<SeedTree> create();
  // A tree from a given root: for tests and known-answer checks.
  [[nodiscard]] static SeedTree from_root(const Key& root);

  // The seed of `id`: ErrorCode::not_found, naming the id, once it is punctured.
  [[nodiscard]] Result<Key> seed(std::uint64_t id) const;
  // seed() in two parts, for a tree shared under a lock: ancestor() gives the node of `id`'s path
  // over its block of 256 ids (or a deeper kept node), at most 8 levels above the leaf, walking
  // there and keeping it if it must, under the lock; descend() walks the rest, needing nothing of
  // the tree, outside it.
  // descend(ancestor(id).value(), id) is seed(id). The tree may change in between: `id`'s seed
  // does not, unless `id` itself is punctured, which the caller checks again under its lock.
  struct Ancestor {
    Key node;
    unsigned depth = 0;  // the node's level: 0 the root, 64 the leaf
  };
  [[nodiscard]] Result<Ancestor> ancestor(std::uint64_t id) const;
  [[nodiscard]] static Key descend(const Ancestor& from, std::uint64_t id);
  // Destroys `id`'s seed for good; every other id's stays as it was. Idempotent.
  void puncture(std::uint64_t id);
  [[nodiscard]] bool punctured(std::uint64_t id) const;
  // How many nodes the tree keeps (1 until the first puncture).
  [[nodiscard]] std::size_t nodes() const noexcept { return nodes_.size(); }
  // A second tree with the same nodes (none of the walk's caches), to puncture apart: cheaper
  // than encode() and decode() for a tree of a million nodes, with room for two punctures.
  [[nodiscard]] SeedTree clone() const;

  // The tree as bytes, for the key store, which seals them: version u8, node count u32, then per
  // node depth u8, prefix u64, value 32 B (little-endian). The caller wipes them.
  [[nodiscard]] std::vector<std::byte> encode() const;
  // encode()'s size, without encoding.
  [[nodiscard]] std::size_t encoded_bytes() const noexcept;
  // Reads encode()'s bytes back; ErrorCode::corruption, saying what is wrong, for any that a tree
  // could not have written (a bad version, depth or prefix, nodes that overlap or are out of order).
  [[nodiscard]] static Result<SeedTree> decode(std::span<const std::byte> bytes);

 private:
  // Covers the ids whose top `depth` bits are those of `prefix` (its other bits zero).
  struct Node {
    std::uint8_t depth = 0;
    std::uint64_t prefix = 0;
    Key value;
  };
  explicit SeedTree(std::vector<Node> nodes) : nodes_(std::move(nodes)) {}
  // The node covering `id`, or nodes_.size() if none does.
  [[nodiscard]] std::size_t covering(std::uint64_t id) const noexcept;

  std::vector<Node> nodes_;  // disjoint, sorted by prefix
  // Walked nodes, dropped by puncture() (they may lie on the path it destroys). The last walk's
  // path from its covering node (at depth path_top_, prefix path_cover_) down to kBlockDepth, for
  // path_id_: path_[i] is at depth path_top_ + i.
  mutable std::vector<Key> path_;
  mutable std::uint64_t path_id_ = 0;
  mutable std::uint64_t path_cover_ = 0;
  mutable unsigned path_top_ = 0;
  // Nodes at kBlockDepth (each covers 256 ids) by prefix, at most kBlocksKept of them.
  mutable std::unordered_map<std::uint64_t, Key> blocks_;
};

}  // namespace annal::crypto
