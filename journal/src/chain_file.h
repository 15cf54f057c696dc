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

// No file is no entries.
[[nodiscard]] Result<ChainFile> read_chain_file(IoBackend& io, const std::string& directory);

// Replaces CHAIN with `entries` (CHAIN.tmp, synced, renamed, the directory synced).
[[nodiscard]] Status rewrite_chain_file(IoBackend& io, const std::string& directory,
                                        const std::vector<ChainEntry>& entries);

}  // namespace annal::journal
