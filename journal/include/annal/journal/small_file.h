// Small files a store keeps beside its journal and rewrites whole (its key store, the hash
// chain), through the I/O backend so that the fault backend's power cuts reach them too.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "annal/base/status.h"
#include "annal/journal/io_backend.h"

namespace annal::journal {

// The bytes of the file at `path`: not_found if there is none, invalid_argument (naming it) if it
// holds more than `bytes_max`.
[[nodiscard]] Result<std::vector<std::byte>> read_small_file(IoBackend& io, const std::string& path,
                                                             std::size_t bytes_max);

// Replaces the file at `path` with `bytes` so that a crash leaves the old file or the new one,
// never a mix: PATH.tmp (a crash's leftover removed first) made with `create` (create_exclusive
// or create_private), written, synced, renamed over PATH, and the directory synced. The caller is
// the directory's one writer.
[[nodiscard]] Status replace_small_file(IoBackend& io, const std::string& path, std::span<const std::byte> bytes,
                                        OpenMode create);

}  // namespace annal::journal
