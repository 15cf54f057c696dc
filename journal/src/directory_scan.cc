#include "directory_scan.h"

#include <algorithm>

#include "segment_scan.h"

namespace annal::journal {
namespace {

struct FileCloser {
  IoBackend& io;
  FileId file;
  ~FileCloser() { (void)io.close(file); }
};

// One segment, read-only: from its index file when that is allowed and valid, else scanned whole.
// `next_base` is the next segment's base, 0 for the last segment. `info` is filled for the
// readable log (records up to the last whole batch).
Result<SegmentReport> scan_one(IoBackend& io, const std::string& path, const std::string& name, std::uint64_t base,
                               std::uint64_t next_base, const Options& options, bool verify,
                               SegmentInfo& info, std::uint32_t& salt) {
  const auto file = io.open(path, OpenMode::read_only);
  if (!file.ok()) return file.status();
  const FileCloser closer{io, file.value()};
  const auto size = io.size(file.value());
  if (!size.ok()) return size.status();
  SegmentReport report{.file = name, .base = base, .end_sequence = base, .bytes = size.value(),
                       .used_bytes = kSegmentHeaderBytes};
  info = {base, base, kSegmentHeaderBytes, path, {}};
  if (!verify && next_base != 0) {
    if (auto sealed = trusted_index(io, file.value(), path, base, next_base)) {
      report.end_sequence = sealed->end_sequence;
      report.used_bytes = sealed->end_offset;
      salt = sealed->salt;
      info = {base, sealed->end_sequence, sealed->end_offset, path, std::move(sealed->index)};
      return report;
    }
  }
  const auto bytes = read_whole(io, file.value());
  if (!bytes.ok()) return bytes.status();
  report.verified = true;
  const auto header = decode_segment_header(bytes.value(), path);
  if (!header.ok() || header.value().base_sequence != base) {
    report.health = SegmentHealth::corrupt;
    report.problem = header.ok() ? path + ": its header says base sequence " +
                                       std::to_string(header.value().base_sequence)
                                 : header.status().message();
    return report;
  }
  report.created_ns = header.value().created_ns;
  salt = header.value().salt;
  SegmentScan scan = scan_segment(bytes.value(), header.value(), options.index_interval_bytes);
  report.end_sequence = scan.next_sequence;
  report.used_bytes = scan.valid_bytes;
  switch (judge(scan, next_base == 0)) {
    case Verdict::intact:
      break;
    case Verdict::torn_tail:
      report.health = SegmentHealth::torn_tail;
      report.problem = describe_stop(path, scan) + " (a crash's unfinished write; the next open truncates it)";
      break;
    case Verdict::corruption:
      report.health = SegmentHealth::corrupt;
      report.problem = describe_stop(path, scan) + (next_base != 0 ? " in a sealed segment" : ", followed by acknowledged records");
      break;
  }
  info = {base, scan.next_sequence, scan.valid_bytes, path, std::move(scan.index)};
  return report;
}

}  // namespace

Result<ScannedDirectory> scan_directory(IoBackend& io, const std::string& directory, const Options& options,
                                        bool verify) {
  const auto names = io.list(directory);
  if (!names.ok()) return names.status();
  std::vector<std::uint64_t> bases;
  for (const std::string& name : names.value()) {
    if (const auto base = parse_segment_file_name(name)) bases.push_back(*base);
  }
  std::sort(bases.begin(), bases.end());

  ScannedDirectory out;
  bool readable = true;  // the log is whole from its first segment up to here
  for (std::size_t i = 0; i < bases.size(); ++i) {
    const std::string name = segment_file_name(bases[i]);
    const std::string path = join_path(directory, name);
    const std::uint64_t next = i + 1 < bases.size() ? bases[i + 1] : 0;
    SegmentInfo info;
    std::uint32_t salt = 0;
    auto segment = scan_one(io, path, name, bases[i], next, options, verify, info, salt);
    if (!segment.ok()) return segment.status();
    SegmentReport& report = segment.value();
    if (!out.report.segments.empty() && bases[i] != out.report.segments.back().end_sequence) {
      out.report.problems.push_back(path + ": starts at sequence " + std::to_string(bases[i]) + " but the segment before ends before " +
                                    std::to_string(out.report.segments.back().end_sequence) +
                                    " (a segment is missing or damaged)");
      readable = false;
    }
    if (report.health == SegmentHealth::corrupt) out.report.problems.push_back(report.problem);
    if (readable) {
      out.segments.push_back(std::move(info));
      out.tail_salt = salt;
    }
    readable = readable && report.health != SegmentHealth::corrupt;
    out.report.bytes += report.bytes;
    out.report.segments.push_back(std::move(report));
  }
  if (!out.segments.empty() && out.segments.back().end_sequence > out.segments.front().base) {
    out.report.first_sequence = out.segments.front().base;
    out.report.last_sequence = out.segments.back().end_sequence - 1;
  }
  return out;
}

Result<DirectoryReport> inspect_directory(const std::string& directory, bool verify) {
  auto io = make_posix_backend();
  const Options options;
  auto scanned = scan_directory(*io, directory, options, verify);
  if (!scanned.ok()) return scanned.status();
  return std::move(scanned.value().report);
}

Status check_retained(const std::vector<SegmentInfo>& segments, std::uint64_t sequence) {
  if (segments.empty() || sequence >= segments.front().base) return {};
  return Status(ErrorCode::not_found, "sequence " + std::to_string(sequence) + " was removed by retention (the log starts at " +
                                          std::to_string(segments.front().base) + ")");
}

Result<SegmentLocation> locate_in(const std::vector<SegmentInfo>& segments, std::uint64_t sequence) {
  if (segments.empty()) {
    return Status(ErrorCode::not_found, "sequence " + std::to_string(sequence) + ": the journal has no segment yet");
  }
  if (Status retained = check_retained(segments, sequence); !retained.ok()) return retained;
  const auto after = std::upper_bound(segments.begin(), segments.end(), sequence,
                                      [](std::uint64_t s, const SegmentInfo& info) { return s < info.base; });
  const SegmentInfo& segment = *std::prev(after);
  SegmentLocation where{.path = segment.path,
                        .base = segment.base,
                        .start_sequence = segment.base,
                        .start_offset = kSegmentHeaderBytes,
                        .end_sequence = segment.end_sequence,
                        .end_offset = segment.end_offset,
                        .verified_end_offset = segment.verified_end_offset};
  if (const auto entry = segment.index.floor(sequence)) {
    where.start_sequence = entry->sequence;
    where.start_offset = entry->offset;
  }
  return where;
}

}  // namespace annal::journal
