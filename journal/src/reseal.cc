#include "annal/journal/reseal.h"

#include <algorithm>
#include <cstring>

#include "annal/base/assert.h"
#include "annal/base/little_endian.h"
#include "annal/journal/crc32c.h"
#include "annal/journal/small_file.h"
#include "chain_file.h"
#include "directory_scan.h"
#include "recovery.h"
#include "segment_scan.h"

namespace annal::journal {
namespace {

constexpr std::array<char, 8> kRekeyMagic = {'A', 'N', 'N', 'A', 'L', 'R', 'K', 'Y'};
constexpr std::size_t kRekeyFixedBytes = 64;
constexpr std::size_t kRekeyEntryBytes = 48;
constexpr std::size_t kRekeyTrailerBytes = crypto::kDigestBytes + 8;
constexpr std::size_t kRekeyBytesMax = std::size_t{16} << 20;  // some 350,000 segments
constexpr std::string_view kCopySuffix = ".rekey.tmp";
// The copy is written in pieces of this size.
constexpr std::size_t kCopyChunkBytes = std::size_t{1} << 20;

// What REKEY holds (reseal.h has the layout).
struct RekeyFile {
  std::uint32_t key_version = 0;
  std::optional<ChainHead> head_before;
  std::vector<ChainEntry> entries;  // base, last and link only
};

std::vector<std::byte> encode_rekey_file(const RekeyFile& file, const ChainKey& key) {
  std::vector<std::byte> out(kRekeyFixedBytes + file.entries.size() * kRekeyEntryBytes + kRekeyTrailerBytes);
  std::memcpy(out.data(), kRekeyMagic.data(), kRekeyMagic.size());
  store_le<std::uint32_t>(out, 8, key.version);
  if (file.head_before) {
    store_le<std::uint64_t>(out, 16, file.head_before->sequence);
    std::memcpy(out.data() + 24, file.head_before->link.data(), crypto::kDigestBytes);
  }
  store_le<std::uint32_t>(out, 56, static_cast<std::uint32_t>(file.entries.size()));
  std::size_t at = kRekeyFixedBytes;
  for (const ChainEntry& entry : file.entries) {
    store_le<std::uint64_t>(out, at, entry.base);
    store_le<std::uint64_t>(out, at + 8, entry.last);
    std::memcpy(out.data() + at + 16, entry.link.data(), crypto::kDigestBytes);
    at += kRekeyEntryBytes;
  }
  const crypto::Digest tag = crypto::hmac_sha256(key.key.bytes(), std::span(out).first(at));
  std::memcpy(out.data() + at, tag.data(), tag.size());
  at += tag.size();
  store_le<std::uint32_t>(out, at, crc32c_extend(0, std::span<const std::byte>(out).first(at)));
  return out;
}

Result<RekeyFile> decode_rekey_file(std::span<const std::byte> in, const std::string& path, const ChainKeys& keys) {
  const auto damaged = [&](const std::string& what) { return Status(ErrorCode::corruption, path + ": " + what); };
  if (in.size() < kRekeyFixedBytes + kRekeyTrailerBytes || std::memcmp(in.data(), kRekeyMagic.data(), kRekeyMagic.size()) != 0) {
    return damaged("not a REKEY file");
  }
  const std::uint32_t count = load_le<std::uint32_t>(in, 56);
  const std::size_t tagged = kRekeyFixedBytes + std::size_t{count} * kRekeyEntryBytes;
  if (in.size() != tagged + kRekeyTrailerBytes ||
      load_le<std::uint32_t>(in, tagged + crypto::kDigestBytes) != crc32c_extend(0, in.first(tagged + crypto::kDigestBytes))) {
    return damaged("its size or checksum is wrong");
  }
  RekeyFile file;
  file.key_version = load_le<std::uint32_t>(in, 8);
  const std::optional<crypto::Key> key = keys ? keys(file.key_version) : std::nullopt;
  if (!key) {
    return Status(ErrorCode::not_found, path + ": tagged under the chain key of master key version " +
                                            std::to_string(file.key_version) + ", which the keys given do not hold");
  }
  crypto::Digest tag{};
  std::memcpy(tag.data(), in.data() + tagged, tag.size());
  if (!crypto::equal_digests(crypto::hmac_sha256(key->bytes(), in.first(tagged)), tag)) {
    return damaged("its tag is wrong: not written by the holder of the master key");
  }
  if (const auto sequence = load_le<std::uint64_t>(in, 16); sequence != 0) {
    file.head_before = ChainHead{.sequence = sequence, .link = {}};
    std::memcpy(file.head_before->link.data(), in.data() + 24, crypto::kDigestBytes);
  }
  for (std::size_t at = kRekeyFixedBytes; at < tagged; at += kRekeyEntryBytes) {
    ChainEntry entry;
    entry.base = load_le<std::uint64_t>(in, at);
    entry.last = load_le<std::uint64_t>(in, at + 8);
    std::memcpy(entry.link.data(), in.data() + at + 16, crypto::kDigestBytes);
    file.entries.push_back(entry);
  }
  return file;
}

Result<std::optional<RekeyFile>> read_rekey_file(IoBackend& io, const std::string& directory, const ChainKeys& keys) {
  const std::string path = join_path(directory, std::string(kRekeyFileName));
  auto bytes = read_small_file(io, path, kRekeyBytesMax);
  if (bytes.code() == ErrorCode::not_found) return std::optional<RekeyFile>();
  if (!bytes.ok()) return bytes.status();
  auto file = decode_rekey_file(bytes.value(), path, keys);
  if (!file.ok()) return file.status();
  return std::optional<RekeyFile>(std::move(file).value());
}

struct FileCloser {
  IoBackend& io;
  FileId file;
  ~FileCloser() { (void)io.close(file); }
};

// Walks the records of `segment` (up to its last, and the padding right after), calling
// `each(offset, decoded, bytes)` with each record's stored bytes, padding included.
template <class Each>
Status walk_records(IoBackend& io, const SegmentInfo& segment, std::uint32_t& salt, Each&& each) {
  const auto file = io.open(segment.path, OpenMode::read_only);
  if (!file.ok()) return file.status();
  const FileCloser closer{io, file.value()};
  const auto size = io.size(file.value());
  if (!size.ok()) return size.status();
  SegmentBytes bytes(io, file.value(), size.value(), kCopyChunkBytes);
  const auto decoded_header = decode_segment_header(bytes.from(0, kSegmentHeaderBytes), segment.path);
  if (!decoded_header.ok()) return decoded_header.status();
  salt = decoded_header.value().salt;
  // The header block, as it is: offset 0.
  if (Status done = each(0, DecodedRecord{}, bytes.from(0, kSegmentHeaderBytes).first(kSegmentHeaderBytes)); !done.ok()) {
    return done;
  }
  std::uint64_t offset = kSegmentHeaderBytes;
  while (offset + kRecordHeaderBytes <= size.value()) {
    const auto in = bytes.record_at(offset);
    if (!bytes.status().ok()) return bytes.status();
    const DecodedRecord record = decode_record(in, salt);
    if (record.status == RecordStatus::end_of_log) break;
    const bool past_end = record.status == RecordStatus::ok && record.header.type != kTypePadding &&
                          record.header.sequence >= segment.end_sequence;
    if (past_end) break;
    if (record.status != RecordStatus::ok) {
      return Status(ErrorCode::corruption, segment.path + " offset " + std::to_string(offset) +
                                               ": a record that does not decode (" + to_string(record.status) + ")");
    }
    if (Status done = each(offset, record, in.first(std::min(in.size(), record.padded_bytes))); !done.ok()) return done;
    offset += record.padded_bytes;
  }
  return {};
}

bool sealed_record(const DecodedRecord& record) {
  return record.header.type != kTypePadding && (record.header.flags & kFlagSealed) != 0;
}

// How many records of `segment` are stale (the resealer sees every sealed one).
Result<std::size_t> count_stale(IoBackend& io, const SegmentInfo& segment, RecordResealer& resealer) {
  std::size_t stale = 0;
  std::uint32_t salt = 0;
  const Status walked = walk_records(io, segment, salt, [&](std::uint64_t offset, const DecodedRecord& record, auto) {
    if (offset != 0 && sealed_record(record) && resealer.stale(record.header, record.payload)) ++stale;
    return Status();
  });
  if (!walked.ok()) return walked;
  return stale;
}

// Writes the copy of `segment` with its stale records resealed to `copy` (synced), and returns
// how many it resealed.
Result<std::size_t> write_copy(IoBackend& io, const SegmentInfo& segment, const std::string& copy,
                               RecordResealer& resealer) {
  if (Status removed = io.remove(copy); !removed.ok() && removed.code() != ErrorCode::not_found) return removed;
  const auto source = io.open(segment.path, OpenMode::read_only);
  if (!source.ok()) return source.status();
  const auto size = io.size(source.value());
  (void)io.close(source.value());
  if (!size.ok()) return size.status();
  const auto file = io.open(copy, OpenMode::create_exclusive);
  if (!file.ok()) return file.status();
  const FileCloser closer{io, file.value()};
  // The same size as the segment, zeros past its records (a tail's preallocated space too).
  if (Status allocated = io.allocate(file.value(), size.value()); !allocated.ok()) return allocated;
  std::vector<std::byte> buffer;
  buffer.reserve(kCopyChunkBytes + kRecordHeaderBytes);
  std::uint64_t buffer_at = 0;
  std::size_t resealed = 0;
  std::uint32_t salt = 0;
  const auto flush = [&]() -> Status {
    if (buffer.empty()) return {};
    Status written = io.write(file.value(), buffer_at, buffer);
    buffer_at += buffer.size();
    buffer.clear();
    return written;
  };
  const Status walked = walk_records(io, segment, salt, [&](std::uint64_t offset, const DecodedRecord& record,
                                                                     std::span<const std::byte> stored) -> Status {
    if (buffer.size() >= kCopyChunkBytes) {
      if (Status flushed = flush(); !flushed.ok()) return flushed;
    }
    ANNAL_ASSERT(buffer_at + buffer.size() == offset);
    const std::size_t at = buffer.size();
    buffer.insert(buffer.end(), stored.begin(), stored.end());
    if (offset == 0 || !sealed_record(record) || !resealer.stale(record.header, record.payload)) return {};
    const std::span<std::byte> out = std::span(buffer).subspan(at, stored.size());
    const auto associated = associated_data(record.header);
    Status sealed = resealer.reseal(record.header, associated, record.payload,
                                    out.subspan(kRecordHeaderBytes, record.payload.size()));
    if (!sealed.ok()) {
      return Status(sealed.code(), segment.path + " offset " + std::to_string(offset) + " sequence " +
                                       std::to_string(record.header.sequence) + ": " + sealed.message());
    }
    encode_record_around(record.header, record.payload.size(), salt, out);
    ++resealed;
    return {};
  });
  if (!walked.ok()) return walked;
  if (Status flushed = flush(); !flushed.ok()) return flushed;
  if (Status synced = io.sync(file.value()); !synced.ok()) return synced;
  return resealed;
}

std::string segment_name(const SegmentInfo& segment) {
  return segment.path.substr(segment.path.find_last_of('/') + 1) + " (sequences " + std::to_string(segment.base) +
         ".." + std::to_string(segment.end_sequence - 1) + ")";
}

const ChainEntry* find_entry(const std::vector<ChainEntry>& entries, std::uint64_t base) {
  const auto found = std::find_if(entries.begin(), entries.end(), [&](const ChainEntry& e) { return e.base == base; });
  return found == entries.end() ? nullptr : &*found;
}

// After a rekey cut short: each segment must be as CHAIN chained it (not rewritten yet) or as
// REKEY recorded its copy (rewritten), and CHAIN's tags must hold. The first that is neither is
// named.
Status check_cut_short(IoBackend& io, const std::vector<SegmentInfo>& segments, const ChainFile& chain,
                       const RekeyFile& rekey, const crypto::Digest& start, const ChainKeys& keys) {
  for (const ChainEntry& entry : chain.entries) {
    const std::string where = "CHAIN entry for sequences " + std::to_string(entry.base) + ".." + std::to_string(entry.last);
    const std::optional<crypto::Key> key = entry.key_version != 0 && keys ? keys(entry.key_version) : std::nullopt;
    if (entry.key_version != 0 && !key) {
      return Status(ErrorCode::invalid_argument,
                    where + ": tagged under the chain key of master key version " + std::to_string(entry.key_version) +
                        ", which the keys given lack: finish the rekey cut short with the key file it began with");
    }
    if (!key || !crypto::equal_digests(chain_entry_tag(entry, *key), entry.tag)) {
      return Status(ErrorCode::corruption, where + ": its tag is missing or wrong (written without the chain key)");
    }
  }
  // The link chain of the segments as they are now, from the link the cut-short rekey carried into
  // the first of them: its copy's, when retention removed a segment it had rewritten right before.
  crypto::Digest rekeyed = start;
  for (const ChainEntry& entry : rekey.entries) {
    if (!segments.empty() && entry.last + 1 == segments.front().base) rekeyed = entry.link;
  }
  for (std::size_t i = 0; i < segments.size(); ++i) {
    const SegmentInfo& segment = segments[i];
    const std::uint64_t last = segment.end_sequence - 1;
    auto now = segment_link(io, segment.path, rekeyed, last);
    if (!now.ok()) return now.status();
    rekeyed = now.value().link;
    const ChainEntry* recorded = find_entry(rekey.entries, segment.base);
    if (recorded && recorded->last == last && crypto::equal_digests(recorded->link, now.value().link)) continue;
    const ChainEntry* chained = find_entry(chain.entries, segment.base);
    if (chained == nullptr && i + 1 == segments.size()) continue;  // the tail: chained by nothing, as in verify_chain
    if (chained != nullptr && chained->last == last) {
      const crypto::Digest before = chained == chain.entries.data() ? crypto::Digest{} : (chained - 1)->link;
      auto old = segment_link(io, segment.path, before, last);
      if (!old.ok()) return old.status();
      if (crypto::equal_digests(old.value().link, chained->link)) continue;
    }
    return Status(ErrorCode::corruption, "chain breaks at " + segment_name(segment) +
                                             ": after a rekey cut short (REKEY), it matches neither its link in CHAIN "
                                             "nor the one REKEY recorded for its new copy: it was changed");
  }
  return {};
}

// The link before the first segment: the last entry of the segments retention removed, if any.
crypto::Digest start_link(const std::vector<SegmentInfo>& segments, const ChainFile& chain) {
  crypto::Digest start{};
  if (segments.empty()) return start;
  for (const ChainEntry& entry : chain.entries) {
    if (entry.last < segments.front().base) start = entry.link;
  }
  return start;
}

ChainEntry tagged(ChainEntry entry, const ChainKey& key) {
  entry.key_version = key.version;
  entry.tag = chain_entry_tag(entry, key.key);
  return entry;
}

bool same_entries(const std::vector<ChainEntry>& a, const std::vector<ChainEntry>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const ChainEntry& x, const ChainEntry& y) {
    return x.base == y.base && x.last == y.last && x.key_version == y.key_version && x.link == y.link && x.tag == y.tag;
  });
}

}  // namespace

