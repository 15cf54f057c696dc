// Reading a journal directory without changing it: what inspect_directory reports and what a
// read-only journal serves. recovery.h does the same walk for open(), and repairs as it goes.
#pragma once

#include <string>
#include <vector>

#include "annal/journal/inspect.h"
#include "annal/journal/io_backend.h"
#include "annal/journal/journal.h"
#include "recovery.h"

namespace annal::journal {

struct ScannedDirectory {
  DirectoryReport report;
  // The readable log: every segment up to the first damage, each ending at its last whole batch.
  std::vector<SegmentInfo> segments;
  std::uint32_t tail_salt = 0;
};

[[nodiscard]] Result<ScannedDirectory> scan_directory(IoBackend& io, const std::string& directory,
                                                      const Options& options, bool verify);

// not_found if retention removed `sequence` (it lies before the first segment); ok otherwise, a
// sequence past the end or a log with no segment yet included (a reader may wait for it).
[[nodiscard]] Status check_retained(const std::vector<SegmentInfo>& segments, std::uint64_t sequence);

// Where `sequence` lies in `segments` (Journal::locate's answer).
[[nodiscard]] Result<SegmentLocation> locate_in(const std::vector<SegmentInfo>& segments, std::uint64_t sequence);

}  // namespace annal::journal
