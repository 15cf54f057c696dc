// The journal's hash chain: evidence that nobody edited the log, even someone who can rewrite its
// files and recompute every CRC32C (docs/security.md, Tamper evidence).
//
// Each segment, once sealed, gets an entry in the directory's CHAIN file. Its link is a SHA-256
// over the link before it, so that changing, removing, inserting or reordering a record or a whole
// segment changes every link from there on:
//
//   link(n) = SHA-256("annal chain v1" | link(n-1) | header | record | record | ... | last)
//
//   link(n-1)  the previous entry's link; 32 zero bytes for the first entry
//   header     the segment header's 64 bytes of fields (base, salt, created_ns, ...)
//   record     each record up to and including `last`, as stored (checksum, header, payload; a
//              sealed payload as sealed), unpadded; padding records are left out, so that
//              direct I/O or a padded tail makes no difference to a link
//   last       the last record's sequence, u64 little-endian
//
//   CHAIN entry (104 bytes, appended and fdatasynced by the journal's chain thread)
//   +0   magic        "ANNALCHN"
//   +8   base         u64  the segment's first sequence
//   +16  last         u64  its last record's sequence
//   +24  link         32 bytes
//   +56  key_version  u32  the version of the chain key that made `tag`; 0: no tag
//   +60  zero         u32
//   +64  tag          32 bytes: HMAC-SHA256(chain key, bytes +0..+64), or zeros
//   +96  checksum     u32  CRC32C of +0..+96
//   +100 zero         u32
//
// The chain's head is the same hash carried on to a record S in the segment that is still being
// written (or any other): ChainHead{S, link}. At a sealed segment's last record it equals that
// segment's link. A head kept somewhere the attacker cannot write (printed by `annal inspect
// --chain`, or tagged with the chain key), and given back to `annal verify --chain --expect`,
// shows that the log up to S is the one it was; the entries alone show only that nobody edited a
// sealed segment without also rewriting the chain after it, which anyone without the chain key
// could do.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "annal/base/status.h"
#include "annal/crypto/digest.h"
#include "annal/crypto/key.h"

namespace annal::journal {

class IoBackend;

inline constexpr std::string_view kChainFileName = "CHAIN";
inline constexpr std::size_t kChainEntryBytes = 104;

struct ChainEntry {
  std::uint64_t base = 0;
  std::uint64_t last = 0;
  crypto::Digest link{};
  std::uint32_t key_version = 0;  // 0: untagged
  crypto::Digest tag{};
};

// The key that tags entries and heads, by version (the engine derives it from the master key).
struct ChainKey {
  std::uint32_t version = 0;  // from 1
  crypto::Key key;
};

void encode_chain_entry(const ChainEntry& entry, std::span<std::byte, kChainEntryBytes> out) noexcept;
// nullopt unless magic, checksum and the zero words are right.
[[nodiscard]] std::optional<ChainEntry> decode_chain_entry(std::span<const std::byte> in) noexcept;
// The entry's tag under `key` (HMAC-SHA256 of its first 64 bytes as encoded).
[[nodiscard]] crypto::Digest chain_entry_tag(const ChainEntry& entry, const crypto::Key& key) noexcept;

struct ChainHead {
  std::uint64_t sequence = 0;
  crypto::Digest link{};
};
// "SEQUENCE:HEX", what `annal inspect --chain` prints and `--expect` takes; and back.
[[nodiscard]] std::string to_string(const ChainHead& head);
[[nodiscard]] std::optional<ChainHead> parse_chain_head(std::string_view text) noexcept;
// HMAC-SHA256(key, "annal chain head v1" | sequence u64 | link): a head only the key's holder
// could have made.
[[nodiscard]] crypto::Digest chain_head_tag(const ChainHead& head, const crypto::Key& key) noexcept;

// The link of the segment file at `path` carried to its record `through`, after `previous`. Fails
// (corruption) if a record up to there does not decode or is out of sequence, or the segment ends
// before `through`, naming the file and offset. `direct`: read with O_DIRECT (a journal written
// with Options::direct_io: the segment goes from the disk to the hash without a copy into the
// page cache, where it would only push out what readers use).
[[nodiscard]] Result<ChainHead> segment_link(IoBackend& io, const std::string& path, const crypto::Digest& previous,
                                             std::uint64_t through, bool direct = false);

// The master-key side of a check: the chain key of a version, or nullopt if it is not to be had.
using ChainKeys = std::function<std::optional<crypto::Key>(std::uint32_t version)>;

struct ChainCheck {
  ChainKeys keys{};                       // empty: tags are not checked (said in the notes)
  std::optional<ChainHead> expected{};    // a head taken earlier: the log must still reach it
};

struct ChainReport {
  std::size_t entries = 0;     // in CHAIN
  std::size_t checked = 0;     // entries whose segment was read and its link recomputed
  std::size_t tags_checked = 0;
  std::optional<ChainHead> head;  // at the log's last record (none for an empty log)
  std::vector<std::string> problems;  // the first break first; empty: sound
  std::vector<std::string> notes;     // what could not be checked, and why
  [[nodiscard]] bool sound() const noexcept { return problems.empty(); }
};

// Recomputes every link of the journal in `directory` (read-only; beside a running writer too)
// and compares it with CHAIN, the tags with `check.keys`, and the head at `check.expected`.
// Fails only if the directory cannot be read.
[[nodiscard]] Result<ChainReport> verify_chain(const std::string& directory, const ChainCheck& check);
// The same through `io` (tests: a FaultBackend's files after a power cut).
[[nodiscard]] Result<ChainReport> verify_chain(IoBackend& io, const std::string& directory, const ChainCheck& check);

// The head at `sequence` (the log's last record if nullopt): from CHAIN's entry before the segment
// that holds it, recomputed from there. not_found for an empty log or a sequence it does not hold.
[[nodiscard]] Result<ChainHead> chain_head(const std::string& directory, std::optional<std::uint64_t> sequence);

}  // namespace annal::journal
