// Looking inside a journal directory without opening it for writing: no lock is taken and nothing
// is repaired, so it works on a damaged directory and beside the process that writes it (it then
// sees the files as they are at that moment). `annal inspect` and `annal verify` are built on it.
//
//   auto report = annal::journal::inspect_directory("/var/lib/orders", /*verify=*/true);
//   for (const auto& problem : report.value().problems) std::puts(problem.c_str());
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "annal/base/status.h"

namespace annal::journal {

enum class SegmentHealth {
  intact,
  // The last segment ends the way a crash leaves it (an unfinished write or batch): the next
  // open() truncates that tail, and nothing acknowledged is in it. Not a problem.
  torn_tail,
  // Damage no crash explains (a bad record followed by acknowledged ones, an unfinished batch in
  // a sealed segment, a gap between segments): open() refuses the directory.
  corrupt,
};

struct SegmentReport {
  std::string file;                 // "00000000000000000001.log"
  std::uint64_t base = 0;           // its first sequence
  std::uint64_t end_sequence = 0;   // one past its last whole batch
  std::uint64_t bytes = 0;          // the file's size, preallocated space included
  std::uint64_t used_bytes = 0;     // header and records up to end_sequence
  std::uint64_t created_ns = 0;     // wall clock, from its header
  bool verified = false;            // read and checked whole (otherwise taken from its index file)
  SegmentHealth health = SegmentHealth::intact;
  std::string problem{};            // file, offset, sequence and what, unless intact
};

struct DirectoryReport {
  std::vector<SegmentReport> segments;  // in log order
  std::uint64_t first_sequence = 0;     // 0: no records
  std::uint64_t last_sequence = 0;
  std::uint64_t bytes = 0;              // of all segment files
  std::vector<std::string> problems;    // every corrupt segment's problem, and gaps between segments
  [[nodiscard]] bool sound() const noexcept { return problems.empty(); }
};

// With `verify`, every record of every segment is read and checked (checksum, sequence, batch
// boundaries); otherwise a sealed segment whose index file is valid is taken from it and only the
// others are read. Fails only if the directory cannot be listed or a file cannot be read.
[[nodiscard]] Result<DirectoryReport> inspect_directory(const std::string& directory, bool verify);

}  // namespace annal::journal
