// The key state of one store, kept in one small file beside its journal (KEYS), sealed under the
// master key: the tree its streams' seeds come from (seed_tree.h), how many opens that may write
// it has had (the part of each nonce that keeps a rewritten sequence's nonce new), and the
// sequence from which it seals everything (before it, records in clear are its own). The file is
// rewritten whole, atomically, on each change: a crash leaves the old state or the new one.
//
//   +0  magic "ANNALKEY"
//   +8  format version u32 (1)
//   +12 master key version u32: the one the rest is sealed under
//   +16 nonce (12 B), random for each write
//   +28 AES-256-GCM of the body under HKDF-SHA256(master[version], no salt, "annal key store v1"),
//       bytes [0, 28) as additional data, the tag last
//   body: opens u64, sealed_from u64, the seed tree (SeedTree::encode)
//
// All integers little-endian. docs/security.md has the design this serves. At most
// kStoreKeysBytesMax bytes (below).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "annal/base/status.h"
#include "annal/crypto/key.h"
#include "annal/crypto/seed_tree.h"

namespace annal::crypto {

// The most a key store may hold: some 1.6 million tree nodes of 41 bytes. An erasure adds at most
// 64 nodes, fewer as erasures share paths: 100,000 random erasures among ten million streams take
// 23.6 MB, so this holds a quarter of a million or more (at least 26,000 of ids far apart). Each
// erasure rewrites the file whole, twice (docs/security.md, How many erasures, has the cost).
inline constexpr std::size_t kStoreKeysBytesMax = std::size_t{64} << 20;

struct StoreKeys {
  std::uint64_t opens = 0;        // opens that may write, so far (each takes the next number)
  std::uint64_t sealed_from = 0;  // the first sequence sealed; 0 while the store seals nothing
  SeedTree seeds;
};

// Reads and opens the file at `path` with the master key version it names, from `keys`. nullopt
// if there is no file (a store never encrypted: the only case that may make a new one); the
// provider's not_found naming the version it lacks; corruption, naming the file, if it is not a
// key store or does not open (a wrong master key, or altered bytes).
[[nodiscard]] Result<std::optional<StoreKeys>> load_store_keys(const std::string& path, KeyProvider& keys);
// The same from the file's bytes, read by the caller (through its own I/O: the engine's backend);
// `path` names it in messages.
[[nodiscard]] Result<StoreKeys> open_store_keys(const std::string& path, std::span<const std::byte> bytes,
                                                KeyProvider& keys);

// Writes `state` to `path` sealed under the provider's current master key version: PATH.tmp (mode
// 0600, left over from a crash: replaced), fsync, rename over PATH, fsync of the directory. The
// caller is the store's one writer (it holds the store's LOCK).
[[nodiscard]] Status save_store_keys(const std::string& path, const StoreKeys& state, KeyProvider& keys);
// The bytes save_store_keys writes, for a caller that writes them itself (atomically, 0600).
[[nodiscard]] Result<std::vector<std::byte>> seal_store_keys(const std::string& path, const StoreKeys& state,
                                                             KeyProvider& keys);
// Whether save_store_keys would take `state`: its error if the file would pass the
// kStoreKeysBytesMax a key store may hold, ok otherwise. Writes nothing.
[[nodiscard]] Status store_keys_fit(const std::string& path, const StoreKeys& state);

}  // namespace annal::crypto
