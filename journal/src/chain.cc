#include "annal/journal/chain.h"

#include <algorithm>
#include <charconv>
#include <cstring>

#include "annal/base/assert.h"
#include "annal/base/little_endian.h"
#include "annal/base/thread_role.h"
#include "annal/journal/crc32c.h"
#include "annal/journal/format.h"
#include "annal/journal/io_backend.h"
#include "annal/journal/reseal.h"
#include "chain_file.h"
#include "directory_scan.h"
#include "recovery.h"
#include "segment_scan.h"

namespace annal::journal {
namespace {

constexpr std::array<char, 8> kEntryMagic = {'A', 'N', 'N', 'A', 'L', 'C', 'H', 'N'};
constexpr std::string_view kLinkLabel = "annal chain v1";
constexpr std::string_view kHeadLabel = "annal chain head v1";
constexpr std::size_t kTaggedBytes = 64;
constexpr std::size_t kChecksummedBytes = 96;

std::span<const std::byte> bytes_of(std::string_view text) noexcept { return std::as_bytes(std::span(text)); }

struct FileCloser {
  IoBackend& io;
  FileId file;
  ~FileCloser() { (void)io.close(file); }
};

std::string range(std::uint64_t first, std::uint64_t last) { return std::to_string(first) + ".." + std::to_string(last); }

std::string segment_name(const std::string& path) { return path.substr(path.find_last_of('/') + 1); }

}  // namespace

void encode_chain_entry(const ChainEntry& entry, std::span<std::byte, kChainEntryBytes> out) noexcept {
  std::fill(out.begin(), out.end(), std::byte{0});
  std::memcpy(out.data(), kEntryMagic.data(), kEntryMagic.size());
  store_le<std::uint64_t>(out, 8, entry.base);
  store_le<std::uint64_t>(out, 16, entry.last);
  std::memcpy(out.data() + 24, entry.link.data(), entry.link.size());
  store_le<std::uint32_t>(out, 56, entry.key_version);
  std::memcpy(out.data() + 64, entry.tag.data(), entry.tag.size());
  store_le<std::uint32_t>(out, 96, crc32c_extend(0, std::span<const std::byte>(out).first(kChecksummedBytes)));
}

std::optional<ChainEntry> decode_chain_entry(std::span<const std::byte> in) noexcept {
  if (in.size() < kChainEntryBytes || std::memcmp(in.data(), kEntryMagic.data(), kEntryMagic.size()) != 0) {
    return std::nullopt;
  }
  if (load_le<std::uint32_t>(in, 96) != crc32c_extend(0, in.first(kChecksummedBytes)) ||
      load_le<std::uint32_t>(in, 60) != 0 || load_le<std::uint32_t>(in, 100) != 0) {
    return std::nullopt;
  }
  ChainEntry entry;
  entry.base = load_le<std::uint64_t>(in, 8);
  entry.last = load_le<std::uint64_t>(in, 16);
  std::memcpy(entry.link.data(), in.data() + 24, entry.link.size());
  entry.key_version = load_le<std::uint32_t>(in, 56);
  std::memcpy(entry.tag.data(), in.data() + 64, entry.tag.size());
  if (entry.base < kFirstSequence || entry.last < entry.base) return std::nullopt;
  return entry;
}

crypto::Digest chain_entry_tag(const ChainEntry& entry, const crypto::Key& key) noexcept {
  std::array<std::byte, kChainEntryBytes> encoded{};
  encode_chain_entry(entry, encoded);
  return crypto::hmac_sha256(key.bytes(), std::span(encoded).first(kTaggedBytes));
}

std::string to_string(const ChainHead& head) { return std::to_string(head.sequence) + ":" + crypto::to_hex(head.link); }

std::optional<ChainHead> parse_chain_head(std::string_view text) noexcept {
  const std::size_t colon = text.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  ChainHead head;
  const auto parsed = std::from_chars(text.data(), text.data() + colon, head.sequence);
  if (parsed.ec != std::errc() || parsed.ptr != text.data() + colon || head.sequence < kFirstSequence) return std::nullopt;
  const auto link = crypto::digest_from_hex(text.substr(colon + 1));
  if (!link) return std::nullopt;
  head.link = *link;
  return head;
}

crypto::Digest chain_head_tag(const ChainHead& head, const crypto::Key& key) noexcept {
  std::array<std::byte, kHeadLabel.size() + 8 + crypto::kDigestBytes> message{};
  std::memcpy(message.data(), kHeadLabel.data(), kHeadLabel.size());
  store_le<std::uint64_t>(message, kHeadLabel.size(), head.sequence);
  std::memcpy(message.data() + kHeadLabel.size() + 8, head.link.data(), head.link.size());
  return crypto::hmac_sha256(key.bytes(), message);
}

namespace {

// The records a link covers go to the hash in runs of 64 KiB rather than one by one: a call into
// SHA-256 costs more than copying a record of a few hundred bytes (the records are not contiguous
// in the file: padding lies between them). The digest is the same.
class HashRuns {
 public:
  explicit HashRuns(crypto::Sha256& hash) : hash_(hash) {}
  void add(std::span<const std::byte> bytes) {
    if (used_ + bytes.size() > run_.size()) flush();
    if (bytes.size() >= run_.size()) {
      hash_.update(bytes);
      return;
    }
    std::memcpy(run_.data() + used_, bytes.data(), bytes.size());
    used_ += bytes.size();
  }
  void flush() {
    if (used_ > 0) hash_.update(std::span(run_).first(used_));
    used_ = 0;
    yield_if_background();  // the chain thread: 64 KiB at a time, never a whole segment at once
  }

