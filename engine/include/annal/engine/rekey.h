// Key rotation's last step (`annal rekey`, docs/security.md): everything in an encrypted store
// sealed under an older master key version is sealed again under the newest one, so that the
// older versions can be retired (dropped from the key file, the HSM, the vault) and the store
// still opens and reads everything.
//
// What it rewrites, offline (it takes the store's LOCK: a running engine or another tool is
// refused), in this order:
//   1. the journal recovered as an open would (a torn tail cut, sealed segments chained);
//   2. the chain checked (every link and tag, as `annal verify --chain`): refused on any break;
//   3. KEYS: a new open number taken and saved, sealed under the newest version, before anything
//      sealed is written, so that no (key, nonce) pair repeats;
//   4. each segment holding a record under an older version, the active one included, copied with
//      those records resealed and renamed over it (journal/reseal.h), then CHAIN, every entry
//      linked and tagged anew; the chain head changes, and both heads are reported;
//   5. each snapshot sealed under an older version, resealed in its own key epoch (atomically).
// Left as they are, because nobody can open them: records of erased streams and snapshots of
// ended epochs (their keys are destroyed, not just old). Records in clear (from before the store
// was encrypted) stay in clear.
//
// A crash at any point leaves a store that opens and reads every event (under the old version or
// the new: keep both in the key file until the rekey has finished), and running rekey again
// finishes the work. With nothing left to do it says so and writes nothing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "annal/base/status.h"
#include "annal/engine/engine.h"
#include "annal/journal/chain.h"
#include "annal/journal/io_backend.h"

namespace annal::engine {

struct RekeyReport {
  std::uint32_t key_version = 0;   // the newest master version: everything readable is under it now
  std::uint32_t open_number = 0;   // the open number resealed records carry (0: no record resealed)
  std::size_t segments = 0;
  std::size_t segments_rewritten = 0;
  std::size_t records_resealed = 0;
  // Left under older versions because their stream is erased: no key opens them, under any
  // version, so retiring the older versions loses nothing of them.
  std::size_t records_erased_left = 0;
  std::size_t chain_entries_retagged = 0;
  bool chain_rewritten = false;
  bool key_store_resealed = false;  // KEYS was under an older version
  std::size_t snapshots_resealed = 0;
  std::size_t snapshots_destroyed = 0;  // of ended epochs: unreadable by anyone, left as they are
  bool resumed = false;  // a rekey cut short was found and finished
  std::optional<journal::ChainHead> head_before;
  std::optional<journal::ChainHead> head_after;
  [[nodiscard]] bool changed() const noexcept {
    return segments_rewritten > 0 || chain_rewritten || key_store_resealed || snapshots_resealed > 0 || resumed;
  }
};

// Rekeys the store in `directory` under options.encryption's current version (required: the
// keys of every version the store holds data under, the newest included). Errors: invalid_argument
// without keys or for a store in clear (no KEYS); locked while the store is open elsewhere;
// KEYS' error for a wrong key; corruption, naming the first break, if the chain does not verify
// (nothing is then written); an I/O error stops it where it was (run it again). `io`: the
// journal's I/O backend (null: the options' kind), which every file goes through.
[[nodiscard]] Result<RekeyReport> rekey(const std::string& directory, const Options& options,
                                        std::shared_ptr<journal::IoBackend> io = nullptr);

}  // namespace annal::engine
