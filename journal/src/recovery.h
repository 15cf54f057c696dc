// Opening a journal directory: find the segments, check each one and their continuity, repair a
// torn tail (or, in point-in-time mode, cut at the first damage), and hand the writer the place
// where the log continues. The rules for what counts as torn and what as corrupt are in
// segment_scan.h.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "annal/journal/io_backend.h"
#include "annal/journal/journal.h"
#include "segment_index.h"
#include "segment_scan.h"

namespace annal::journal {

// What the journal knows of one segment file. The index comes from the segment's index file, or
// from recovery's scan when it had to read the segment.
struct SegmentInfo {
  std::uint64_t base = kFirstSequence;
  std::uint64_t end_sequence = kFirstSequence;  // one past its last record
  std::uint64_t end_offset = kSegmentHeaderBytes;  // file offset just past its last record
  std::string path;
  SegmentIndex index;
  // The records before this offset had their checksums verified by this open's scan
  // (SegmentLocation::verified_end_offset); kSegmentHeaderBytes: none were.
  std::uint64_t verified_end_offset = kSegmentHeaderBytes;
};

struct Recovered {
  std::vector<SegmentInfo> segments;  // in log order; the last is where appends continue
  FileId tail_file = -1;              // the last segment, open for writing (-1: no segments)
  std::uint32_t tail_salt = 0;
  RecoveryReport report;
};

[[nodiscard]] std::string join_path(const std::string& directory, const std::string& name);

// Shared with directory_scan.h, which walks the directory the same way without repairing it.
[[nodiscard]] Result<std::vector<std::byte>> read_whole(IoBackend& io, FileId file);
// "<path> offset O sequence S: <what stopped the scan>".
[[nodiscard]] std::string describe_stop(const std::string& path, const SegmentScan& scan);
// A sealed segment's index file, if it matches the segment: same salt and base as its header,
// ending where the next segment (`next_base`) begins. At any interval: lookups work with any
// spacing, and a writer extends only the tail's index, at its own.
[[nodiscard]] std::optional<SealedSegment> trusted_index(IoBackend& io, FileId file, const std::string& path,
                                                         std::uint64_t base, std::uint64_t next_base);

// Asked once, before recovery changes anything that held records (a torn tail cut, segments after
// damage removed), or at the end if nothing needs repair: the log will run from `first_base` (0:
// no segment) to `last` (0: empty). An error stops recovery there, with nothing repaired.
using BeforeRepair = std::function<Status(std::uint64_t first_base, std::uint64_t last)>;

[[nodiscard]] Result<Recovered> recover(IoBackend& io, const std::string& directory,
                                        const Options& options, const BeforeRepair& before_repair);

// Makes segment `base` out of `file`, a sized file under the temporary name `temp`: writes the
// header, syncs, renames it into place and syncs the directory, so after a crash the segment
// either exists whole or not at all. Returns `file`; closes it on failure.
[[nodiscard]] Result<FileId> install_segment(IoBackend& io, const std::string& directory, FileId file,
                                             const std::string& temp, std::uint64_t base,
                                             std::uint32_t salt);

// Creates segment `base` on the spot: a temporary file sized with fallocate, then installed.
[[nodiscard]] Result<FileId> create_segment(IoBackend& io, const std::string& directory,
                                            std::uint64_t base, std::uint32_t salt,
                                            std::uint64_t bytes);

}  // namespace annal::journal
