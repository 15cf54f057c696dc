// Rewriting a journal's sealed records under another key, for `annal rekey` (docs/security.md,
// Key rotation): the journal's half. It knows nothing of keys; a RecordResealer (the engine's)
// says which sealed payloads are stale and seals them anew.
//
// One segment at a time, in log order, and atomically: a copy of the segment with every stale
// record resealed (the same size, so every record keeps its offset and the index file stays
// right; each checksum recomputed under the segment's salt) is written to SEGMENT.rekey.tmp and
// synced; its new link (chain.h) is recorded in REKEY (below); then it is renamed over the
// segment and the directory synced. When every segment is done, CHAIN is rewritten whole (each
// entry's new link, tagged under the new chain key, retention's entries tagged anew) and REKEY
// removed. The active segment is rewritten as well: the journal is closed, so nothing appends to
// it, and an old master key could not be retired while it held records sealed under it.
//
// Why REKEY. Rewriting segment k changes the link of every segment from k on, so CHAIN cannot
// follow segment by segment (that would hash the rest of the log again for each one). Until the
// end CHAIN keeps the old links; REKEY keeps the new ones, tagged under the new chain key:
//
//   +0   magic        "ANNALRKY"
//   +8   key_version  u32  the chain key version of `tag`
//   +12  zero         u32
//   +16  head_before  the chain head when the rekey began: sequence u64, link 32 bytes
//   +56  count        u32  entries that follow
//   +60  zero         u32
//   +64  entries      base u64, last u64, link 32 bytes: a segment's link over its new copy
//   ...  tag          32 bytes: HMAC-SHA256(chain key, everything before it)
//   ...  checksum     u32  CRC32C of everything before it, then a zero u32
//
// A rekey cut short (a crash, a power cut) is finished by the next one: every segment must then
// match either its old entry in CHAIN (not rewritten yet; a copy recorded but not yet renamed) or
// its new link in REKEY (rewritten), or the rekey refuses, naming it. Nobody without the chain key
// can forge either. Meanwhile `annal verify --chain` reports the chain broken where the rewrite
// stopped, and says why (a REKEY file); the log reads whole, under the old key or the new.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "annal/base/status.h"
#include "annal/journal/chain.h"
#include "annal/journal/format.h"
#include "annal/journal/io_backend.h"

namespace annal::journal {

inline constexpr std::string_view kRekeyFileName = "REKEY";

// Seals records anew: the engine's, from its key store. One thread's.
class RecordResealer {
 public:
  virtual ~RecordResealer() = default;
  // Whether the sealed payload of the record with `header` is to be sealed anew. Looks at the
  // bytes only (sees every sealed record of the log, in order, before any is resealed).
  [[nodiscard]] virtual bool stale(const RecordHeader& header, std::span<const std::byte> sealed) = 0;
  // Called once every record has been through stale(), before the first reseal and before
  // anything is written: an error (a key reseal will need is missing) stops the rewrite there.
  [[nodiscard]] virtual Status ready() { return {}; }
  // Opens `sealed` and seals it again into `out` (the same size), authenticated with `associated`
  // (format.h, associated_data) as before. An error stops the rewrite before the segment changes.
  [[nodiscard]] virtual Status reseal(const RecordHeader& header, std::span<const std::byte> associated,
                                      std::span<const std::byte> sealed, std::span<std::byte> out) = 0;
};

struct ResealOptions {
  // Tags the new CHAIN entries and REKEY. Required: only an encrypted store is rekeyed.
  std::shared_ptr<const ChainKey> chain_key;
  // Every version's chain key, to check the chain (and a REKEY) before anything is written.
  ChainKeys chain_keys;
  // Called once, before the first resealed byte is written (and only if one is): the caller's
  // cipher takes its new open number there, so that no (key, nonce) pair repeats.
  std::function<Status()> before_first_write;
};

struct ResealReport {
  std::size_t segments = 0;             // holding records
  std::size_t segments_rewritten = 0;
  std::size_t records_resealed = 0;
  std::size_t entries_retagged = 0;     // CHAIN entries under an older chain key, their link unchanged
  bool chain_rewritten = false;
  bool resumed = false;                 // REKEY was found: a rekey cut short, finished now
  std::optional<ChainHead> head_before;  // at the log's last record (none: an empty log)
  std::optional<ChainHead> head_after;
  [[nodiscard]] bool changed() const noexcept { return segments_rewritten > 0 || chain_rewritten || resumed; }
};

// Rewrites every segment of the journal in `directory` that holds a stale record, then CHAIN.
// The caller holds the directory's LOCK and the journal is recovered (no torn tail, every sealed
// segment chained). Before writing anything it checks the chain (every link, every tag), or,
// after a rekey cut short, each segment against CHAIN or REKEY: corruption, naming the first
// break, if it does not hold. Nothing stale and every entry tagged under options.chain_key:
// nothing is written.
[[nodiscard]] Result<ResealReport> reseal_journal(IoBackend& io, const std::string& directory,
                                                  RecordResealer& resealer, const ResealOptions& options);

// Whether the journal in `directory` needs an open's recovery before reseal_journal: a torn tail
// (or damage), a sealed segment CHAIN has no entry for, a torn CHAIN. Reads only.
[[nodiscard]] Result<bool> needs_recovery(IoBackend& io, const std::string& directory);

// Whether a REKEY file is in `directory`: a rekey was cut short (verify_chain says so).
[[nodiscard]] bool rekey_cut_short(IoBackend& io, const std::string& directory);

}  // namespace annal::journal
