// A snapshot file: one projection's state as of a journal sequence. docs/format.md has an example.
//
//  file name: snapshot-<projection>-<sequence, 20 digits>.snap, in the engine's directory, so names
//  sort by sequence and the journal's segment scan passes them by. Written as <name>.tmp, synced,
//  renamed, and the directory synced: a crash leaves the old set of snapshots or the new one, and
//  at worst a .tmp file, which is never read and is removed at the next write.
//
//  +0   magic         "ANNALSNP"
//  +8   version       u32  1: the state is in clear; 2: it is sealed by the store's StateCipher
//                          (state_cipher.h), and state_bytes and state_crc describe the sealed bytes
//  +12  schema        u32  the projection's own schema version: a state written by another schema
//                          is not restored, the projection is rebuilt from the journal instead
//  +16  sequence      u64  the state includes every event up to this journal sequence, no other
//  +24  created_ns    u64  wall clock, for tools
//  +32  state_bytes   u64  length of the state that follows the header
//  +40  state_crc     u32  CRC32C of the state bytes
//  +44  name_bytes    u32  length of the projection's name (1 to kProjectionNameBytesMax)
//  +48  name          the projection's name, which must match the file name's
//  +48+n header_crc   u32  CRC32C of bytes [0, 48 + n): fields and name
//  +52+n state        state_bytes bytes, the projection's own encoding
//
// All integers little-endian. Two checksums so that a torn or damaged header is told apart from a
// damaged state before anything trusts state_bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "annal/base/status.h"

namespace annal::snapshots {

inline constexpr char kSnapshotMagic[8] = {'A', 'N', 'N', 'A', 'L', 'S', 'N', 'P'};
inline constexpr std::uint32_t kSnapshotFormatVersion = 1;
inline constexpr std::uint32_t kSealedSnapshotFormatVersion = 2;
inline constexpr std::size_t kSnapshotFieldsBytes = 48;
inline constexpr std::size_t kProjectionNameBytesMax = 64;
// A state is held in memory whole to be written and read; this bounds what a corrupt length can
// make the reader allocate.
inline constexpr std::uint64_t kSnapshotStateBytesMax = std::uint64_t{16} << 30;

struct SnapshotHeader {
  std::string name;
  std::uint32_t schema = 0;
  std::uint64_t sequence = 0;
  std::uint64_t created_ns = 0;
  std::uint64_t state_bytes = 0;
  std::uint32_t state_crc = 0;
  bool sealed = false;  // format version 2
};

// Projection names: 1 to kProjectionNameBytesMax of [A-Za-z0-9_.] (they go into file names).
[[nodiscard]] bool valid_projection_name(std::string_view name) noexcept;

// "snapshot-orders-00000000000000001234.snap", and back (nullopt: not a snapshot file, or not one
// of `name`'s). The parsed name points into `file`.
[[nodiscard]] std::string snapshot_file_name(std::string_view name, std::uint64_t sequence);
struct SnapshotFileName {
  std::string_view name;
  std::uint64_t sequence = 0;
};
[[nodiscard]] std::optional<SnapshotFileName> parse_snapshot_file_name(std::string_view file);
[[nodiscard]] std::optional<std::uint64_t> parse_snapshot_file_name(std::string_view file, std::string_view name);

[[nodiscard]] std::size_t snapshot_header_bytes(std::string_view name) noexcept;
// The header, both checksums filled in (the state's from `state`, sealed or not as header.sealed
// says); the state goes right after it.
[[nodiscard]] std::vector<std::byte> encode_snapshot_header(const SnapshotHeader& header,
                                                            std::span<const std::byte> state);
// Checks magic, version, sizes and the header checksum of the file that starts with `in` (at least
// snapshot_header_bytes of its name, or it is reported short). Errors are corruption naming
// `where`. On success `header_bytes` is where the state starts.
[[nodiscard]] Result<SnapshotHeader> decode_snapshot_header(std::span<const std::byte> in, std::string_view where,
                                                            std::size_t& header_bytes);

// What a sealed state's seal authenticates beside it: "ANNALSNP", the format version, the schema
// and sequence (u32, u64, little-endian), then the projection's name.
[[nodiscard]] std::vector<std::byte> snapshot_associated_data(std::string_view name, std::uint32_t schema,
                                                              std::uint64_t sequence);

}  // namespace annal::snapshots
