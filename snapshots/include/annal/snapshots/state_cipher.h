// Encryption at rest for snapshot files: given a StateCipher, a SnapshotStore seals each state it
// writes (format version 2, snapshot_format.h) and opens each sealed state it reads. It knows no
// keys: the engine supplies the cipher (docs/security.md), as it does the journal's RecordCipher.
//
// What a cipher must do: seal so that open() authenticates the state together with `associated`
// (snapshot_associated_data: the projection's name, its schema and the sequence), so that a state
// moved into another projection's or another sequence's file fails to open. The sealed form is
// larger than the state by exactly overhead() bytes. The headers stay in clear (tools list
// snapshots without a key); the checksums cover the sealed bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "annal/base/status.h"

namespace annal::snapshots {

class StateCipher {
 public:
  virtual ~StateCipher() = default;
  // Bytes a sealed state has beyond the plain one. Constant for the cipher's life.
  [[nodiscard]] virtual std::size_t overhead() const noexcept = 0;
  // The largest state it seals in one piece (AES-GCM through EVP takes an int length): a larger
  // one is refused at write, and a header claiming one is damage.
  [[nodiscard]] virtual std::uint64_t state_bytes_max() const noexcept = 0;
  // Any thread, concurrently: snapshots are written by the engine's snapshot writer and read at
  // open and by tools. `out` is state.size() + overhead() bytes.
  [[nodiscard]] virtual Status seal(std::span<const std::byte> associated, std::span<const std::byte> state,
                                    std::span<std::byte> out) = 0;
  // `out` is sealed.size() - overhead() bytes. ErrorCode::corruption when it does not
  // authenticate (a wrong key, altered bytes, a moved state); `out` then holds nothing usable.
  [[nodiscard]] virtual Status open(std::span<const std::byte> associated, std::span<const std::byte> sealed,
                                    std::span<std::byte> out) = 0;
  // Whether a snapshot in clear at `sequence` may be used: one written before the store sealed
  // anything is; one after is not (someone wrote it in the key's place). ErrorCode::corruption if
  // not.
  [[nodiscard]] virtual Status check_plain(std::uint64_t sequence) = 0;
};

}  // namespace annal::snapshots