 private:
  crypto::Sha256& hash_;
  std::vector<std::byte> run_ = std::vector<std::byte>(std::size_t{64} << 10);
  std::size_t used_ = 0;
};

}  // namespace

Result<ChainHead> segment_link(IoBackend& io, const std::string& path, const crypto::Digest& previous,
                               std::uint64_t through, bool direct) {
  auto file = io.open(path, direct ? OpenMode::read_write_direct : OpenMode::read_only);
  if (!file.ok()) return file.status();
  auto size = io.size(file.value());
  if (!size.ok()) {
    (void)io.close(file.value());
    return size.status();
  }
  if (direct && size.value() % kDirectBlockBytes != 0) {
    // The last block is partial: a direct read of it comes back short, and reading on from there
    // is an unaligned read. Through the page cache then (a segment cut by recovery, or sized so).
    (void)io.close(file.value());
    direct = false;
    file = io.open(path, OpenMode::read_only);
    if (!file.ok()) return file.status();
  }
  const FileCloser closer{io, file.value()};
  SegmentBytes bytes(io, file.value(), size.value(), std::size_t{1} << 20, direct);
  const auto header_bytes = bytes.from(0, kSegmentHeaderFieldsBytes);
  const auto header = decode_segment_header(header_bytes, path);
  if (!header.ok()) return header.status();
  crypto::Sha256 hash;
  hash.update(bytes_of(kLinkLabel));
  hash.update(previous);
  hash.update(header_bytes.first(kSegmentHeaderFieldsBytes));
  HashRuns records(hash);
  std::uint64_t expected = header.value().base_sequence;
  std::uint64_t offset = kSegmentHeaderBytes;
  const auto damaged = [&](const std::string& what) {
    return Status(ErrorCode::corruption, path + " offset " + std::to_string(offset) + " sequence " +
                                             std::to_string(expected) + ": " + what);
  };
  while (expected <= through) {
    if (offset >= size.value()) return damaged("the segment ends before sequence " + std::to_string(through));
    const auto in = bytes.record_at(offset);
    if (!bytes.status().ok()) return bytes.status();
    const DecodedRecord record = decode_record(in, header.value().salt);
    if (record.status == RecordStatus::end_of_log) {
      return damaged("the segment ends before sequence " + std::to_string(through));
    }
    if (record.status != RecordStatus::ok) return damaged(std::string("a record that does not decode (") + to_string(record.status) + ")");
    if (record.header.sequence != expected) {
      return damaged("a record of sequence " + std::to_string(record.header.sequence) + " out of order");
    }
    if (record.header.type != kTypePadding) {
      records.add(in.first(kRecordHeaderBytes + record.payload.size()));
      ++expected;
    }
    offset += record.padded_bytes;
  }
  records.flush();
  std::array<std::byte, 8> last{};
  store_le<std::uint64_t>(last, 0, through);
  hash.update(last);
  return ChainHead{.sequence = through, .link = hash.finish()};
}

namespace {

// The log as the chain sees it: its segments (up to any damage) and CHAIN's entries.
struct ChainedLog {
  std::vector<SegmentInfo> segments;  // only those holding records
  ChainFile chain;
  // The link before the first segment: the last entry of the segments retention removed, else
  // zeros (the first segment ever chained).
  crypto::Digest start{};
};

Result<ChainedLog> read_chained_log(IoBackend& io, const std::string& directory) {
  // CHAIN first: beside a writer, every entry read is then of a segment sealed before the scan, which
  // sees it whole (read after, an entry could be of a tail the scan saw shorter).
  auto chain = read_chain_file(io, directory);
  if (!chain.ok()) return chain.status();
  auto scanned = scan_directory(io, directory, Options{}, /*verify=*/false);
  if (!scanned.ok()) return scanned.status();
  ChainedLog log{.segments = {}, .chain = std::move(chain).value(), .start = {}};
  for (SegmentInfo& segment : scanned.value().segments) {
    if (segment.end_sequence > segment.base) log.segments.push_back(std::move(segment));
  }
  if (!log.segments.empty()) {
    for (const ChainEntry& entry : log.chain.entries) {
      if (entry.last < log.segments.front().base) log.start = entry.link;
    }
  }
  return log;
}

// The head at `sequence` after `links` of the segments before it (computed in order).
Result<ChainHead> head_in(IoBackend& io, const ChainedLog& log, std::uint64_t sequence) {
  crypto::Digest previous = log.start;
  for (const SegmentInfo& segment : log.segments) {
    if (sequence < segment.base) break;
    const std::uint64_t last = segment.end_sequence - 1;
    auto link = segment_link(io, segment.path, previous, std::min(sequence, last));
    if (!link.ok() || sequence <= last) return link;
    previous = link.value().link;
  }
  return Status(ErrorCode::not_found, "the log does not hold sequence " + std::to_string(sequence));
}

}  // namespace

Result<ChainReport> verify_chain(const std::string& directory, const ChainCheck& check) {
  return verify_chain(*make_posix_backend(), directory, check);
}

Result<ChainReport> verify_chain(IoBackend& io, const std::string& directory, const ChainCheck& check) {
  auto read = read_chained_log(io, directory);
  if (!read.ok()) return read.status();
  const ChainedLog& log = read.value();
  ChainReport report;
  report.entries = log.chain.entries.size();
  if (log.chain.damaged_at && log.chain.damaged_entry_incomplete) {
    report.notes.push_back("CHAIN ends inside entry " + std::to_string(*log.chain.damaged_at) +
                           ": an append cut short by a crash (the next open drops it) or being written");
  } else if (log.chain.damaged_at) {
    report.problems.push_back(directory + "/CHAIN: entry " + std::to_string(*log.chain.damaged_at) +
                              " is damaged (its magic, checksum or fields are wrong)");
  }
  // The tags, entry by entry: a tag proves the entry came from the key's holder.
  bool tagged_before = false;
  std::optional<std::uint64_t> previous_last;
  const std::uint64_t first_base = log.segments.empty() ? UINT64_MAX : log.segments.front().base;
  for (const ChainEntry& entry : log.chain.entries) {
    const std::string where = "CHAIN entry for sequences " + range(entry.base, entry.last);
    if (previous_last && !entry_follows(entry, *previous_last, first_base)) {
      report.problems.push_back(where + ": follows an entry that ended at " + std::to_string(*previous_last) +
                                " (entries removed, inserted or reordered)");
    }
    previous_last = entry.last;
    if (entry.key_version == 0) {
      // Given the keys, the store is one whose chain is tagged: an untagged entry was written by
      // someone without the key (or before the store had one: then it is rewritten, not trusted).
      if (tagged_before || check.keys) report.problems.push_back(where + ": untagged (written without the chain key)");
      continue;
    }
    tagged_before = true;
    if (!check.keys) continue;
    const auto key = check.keys(entry.key_version);
    if (!key) {
      report.notes.push_back(where + ": tagged under chain key version " + std::to_string(entry.key_version) +
                             ", which was not given: not checked");
      continue;
    }
    ++report.tags_checked;
    if (!crypto::equal_digests(chain_entry_tag(entry, *key), entry.tag)) {
      report.problems.push_back(where + ": its tag is wrong: the entry was not written by the holder of the chain key");
    }
  }
  if (!check.keys && tagged_before) report.notes.push_back("the entries' tags were not checked: no key was given");
  const auto locked = io.directory_locked(directory);
  const bool writer_running = locked.ok() && locked.value();
  const std::uint64_t chained_through = log.chain.entries.empty() ? 0 : log.chain.entries.back().last;
  // The links, segment by segment, recomputed in order from the files.
  crypto::Digest previous = log.start;
  bool broken = false;
  // The expected head, recomputed in the pass over the segments (from the link before its
  // segment), not in a second pass over the log.
  std::optional<Result<ChainHead>> expected_head;
  for (std::size_t i = 0; i < log.segments.size(); ++i) {
    const SegmentInfo& segment = log.segments[i];
    const std::uint64_t last = segment.end_sequence - 1;
    const bool sealed = i + 1 < log.segments.size();
    if (check.expected && segment.base <= check.expected->sequence && check.expected->sequence <= last) {
      expected_head = segment_link(io, segment.path, previous, check.expected->sequence);
    }
    const auto entry = std::find_if(log.chain.entries.begin(), log.chain.entries.end(),
                                    [&](const ChainEntry& e) { return e.base == segment.base; });
    const std::string name = segment_name(segment.path) + " (sequences " + range(segment.base, last) + ")";
    auto link = segment_link(io, segment.path, previous, entry != log.chain.entries.end() ? std::min(entry->last, last) : last);
    if (!link.ok()) {
      report.problems.push_back("chain: " + link.status().message());
      return report;  // nothing after a segment that cannot be read is linked to it
    }
    if (entry == log.chain.entries.end()) {
      // A segment that starts inside one CHAIN chained whole: records were cut from its start
      // (its header's base moved up), not a segment still waiting for its entry.
      const auto around = std::find_if(log.chain.entries.begin(), log.chain.entries.end(), [&](const ChainEntry& e) {
        return e.base < segment.base && segment.base <= e.last;
      });
      if (around != log.chain.entries.end()) {
        if (!broken) {
          report.problems.push_back("chain breaks at " + name + ": CHAIN chained sequences " +
                                    range(around->base, around->last) +
                                    " as one segment: records were removed from its start");
        }
        broken = true;
        previous = link.value().link;
        continue;
      }
      // The chain thread appends a segment's entry just after the writer sealed it, and an open
      // chains what a crash left unchained: only the newest sealed segment may be waiting.
      // While a writer holds the directory, its chain thread may be several segments behind:
      // every sealed segment past the last entry may be waiting.
      const bool newest_sealed = i + 2 == log.segments.size() || (writer_running && segment.base > chained_through);
      if (sealed && newest_sealed) report.notes.push_back(name + " is not chained yet (just sealed)");
      if (sealed && !newest_sealed) {
        report.problems.push_back("chain: " + name + " is missing from CHAIN (a store not opened since it was made "
                                  "by a version without the chain is chained when it is next opened)");
      }
      previous = link.value().link;
      continue;
    }
    if (!broken && !crypto::equal_digests(link.value().link, entry->link)) {
      report.problems.push_back("chain breaks at " + name + ": its records, its header or the segments before it are "
                                "not the ones chained when it was sealed");
      broken = true;  // every later link follows from this one: the first break is the one to name
    }
    if (!broken && entry->last > last) {
      report.problems.push_back("chain breaks at " + name + ": CHAIN says it ends at " + std::to_string(entry->last) +
                                ": records were removed from its end");
      broken = true;
    }
    if (!broken && entry->last < last && sealed) {
      report.problems.push_back("chain breaks at " + name + ": it holds records past " + std::to_string(entry->last) +
                                ", the last one chained");
      broken = true;
    }
    ++report.checked;
    if (entry->last < last) link = segment_link(io, segment.path, previous, last);
    previous = link.value().link;
  }
  if (!log.segments.empty()) report.head = ChainHead{.sequence = log.segments.back().end_sequence - 1, .link = previous};
  if (!log.chain.entries.empty() && (log.segments.empty() || log.chain.entries.back().last >= log.segments.back().end_sequence)) {
    report.problems.push_back("chain: CHAIN has an entry for sequences " +
                              range(log.chain.entries.back().base, log.chain.entries.back().last) +
                              ", past the log's end: records or segments were removed from the end");
  }
  if (check.expected) {
    const ChainHead& expected = *check.expected;
    if (!report.head || expected.sequence > report.head->sequence) {
      report.problems.push_back("chain: the expected head is at sequence " + std::to_string(expected.sequence) +
                                ", but the log ends at " + std::to_string(report.head ? report.head->sequence : 0) +
                                ": records were removed from its end");
    } else if (expected.sequence < log.segments.front().base) {
      report.notes.push_back("the expected head's sequence " + std::to_string(expected.sequence) +
                             " is in segments retention removed: not checked");
    } else {
      ANNAL_ASSERT(expected_head.has_value());  // its sequence is in a segment the pass went over
      const Result<ChainHead>& head = *expected_head;
      if (!head.ok()) {
        report.problems.push_back("chain: " + head.status().message());
      } else if (!crypto::equal_digests(head.value().link, expected.link)) {
        report.problems.push_back("chain: the head at sequence " + std::to_string(expected.sequence) + " is " +
                                  crypto::to_hex(head.value().link) + ", not the expected " +
                                  crypto::to_hex(expected.link) + ": the log up to there was changed");
      }
    }
  }
  if (rekey_cut_short(io, directory)) {
    // Named first: the breaks after it are where that rekey stopped, until it is run again.
    const std::string why = "a rekey (annal rekey) was cut short (" + std::string(kRekeyFileName) +
                            " is in the directory): the segments it rewrote match CHAIN again once it is run again, "
                            "which finishes it";
    if (report.problems.empty()) report.notes.push_back(why);
    else report.problems.insert(report.problems.begin(), why);
  }
  return report;
}

Result<ChainHead> chain_head(const std::string& directory, std::optional<std::uint64_t> sequence) {
  const auto io = make_posix_backend();
  auto log = read_chained_log(*io, directory);
  if (!log.ok()) return log.status();
  if (log.value().segments.empty()) return Status(ErrorCode::not_found, directory + ": the log holds no record");
  return head_in(*io, log.value(), sequence.value_or(log.value().segments.back().end_sequence - 1));
}

}  // namespace annal::journal