Result<bool> needs_recovery(IoBackend& io, const std::string& directory) {
  auto scanned = scan_directory(io, directory, Options{}, /*verify=*/false);
  if (!scanned.ok()) return scanned.status();
  for (const SegmentReport& segment : scanned.value().report.segments) {
    if (segment.health != SegmentHealth::intact) return true;
  }
  auto chain = read_chain_file(io, directory);
  if (!chain.ok()) return chain.status();
  if (chain.value().damaged_at) return true;
  const std::vector<SegmentInfo>& segments = scanned.value().segments;
  for (std::size_t i = 0; i + 1 < segments.size(); ++i) {
    if (segments[i].end_sequence > segments[i].base && find_entry(chain.value().entries, segments[i].base) == nullptr) {
      return true;
    }
  }
  return false;
}

bool rekey_cut_short(IoBackend& io, const std::string& directory) {
  const auto file = io.open(join_path(directory, std::string(kRekeyFileName)), OpenMode::read_only);
  if (!file.ok()) return false;
  (void)io.close(file.value());
  return true;
}

namespace {

// Before anything is written: the chain checked as `annal verify --chain` does, or, after a rekey
// cut short, each segment against CHAIN or REKEY. Sets the report's head_before.
Status check_before_rewriting(IoBackend& io, const std::string& directory, const std::vector<SegmentInfo>& segments,
                              const ChainFile& chain, const std::optional<RekeyFile>& cut_short,
                              const crypto::Digest& start, const ResealOptions& options, ResealReport& report) {
  if (cut_short) {
    report.resumed = true;
    report.head_before = cut_short->head_before;
    if (chain.damaged_at) return Status(ErrorCode::corruption, directory + "/CHAIN: an entry is damaged");
    return check_cut_short(io, segments, chain, *cut_short, start, options.chain_keys);
  }
  auto verified = verify_chain(io, directory, ChainCheck{.keys = options.chain_keys, .expected = std::nullopt});
  if (!verified.ok()) return verified.status();
  if (!verified.value().sound()) {
    return Status(ErrorCode::corruption, "the chain does not verify, so nothing is rewritten over it: " +
                                             verified.value().problems.front());
  }
  // Every entry's tag checked, or the rewrite would tag anew, under the newest key, links nobody
  // vouched for: an entry marked with a version the key file lacks (a retired one, or one made up
  // by whoever recomputed the links after an edit) is refused, not laundered.
  if (verified.value().tags_checked != verified.value().entries) {
    return Status(ErrorCode::invalid_argument,
                  "CHAIN is tagged under a master key version the keys given lack (" + verified.value().notes.front() +
                      "), and rekey would tag every entry anew, vouching for what it could not check: give the key "
                      "file every master version the store was written under");
  }
  report.head_before = verified.value().head;
  return {};
}

// How many stale records each segment holds: all of them read before anything is written, so
// that the resealer has seen every sealed record (the open numbers in them) before it takes its own.
// What a rekey cut short left (each segment checked against CHAIN or REKEY just before) made
// whole before anything more is rewritten: CHAIN takes every segment's link as it is now, and a
// segment retention removed takes its copy's where REKEY recorded one, all tagged under `key`;
// then REKEY goes. A rekey under a newer master version, or after retention, starts from a chain
// that matches the files, rather than from REKEY entries it would have to drop or link from
// elsewhere. A crash in between leaves CHAIN matching the files and REKEY still there: settled again.
Status settle_cut_short(IoBackend& io, const std::string& directory, const std::vector<SegmentInfo>& segments,
                        const ChainFile& chain, const RekeyFile& rekey, const ChainKey& key) {
  std::vector<ChainEntry> entries;
  crypto::Digest previous{};
  for (const ChainEntry& entry : chain.entries) {
    if (segments.empty() || entry.last >= segments.front().base) break;
    const ChainEntry* copy = find_entry(rekey.entries, entry.base);
    ChainEntry settled = entry;
    if (copy != nullptr && copy->last == entry.last) settled.link = copy->link;
    previous = settled.link;
    entries.push_back(tagged(settled, key));
  }
  for (std::size_t i = 0; i + 1 < segments.size(); ++i) {  // the tail is chained when it is sealed
    const std::uint64_t last = segments[i].end_sequence - 1;
    auto link = segment_link(io, segments[i].path, previous, last);
    if (!link.ok()) return link.status();
    previous = link.value().link;
    entries.push_back(tagged(ChainEntry{.base = segments[i].base, .last = last, .link = previous}, key));
  }
  if (Status rewritten = rewrite_chain_file(io, directory, entries); !rewritten.ok()) return rewritten;
  const Status removed = io.remove(join_path(directory, std::string(kRekeyFileName)));
  if (!removed.ok() && removed.code() != ErrorCode::not_found) return removed;
  return io.sync_directory(directory);
}

Result<std::vector<std::size_t>> survey(IoBackend& io, const std::vector<SegmentInfo>& segments, RecordResealer& resealer) {
  std::vector<std::size_t> stale(segments.size());
  for (std::size_t i = 0; i < segments.size(); ++i) {
    auto counted = count_stale(io, segments[i], resealer);
    if (!counted.ok()) return counted.status();
    stale[i] = counted.value();
  }
  return stale;
}

// Rewrites one segment atomically and returns its new link after `previous`. Its copy's link is
// recorded in REKEY before the rename: after a crash the segment is the old one (CHAIN's link) or
// the copy (REKEY's), never something neither vouches for.
Result<ChainHead> rewrite_segment(IoBackend& io, const std::string& directory, const SegmentInfo& segment,
                                  const crypto::Digest& previous, RecordResealer& resealer, const ChainKey& key,
                                  RekeyFile& progress, ResealReport& report) {
  const std::uint64_t last = segment.end_sequence - 1;
  const std::string copy = segment.path + std::string(kCopySuffix);
  // A rekey stopped by an error takes the copy away (the next open would): until the rename the
  // segment is the old one, which CHAIN vouches for, and a REKEY entry naming the copy's link,
  // if saved, is one the next rekey settles as it does after a power cut at that point.
  const auto discard = [&](Status why) {
    (void)io.remove(copy);
    return why;
  };
  auto resealed = write_copy(io, segment, copy, resealer);
  if (!resealed.ok()) return discard(resealed.status());
  auto link = segment_link(io, copy, previous, last);
  if (!link.ok()) return discard(link.status());
  std::erase_if(progress.entries, [&](const ChainEntry& e) { return e.base >= segment.base; });
  progress.entries.push_back(ChainEntry{.base = segment.base, .last = last, .link = link.value().link});
  const auto bytes = encode_rekey_file(progress, key);
  const std::string rekey_path = join_path(directory, std::string(kRekeyFileName));
  if (Status saved = replace_small_file(io, rekey_path, bytes, OpenMode::create_exclusive); !saved.ok()) {
    return discard(saved);
  }
  if (Status renamed = io.rename(copy, segment.path); !renamed.ok()) return discard(renamed);
  if (Status synced = io.sync_directory(directory); !synced.ok()) return synced;
  ++report.segments_rewritten;
  report.records_resealed += resealed.value();
  return link;
}

}  // namespace

