#include "annal/crypto/seed_tree.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <array>
#include <bit>
#include <iterator>
#include <string>

#include "annal/base/assert.h"
#include "annal/base/little_endian.h"
#include "hmac.h"

namespace annal::crypto {
namespace {

constexpr std::uint8_t kEncodingVersion = 1;
constexpr unsigned kDepth = 64;  // ids are 64 bits
constexpr unsigned kBlockDepth = 56;  // a kept block's node covers 256 consecutive ids
// 128 KiB of nodes: a million streams' blocks would be 4,000 (the engine keeps derived keys too).
constexpr std::size_t kBlocksKept = 4096;
constexpr std::size_t kCountBytes = 4;
constexpr std::size_t kNodeBytes = 1 + 8 + kKeyBytes;

// One step down: HMAC-SHA256 keyed with the node, of the one byte `bit`. HMAC, not a bare hash of
// node || bit: that HMAC is a PRF under its key is the standard assumption, which is what GGM needs.
Key child(const Key& node, std::uint64_t bit) {
  const std::byte side{static_cast<unsigned char>(bit)};
  std::array<std::byte, kKeyBytes> digest{};
  hmac_sha256(node.bytes(), {std::span(&side, 1)}, digest);
  Key out(digest);
  OPENSSL_cleanse(digest.data(), digest.size());
  return out;
}

// The bit of `id` that chooses the side at `depth` (0: the top bit).
std::uint64_t bit_at(std::uint64_t id, unsigned depth) noexcept { return (id >> (kDepth - 1 - depth)) & 1; }

// The top `depth` bits of `id`, the rest zero.
std::uint64_t prefix_of(std::uint64_t id, unsigned depth) noexcept {
  return depth == 0 ? 0 : id & (~std::uint64_t{0} << (kDepth - depth));
}

// The last id a node at (depth, prefix) covers.
std::uint64_t last_covered(unsigned depth, std::uint64_t prefix) noexcept {
  return depth == 0 ? ~std::uint64_t{0} : prefix | ~(~std::uint64_t{0} << (kDepth - depth));
}

}  // namespace

Result<SeedTree> SeedTree::create() {
  auto root = Key::random();
  if (!root.ok()) return root.status();
  return from_root(root.value());
}

SeedTree SeedTree::from_root(const Key& root) {
  std::vector<Node> nodes;
  nodes.push_back(Node{0, 0, root.clone()});
  return SeedTree(std::move(nodes));
}

std::size_t SeedTree::covering(std::uint64_t id) const noexcept {
  // The last node starting at or before `id`; nodes are disjoint, so only it can cover `id`.
  const auto after = std::upper_bound(nodes_.begin(), nodes_.end(), id,
                                      [](std::uint64_t value, const Node& node) { return value < node.prefix; });
  if (after == nodes_.begin()) return nodes_.size();
  const auto at = static_cast<std::size_t>(after - nodes_.begin()) - 1;
  return id <= last_covered(nodes_[at].depth, nodes_[at].prefix) ? at : nodes_.size();
}

bool SeedTree::punctured(std::uint64_t id) const { return covering(id) == nodes_.size(); }

Result<Key> SeedTree::seed(std::uint64_t id) const {
  auto from = ancestor(id);
  if (!from.ok()) return from.status();
  return descend(from.value(), id);
}

Result<SeedTree::Ancestor> SeedTree::ancestor(std::uint64_t id) const {
  const std::size_t at = covering(id);
  if (at == nodes_.size()) {
    return Status(ErrorCode::not_found, "the seed of id " + std::to_string(id) + " was destroyed (the stream was erased)");
  }
  // The kept nodes are only used once the tree says `id` is covered: a punctured id never reaches
  // them.
  const Node& cover = nodes_[at];
  unsigned depth = cover.depth;
  std::optional<Key> node;
  if (depth >= kBlockDepth) {
    node = cover.value.clone();
  } else if (const auto kept = blocks_.find(prefix_of(id, kBlockDepth)); kept != blocks_.end()) {
    node = kept->second.clone();
    depth = kBlockDepth;
  } else {
    // Down to the block's node from the deepest node the last walk shares with this one.
    if (!path_.empty() && path_top_ == cover.depth && path_cover_ == cover.prefix) {
      const unsigned shared = std::min<unsigned>(static_cast<unsigned>(std::countl_zero(id ^ path_id_)), kBlockDepth);
      depth = std::max<unsigned>(shared, cover.depth);
      path_.erase(path_.begin() + static_cast<std::ptrdiff_t>(depth - cover.depth + 1), path_.end());
    } else {
      path_.clear();
      // Room for the whole path first: a bad_alloc halfway down must not leave a short path that
      // looks whole (the walk below allocates nothing else, and a Key is a plain array).
      path_.reserve(kBlockDepth + 1);
      path_.push_back(cover.value.clone());
      path_top_ = cover.depth;
      path_cover_ = cover.prefix;
    }
    path_id_ = id;
    for (; depth < kBlockDepth; ++depth) path_.push_back(child(path_.back(), bit_at(id, depth)));
    node = path_.back().clone();
    if (blocks_.size() >= kBlocksKept) blocks_.clear();  // rare, and cheaper than an LRU's upkeep
    blocks_.emplace(prefix_of(id, kBlockDepth), node->clone());
    hmac_sha256_forget();  // the caches above are wiped when they go; the HMAC context must not keep a node
  }
  return Ancestor{std::move(*node), depth};
}

Key SeedTree::descend(const Ancestor& from, std::uint64_t id) {
  ANNAL_ASSERT(from.depth <= kDepth);
  Key node = from.node.clone();
  for (unsigned depth = from.depth; depth < kDepth; ++depth) node = child(node, bit_at(id, depth));
  hmac_sha256_forget();  // it was keyed with the leaf's parent, which gives the seed
  return node;
}

void SeedTree::puncture(std::uint64_t id) {
  const std::size_t at = covering(id);
  if (at == nodes_.size()) return;
  path_.clear();  // they may lie on the path being destroyed
  blocks_.clear();
  // Down the path to `id`, keeping the side it does not take at each level. All of it is made
  // before the tree changes: running out of memory halfway must not lose other seeds.
  std::vector<Node> siblings;
  siblings.reserve(kDepth);
  Key node = nodes_[at].value.clone();
  for (unsigned depth = nodes_[at].depth; depth < kDepth; ++depth) {
    const std::uint64_t bit = bit_at(id, depth);
    const std::uint64_t sibling_prefix = prefix_of(id, depth) | ((1 - bit) << (kDepth - 1 - depth));
    siblings.push_back(Node{static_cast<std::uint8_t>(depth + 1), sibling_prefix, child(node, 1 - bit)});
    node = child(node, bit);
  }
  hmac_sha256_forget();  // it was keyed with the destroyed leaf's parent
  // The siblings tile the covered node's range less `id`: in order, they take its place.
  std::sort(siblings.begin(), siblings.end(), [](const Node& a, const Node& b) { return a.prefix < b.prefix; });
  if (siblings.empty()) {  // the node was `id`'s leaf itself
    nodes_.erase(nodes_.begin() + static_cast<std::ptrdiff_t>(at));
    return;
  }
  // Room first, grown geometrically (an exact reserve would copy the whole tree at every puncture);
  // then one shift of the nodes after `at`, not two (an erase and an insert): a large tree's
  // puncture costs a pass over it, which is what bounds a key store's erasures in time.
  const std::size_t needed = nodes_.size() + siblings.size() - 1;
  if (needed > nodes_.capacity()) nodes_.reserve(std::max(needed, 2 * nodes_.capacity()));
  nodes_[at] = std::move(siblings.front());
  nodes_.insert(nodes_.begin() + static_cast<std::ptrdiff_t>(at) + 1, std::make_move_iterator(siblings.begin() + 1),
                std::make_move_iterator(siblings.end()));
  ANNAL_ASSERT(punctured(id));
}

SeedTree SeedTree::clone() const {
  std::vector<Node> nodes;
  nodes.reserve(nodes_.size() + 2 * kDepth);  // room for an erasure's two punctures: no reallocation
  for (const Node& node : nodes_) nodes.push_back(Node{node.depth, node.prefix, node.value.clone()});
  return SeedTree(std::move(nodes));
}

std::size_t SeedTree::encoded_bytes() const noexcept { return 1 + kCountBytes + nodes_.size() * kNodeBytes; }

std::vector<std::byte> SeedTree::encode() const {
  std::vector<std::byte> out(encoded_bytes());
  out[0] = static_cast<std::byte>(kEncodingVersion);
  store_le<std::uint32_t>(out, 1, static_cast<std::uint32_t>(nodes_.size()));
  std::size_t at = 1 + kCountBytes;
  for (const Node& node : nodes_) {
    out[at] = static_cast<std::byte>(node.depth);
    store_le<std::uint64_t>(out, at + 1, node.prefix);
    std::copy(node.value.bytes().begin(), node.value.bytes().end(), out.begin() + static_cast<std::ptrdiff_t>(at + 9));
    at += kNodeBytes;
  }
  return out;
}

Result<SeedTree> SeedTree::decode(std::span<const std::byte> bytes) {
  const auto bad = [](const std::string& what) { return Status(ErrorCode::corruption, "seed tree: " + what); };
  if (bytes.size() < 1 + kCountBytes) return bad("shorter than its header");
  if (static_cast<std::uint8_t>(bytes[0]) != kEncodingVersion) {
    return bad("encoding version " + std::to_string(static_cast<unsigned>(bytes[0])) + ", this build reads version " +
               std::to_string(kEncodingVersion));
  }
  const std::size_t count = load_le<std::uint32_t>(bytes, 1);
  if (bytes.size() != 1 + kCountBytes + count * kNodeBytes) {
    return bad(std::to_string(bytes.size()) + " bytes for " + std::to_string(count) + " nodes");
  }
  std::vector<Node> nodes;
  nodes.reserve(count);
  for (std::size_t i = 0, at = 1 + kCountBytes; i < count; ++i, at += kNodeBytes) {
    const auto depth = static_cast<unsigned>(bytes[at]);
    const auto prefix = load_le<std::uint64_t>(bytes, at + 1);
    if (depth > kDepth) return bad("node " + std::to_string(i) + " at depth " + std::to_string(depth));
    if (prefix != prefix_of(prefix, depth)) return bad("node " + std::to_string(i) + " has bits below its depth");
    if (!nodes.empty() && prefix <= last_covered(nodes.back().depth, nodes.back().prefix)) {
      return bad("node " + std::to_string(i) + " overlaps or precedes the one before it");
    }
    nodes.push_back(Node{static_cast<std::uint8_t>(depth), prefix, Key(bytes.subspan(at + 9).first<kKeyBytes>())});
  }
  return SeedTree(std::move(nodes));
}

}  // namespace annal::crypto
