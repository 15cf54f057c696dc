#include "annal/crypto/seed_tree.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <array>
#include <iterator>
#include <string>

#include "annal/base/assert.h"
#include "annal/base/little_endian.h"

namespace annal::crypto {
namespace {

constexpr std::uint8_t kEncodingVersion = 1;
constexpr unsigned kDepth = 64;  // ids are 64 bits
constexpr std::size_t kCountBytes = 4;
constexpr std::size_t kNodeBytes = 1 + 8 + kKeyBytes;

// One step down: HMAC-SHA256 keyed with the node, of the one byte `bit`. HMAC, not a bare hash of
// node || bit: that HMAC is a PRF under its key is the standard assumption, which is what GGM needs.
Key child(const Key& node, std::uint64_t bit) {
  const unsigned char side = static_cast<unsigned char>(bit);
  std::array<std::byte, kKeyBytes> digest{};
  unsigned int length = 0;
  const unsigned char* made = HMAC(EVP_sha256(), node.bytes().data(), static_cast<int>(kKeyBytes), &side, 1,
                                   reinterpret_cast<unsigned char*>(digest.data()), &length);
  ANNAL_ASSERT(made != nullptr && length == kKeyBytes);  // only fails without memory or SHA-256
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
  const std::size_t at = covering(id);
  if (at == nodes_.size()) {
    return Status(ErrorCode::not_found, "the seed of id " + std::to_string(id) + " was destroyed (the stream was erased)");
  }
  Key node = nodes_[at].value.clone();
  for (unsigned depth = nodes_[at].depth; depth < kDepth; ++depth) node = child(node, bit_at(id, depth));
  return node;
}

void SeedTree::puncture(std::uint64_t id) {
  const std::size_t at = covering(id);
  if (at == nodes_.size()) return;
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
  // The siblings tile the covered node's range less `id`: in order, they take its place.
  std::sort(siblings.begin(), siblings.end(), [](const Node& a, const Node& b) { return a.prefix < b.prefix; });
  nodes_.reserve(nodes_.size() + siblings.size());
  nodes_.erase(nodes_.begin() + static_cast<std::ptrdiff_t>(at));
  nodes_.insert(nodes_.begin() + static_cast<std::ptrdiff_t>(at), std::make_move_iterator(siblings.begin()),
                std::make_move_iterator(siblings.end()));
  ANNAL_ASSERT(punctured(id));
}

std::vector<std::byte> SeedTree::encode() const {
  std::vector<std::byte> out(1 + kCountBytes + nodes_.size() * kNodeBytes);
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
