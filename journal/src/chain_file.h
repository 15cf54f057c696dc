// The CHAIN file (chain.h has its format): read at open and by the tools, appended by the chain
// thread, rewritten whole (atomically) when an open drops entries that no longer match the log.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "annal/journal/chain.h"
#include "annal/journal/io_backend.h"

namespace annal::journal {

struct ChainFile {
  std::vector<ChainEntry> entries;            // the valid ones, up to the first that is not
  std::optional<std::size_t> damaged_at;      // the index of that one (a torn append, an edit)
  // The file ends inside that entry: an append a crash cut short (or one being written now).
  bool damaged_entry_incomplete = false;
};

// Whether `entry` may follow an entry that ended at `previous_last`, in a log whose first segment
// begins at `first_base`: right after it, or at that first segment after a gap below it, which is
// retention's (it removed segments never chained: sealed with the chain off, or after chaining
// stopped), the first kept linking to the entry before them.
[[nodiscard]] bool entry_follows(const ChainEntry& entry, std::uint64_t previous_last, std::uint64_t first_base) noexcept;

// No file is no entries.
[[nodiscard]] Result<ChainFile> read_chain_file(IoBackend& io, const std::string& directory);

// Replaces CHAIN with `entries` (CHAIN.tmp, synced, renamed, the directory synced).
[[nodiscard]] Status rewrite_chain_file(IoBackend& io, const std::string& directory,
                                        const std::vector<ChainEntry>& entries);

}  // namespace annal::journal