Result<ResealReport> reseal_journal(IoBackend& io, const std::string& directory, RecordResealer& resealer,
                                    const ResealOptions& options) {
  ANNAL_ASSERT(options.chain_key != nullptr);
  const ChainKey& key = *options.chain_key;
  auto chain = read_chain_file(io, directory);
  if (!chain.ok()) return chain.status();
  auto scanned = scan_directory(io, directory, Options{}, /*verify=*/false);
  if (!scanned.ok()) return scanned.status();
  std::vector<SegmentInfo> segments;
  for (SegmentInfo& segment : scanned.value().segments) {
    if (segment.end_sequence > segment.base) segments.push_back(std::move(segment));
  }
  auto cut_short = read_rekey_file(io, directory, options.chain_keys);
  if (!cut_short.ok()) return cut_short.status();
  ResealReport report;
  report.segments = segments.size();
  if (Status sound = check_before_rewriting(io, directory, segments, chain.value(), cut_short.value(),
                                            start_link(segments, chain.value()), options, report);
      !sound.ok()) {
    return sound;
  }
  auto stale = survey(io, segments, resealer);
  if (!stale.ok()) return stale.status();
  if (std::any_of(stale.value().begin(), stale.value().end(), [](std::size_t n) { return n > 0; })) {
    if (Status ready = resealer.ready(); !ready.ok()) return ready;
    if (options.before_first_write) {
      if (Status began = options.before_first_write(); !began.ok()) return began;
    }
  }
  if (cut_short.value()) {
    if (Status settled = settle_cut_short(io, directory, segments, chain.value(), *cut_short.value(), key);
        !settled.ok()) {
      return settled;
    }
    chain = read_chain_file(io, directory);
    if (!chain.ok()) return chain.status();
  }
  const crypto::Digest start = start_link(segments, chain.value());
  RekeyFile progress;
  progress.head_before = report.head_before;
  // Retention's entries keep their links, tagged anew; every segment's is recomputed in order.
  std::vector<ChainEntry> entries;
  for (const ChainEntry& entry : chain.value().entries) {
    if (segments.empty() || entry.last < segments.front().base) {
      if (entry.key_version != key.version) ++report.entries_retagged;
      entries.push_back(tagged(entry, key));
    }
  }
  crypto::Digest previous = start;
  for (std::size_t i = 0; i < segments.size(); ++i) {
    const SegmentInfo& segment = segments[i];
    const std::uint64_t last = segment.end_sequence - 1;
    auto link = stale.value()[i] > 0
                    ? rewrite_segment(io, directory, segment, previous, resealer, key, progress, report)
                    : segment_link(io, segment.path, previous, last);
    if (!link.ok()) return Status(link.code(), "rekey " + segment_name(segment) + ": " + link.status().message());
    previous = link.value().link;
    if (i + 1 == segments.size()) {
      report.head_after = link.value();
      break;  // the tail: chained when it is sealed
    }
    const ChainEntry* old = find_entry(chain.value().entries, segment.base);
    if (old != nullptr && old->key_version != key.version && old->link == link.value().link) ++report.entries_retagged;
    entries.push_back(tagged(ChainEntry{.base = segment.base, .last = last, .link = link.value().link}, key));
  }
  if (!same_entries(entries, chain.value().entries)) {
    if (Status rewritten = rewrite_chain_file(io, directory, entries); !rewritten.ok()) return rewritten;
    report.chain_rewritten = true;
  }
  if (report.resumed || report.segments_rewritten > 0) {
    const Status removed = io.remove(join_path(directory, std::string(kRekeyFileName)));
    if (!removed.ok() && removed.code() != ErrorCode::not_found) return removed;
    if (Status synced = io.sync_directory(directory); !synced.ok()) return synced;
  }
  return report;
}

}  // namespace annal::journal
