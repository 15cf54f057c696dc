// Acknowledged events a journal directory's log no longer holds, judged from their witnesses: the
// two words in LOCK (format.h) and the caller's DurableWitness (journal.h). The writer's open
// refuses such a directory unless told to accept the loss; the read-only open reports it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "annal/journal/io_backend.h"
#include "annal/journal/journal.h"

namespace annal::journal {

struct LockWords {
  std::optional<std::uint64_t> durable;    // the last durable notice
  std::optional<std::uint64_t> kept_from;  // the retention floor
};

// Both words of an open LOCK file. A word that does not check reads as absent (a new directory, an
// older writer's LOCK, a notice torn by a live writer): it then witnesses nothing.
[[nodiscard]] Result<LockWords> read_lock_words(IoBackend& io, FileId lock);
// The same by directory, for read-only opens: no LOCK file, no words.
[[nodiscard]] Result<LockWords> read_lock_words(IoBackend& io, const std::string& directory);

struct DataLoss {
  std::uint64_t first = 0;  // the missing sequences, first..last
  std::uint64_t last = 0;
  std::string what;         // one line: the range, the witnesses, the likely cause
};

// `first_base`: the first segment's base (0: no segment); `last`: the last sequence the recovered
// log holds (0: none). nullopt when every witness is satisfied.
[[nodiscard]] std::optional<DataLoss> find_data_loss(const std::string& directory, std::uint64_t first_base,
                                                     std::uint64_t last, const LockWords& words,
                                                     const std::optional<DurableWitness>& witness);

// Writes the retention floor into LOCK and syncs it.
[[nodiscard]] Status write_retention_floor(IoBackend& io, FileId lock, std::uint64_t first_kept);

// data-loss-<first>-<last>.txt in the directory: what was missing and that the operator let the
// log go on without it. Synced with its directory entry.
[[nodiscard]] Status leave_data_loss_note(IoBackend& io, const std::string& directory, const DataLoss& loss,
                                          std::uint64_t continues_at);

}  // namespace annal::journal
