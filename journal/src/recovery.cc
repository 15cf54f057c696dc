#include "recovery.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <vector>

#include "segment_scan.h"

namespace annal::journal {
namespace {

constexpr std::string_view kTempSuffix = ".tmp";

}  // namespace

Result<std::vector<std::byte>> read_whole(IoBackend& io, FileId file) {
  const auto size = io.size(file);
  if (!size.ok()) return size.status();
  std::vector<std::byte> bytes(size.value());
  const auto n = io.read(file, 0, bytes);
  if (!n.ok()) return n.status();
  bytes.resize(n.value());
  return bytes;
}

std::string describe_stop(const std::string& path, const SegmentScan& scan) {
  std::string what = scan.stop == ScanStop::wrong_sequence ? "a record out of sequence"
                     : scan.stop == ScanStop::bad_record   ? std::string(to_string(scan.bad_status))
                     : scan.batch_open                      ? "an incomplete batch"
                                                            : "valid records after the end";
  return path + " offset " + std::to_string(scan.stop_offset) + " sequence " +
         std::to_string(scan.stop_sequence) + ": " + what;
}

namespace {

// What cutting at scan.valid_bytes removes, exactly: the byte range holding data, and the whole
// records in it with their sequences (past the stop, whatever sequences they carry).
std::string describe_cut(const SegmentScan& scan) {
  const std::uint64_t whole = (scan.stop_sequence - scan.next_sequence) + scan.records_past_stop;
  const std::uint64_t last = std::max(scan.stop_sequence - 1, scan.sequence_past_stop_max);
  std::string what = "removed offsets " + std::to_string(scan.valid_bytes) + ".." + std::to_string(scan.data_end) +
                     " (" + std::to_string(scan.data_end - scan.valid_bytes) + " bytes): ";
  what += whole == 0 ? std::string("no whole record")
                     : std::to_string(whole) + " whole record" + (whole == 1 ? "" : "s") + " of sequences " +
                           std::to_string(scan.next_sequence) + ".." + std::to_string(last);
  if (scan.stop == ScanStop::bad_record) what += ", and the damaged one at the stop";
  return what;
}

// Cuts `file` back to `valid_bytes` and restores its preallocated size with zeros, then syncs:
// stale bytes past the cut must not survive to be mistaken for records later.
Status cut_tail(IoBackend& io, FileId file, std::uint64_t valid_bytes, std::uint64_t file_bytes) {
  Status status = io.truncate(file, valid_bytes);
  if (status.ok()) status = io.allocate(file, std::max(file_bytes, valid_bytes));
  if (status.ok()) status = io.sync(file);
  return status;
}

}  // namespace

std::string join_path(const std::string& directory, const std::string& name) {
  return directory + "/" + name;
}

Result<FileId> install_segment(IoBackend& io, const std::string& directory, FileId file,
                               const std::string& temp, std::uint64_t base, std::uint32_t salt) {
  std::array<std::byte, kSegmentHeaderBytes> header{};
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  encode_segment_header({.base_sequence = base,
                         .created_ns = static_cast<std::uint64_t>(
                             std::chrono::duration_cast<std::chrono::nanoseconds>(now).count()),
                         .salt = salt},
                        header);
  const std::string path = join_path(directory, segment_file_name(base));
  Status status = io.write(file, 0, header);
  if (status.ok()) status = io.sync(file);
  if (status.ok()) status = io.rename(temp, path);
  if (status.ok()) status = io.sync_directory(directory);
  if (!status.ok()) {
    (void)io.close(file);
    return status;
  }
  return file;
}

Result<FileId> create_segment(IoBackend& io, const std::string& directory, std::uint64_t base,
                              std::uint32_t salt, std::uint64_t bytes) {
  const std::string temp = join_path(directory, segment_file_name(base)) + std::string(kTempSuffix);
  const auto file = io.open(temp, OpenMode::create_exclusive);
  if (!file.ok()) return file.status();
  if (Status allocated = io.allocate(file.value(), bytes); !allocated.ok()) {
    (void)io.close(file.value());
    return allocated;
  }
  return install_segment(io, directory, file.value(), temp, base, salt);
}

// A sealed segment's persisted index, if it can be trusted for this segment in this log: same salt
// and base as the file's header, ending where the next segment begins. Built at any interval: the
// interval is a density, an option of the open that wrote it, and lookups work with any spacing.
std::optional<SealedSegment> trusted_index(IoBackend& io, FileId file, const std::string& path, std::uint64_t base,
                                           std::uint64_t next_base) {
  auto sealed = read_sealed_index(io, path);
  if (!sealed.ok()) return std::nullopt;
  std::vector<std::byte> head(kSegmentHeaderBytes);
  const auto got = io.read(file, 0, head);
  const auto size = io.size(file);
  if (!got.ok() || !size.ok()) return std::nullopt;
  const auto header = decode_segment_header(std::span(head).first(got.value()), path);
  const SealedSegment& s = sealed.value();
  if (!header.ok() || header.value().base_sequence != base || header.value().salt != s.salt || s.base != base ||
      s.end_sequence != next_base || s.end_offset > size.value()) {
    return std::nullopt;
  }
  return std::move(sealed.value());
}

Result<Recovered> recover(IoBackend& io, const std::string& directory, const Options& options,
                          const BeforeRepair& before_repair) {
  Recovered recovered;
  bool asked = false;
  const auto ask = [&](std::uint64_t first_base, std::uint64_t last) {
    if (asked) return Status();
    asked = true;
    return before_repair(first_base, last);
  };
  const auto names = io.list(directory);
  if (!names.ok()) return names.status();

  std::vector<std::uint64_t> bases;
  bool removed_any = false;
  for (const std::string& name : names.value()) {
    if (name.ends_with(kTempSuffix)) {
      // A segment whose creation did not finish: it never held a record.
      const Status removed = io.remove(join_path(directory, name));
      if (!removed.ok()) return removed;
      removed_any = true;
    } else if (const auto base = parse_segment_file_name(name)) {
      bases.push_back(*base);
    }
  }
  std::sort(bases.begin(), bases.end());

  std::vector<std::string> repairs;
  std::vector<std::string> stale_indexes;  // removed once before_repair allowed it
  for (std::size_t i = 0; i < bases.size(); ++i) {
    const bool last = i + 1 == bases.size();
    const std::string path = join_path(directory, segment_file_name(bases[i]));
    const auto file = io.open(path, OpenMode::read_write);
    if (!file.ok()) return file.status();
    if (!last && (i == 0 || bases[i] == recovered.segments.back().end_sequence)) {
      if (auto sealed = trusted_index(io, file.value(), path, bases[i], bases[i + 1])) {
        recovered.segments.push_back({bases[i], sealed->end_sequence, sealed->end_offset, path,
                                      std::move(sealed->index), kSegmentHeaderBytes});
        (void)io.close(file.value());
        continue;
      }
    }
    ++recovered.report.segments_scanned;
    const auto size = io.size(file.value());
    if (!size.ok()) return size.status();
    SegmentBytes bytes(io, file.value(), size.value(), options.read_chunk_bytes);
    const std::span<const std::byte> head = bytes.from(0, kSegmentHeaderBytes);
    if (!bytes.status().ok()) return bytes.status();
    const auto header = decode_segment_header(head, path);
    if (!header.ok()) return header.status();
    if (header.value().base_sequence != bases[i]) {
      return Status(ErrorCode::corruption, path + ": header says base sequence " +
                                               std::to_string(header.value().base_sequence));
    }
    if (i > 0 && bases[i] != recovered.segments.back().end_sequence) {
      return Status(ErrorCode::corruption,
                    path + ": starts at sequence " + std::to_string(bases[i]) + " but " +
                        recovered.segments.back().path + " ends before sequence " +
                        std::to_string(recovered.segments.back().end_sequence) +
                        " (a segment is missing or damaged)");
    }
    SegmentScan scan = scan_segment(bytes, header.value(), options.index_interval_bytes);
    // A failed read looks like a damaged record to the scan: it must not be judged as one.
    if (!bytes.status().ok()) return bytes.status();
    Verdict verdict = judge(scan, last);
    const bool cut_here = verdict == Verdict::corruption &&
                          options.recovery == RecoveryMode::truncate_at_first_corruption;
    if (verdict == Verdict::corruption && !cut_here) {
      return Status(ErrorCode::corruption,
                    describe_stop(path, scan) +
                        ", followed by records that were acknowledged; refusing to open. Restore "
                        "from a backup, or open with recovery_mode truncate_at_first_corruption "
                        "to keep what precedes it");
    }
    if (verdict != Verdict::intact) {
      const std::uint64_t first_base = recovered.segments.empty() ? bases[i] : recovered.segments.front().base;
      if (Status allowed = ask(first_base, scan.next_sequence - 1); !allowed.ok()) {
        (void)io.close(file.value());
        return allowed;
      }
      const Status cut = cut_tail(io, file.value(), scan.valid_bytes, size.value());
      if (!cut.ok()) return cut;
      recovered.report.truncated_bytes += scan.data_end - scan.valid_bytes;
      recovered.report.dropped_records += (scan.stop_sequence - scan.next_sequence) + scan.records_past_stop;
      repairs.push_back((cut_here ? "cut at first damage: " : "truncated torn tail: ") +
                        describe_stop(path, scan) + "; " + describe_cut(scan));
    }
    if (!last && verdict == Verdict::intact) {
      // Next time this sealed segment need not be read: best effort, a scan is the fallback.
      (void)write_sealed_index(io, path, {bases[i], scan.next_sequence, scan.valid_bytes,
                                          options.index_interval_bytes, header.value().salt, scan.index});
    } else {
      stale_indexes.push_back(sealed_index_path(path));  // if it exists: this segment changed or is the tail
    }
    recovered.segments.push_back(
        {bases[i], scan.next_sequence, scan.valid_bytes, path, std::move(scan.index), scan.valid_bytes});
    if (last || cut_here) {
      recovered.tail_file = file.value();
      recovered.tail_salt = header.value().salt;
    } else {
      (void)io.close(file.value());
    }
    if (cut_here) {
      // Everything after the damage goes, later segments included.
      for (std::size_t j = i + 1; j < bases.size(); ++j) {
        const Status removed = io.remove(join_path(directory, segment_file_name(bases[j])));
        if (!removed.ok()) return removed;
        (void)io.remove(sealed_index_path(join_path(directory, segment_file_name(bases[j]))));
        repairs.push_back("removed " + segment_file_name(bases[j]));
      }
      removed_any = removed_any || i + 1 < bases.size();
      break;
    }
  }
  if (removed_any) {
    const Status synced = io.sync_directory(directory);
    if (!synced.ok()) return synced;
  }
  recovered.report.segments = recovered.segments.size();
  recovered.report.next_sequence =
      recovered.segments.empty() ? kFirstSequence : recovered.segments.back().end_sequence;
  if (Status allowed = ask(recovered.segments.empty() ? 0 : recovered.segments.front().base,
                           recovered.report.next_sequence - 1);
      !allowed.ok()) {
    if (recovered.tail_file >= 0) (void)io.close(recovered.tail_file);
    return allowed;
  }
  for (const std::string& index : stale_indexes) (void)io.remove(index);
  for (const std::string& repair : repairs) {
    if (!recovered.report.message.empty()) recovered.report.message += "; ";
    recovered.report.message += repair;
  }
  if (!repairs.empty()) {
    recovered.report.message = "journal " + directory + ": " + recovered.report.message + " (" +
                               std::to_string(recovered.report.dropped_records) + " records, " +
                               std::to_string(recovered.report.truncated_bytes) + " bytes dropped)";
  }
  return recovered;
}

}  // namespace annal::journal
