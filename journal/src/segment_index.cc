#include "segment_index.h"

#include <algorithm>
#include <cstring>

#include "annal/base/little_endian.h"
#include "annal/journal/crc32c.h"

namespace annal::journal {

void SegmentIndex::drop_from(std::uint64_t sequence) {
  const auto first_dropped =
      std::lower_bound(entries_.begin(), entries_.end(), sequence,
                       [](const IndexEntry& entry, std::uint64_t s) { return entry.sequence < s; });
  entries_.erase(first_dropped, entries_.end());
}

std::optional<IndexEntry> SegmentIndex::floor(std::uint64_t sequence) const noexcept {
  const auto after =
      std::upper_bound(entries_.begin(), entries_.end(), sequence,
                       [](std::uint64_t s, const IndexEntry& entry) { return s < entry.sequence; });
  if (after == entries_.begin()) return std::nullopt;
  return *std::prev(after);
}

namespace {

constexpr char kIndexMagic[8] = {'A', 'N', 'N', 'A', 'L', 'I', 'D', 'X'};
constexpr std::uint32_t kIndexVersion = 1;
constexpr std::size_t kIndexHeaderBytes = 56;


}  // namespace

std::string sealed_index_path(const std::string& segment_path) {
  ANNAL_ASSERT(segment_path.ends_with(".log"));
  return segment_path.substr(0, segment_path.size() - 4) + ".idx";
}

Status write_sealed_index(IoBackend& io, const std::string& segment_path, const SealedSegment& sealed) {
  const auto entries = sealed.index.entries();
  std::vector<std::byte> out(kIndexHeaderBytes + entries.size() * sizeof(IndexEntry) + 4);
  std::memcpy(out.data(), kIndexMagic, sizeof(kIndexMagic));
  store_le<std::uint32_t>(out, 8, kIndexVersion);
  store_le<std::uint32_t>(out, 12, sealed.salt);
  store_le<std::uint64_t>(out, 16, sealed.base);
  store_le<std::uint64_t>(out, 24, sealed.end_sequence);
  store_le<std::uint64_t>(out, 32, sealed.end_offset);
  store_le<std::uint64_t>(out, 40, sealed.interval);
  store_le<std::uint64_t>(out, 48, entries.size());
  for (std::size_t i = 0; i < entries.size(); ++i) {
    store_le<std::uint64_t>(out, kIndexHeaderBytes + i * 16, entries[i].sequence);
    store_le<std::uint64_t>(out, kIndexHeaderBytes + i * 16 + 8, entries[i].offset);
  }
  const std::size_t covered = out.size() - 4;
  store_le<std::uint32_t>(out, covered, crc32c_extend(0, std::span(out).first(covered)));
  const std::string path = sealed_index_path(segment_path);
  const std::string temp = path + ".tmp";
  (void)io.remove(temp);
  const auto file = io.open(temp, OpenMode::create_exclusive);
  if (!file.ok()) return file.status();
  const Status written = io.write(file.value(), 0, out);
  const Status closed = io.close(file.value());
  if (!written.ok() || !closed.ok()) {
    (void)io.remove(temp);
    return written.ok() ? closed : written;
  }
  return io.rename(temp, path);
}

Result<SealedSegment> read_sealed_index(IoBackend& io, const std::string& segment_path) {
  const std::string path = sealed_index_path(segment_path);
  const auto file = io.open(path, OpenMode::read_only);
  if (!file.ok()) return Status(ErrorCode::not_found, path + ": no index file");
  const auto size = io.size(file.value());
  std::vector<std::byte> in(size.ok() ? static_cast<std::size_t>(size.value()) : 0);
  const auto got = size.ok() ? io.read(file.value(), 0, in) : Result<std::size_t>(size.status());
  (void)io.close(file.value());
  if (!got.ok()) return got.status();
  const auto bad = [&](const char* what) { return Status(ErrorCode::corruption, path + ": " + what); };
  if (got.value() != in.size() || in.size() < kIndexHeaderBytes + 4) return bad("too short");
  if (std::memcmp(in.data(), kIndexMagic, sizeof(kIndexMagic)) != 0 || load_le<std::uint32_t>(in, 8) != kIndexVersion) {
    return bad("not an index file of this version");
  }
  const auto count = load_le<std::uint64_t>(in, 48);
  if (count > (in.size() - kIndexHeaderBytes - 4) / 16 || in.size() != kIndexHeaderBytes + count * 16 + 4) {
    return bad("length does not match its entry count");
  }
  const std::size_t covered = in.size() - 4;
  if (load_le<std::uint32_t>(in, covered) != crc32c_extend(0, std::span(in).first(covered))) return bad("checksum mismatch");
  SealedSegment out;
  out.salt = load_le<std::uint32_t>(in, 12);
  out.base = load_le<std::uint64_t>(in, 16);
  out.end_sequence = load_le<std::uint64_t>(in, 24);
  out.end_offset = load_le<std::uint64_t>(in, 32);
  out.interval = load_le<std::uint64_t>(in, 40);
  out.index.reserve(static_cast<std::size_t>(count));
  for (std::uint64_t i = 0; i < count; ++i) {
    const IndexEntry entry{load_le<std::uint64_t>(in, kIndexHeaderBytes + i * 16), load_le<std::uint64_t>(in, kIndexHeaderBytes + i * 16 + 8)};
    const auto previous = out.index.entries();
    // The same order SegmentIndex::add asserts, checked here as data.
    if (entry.offset < kSegmentHeaderBytes || entry.offset >= out.end_offset || entry.sequence < out.base ||
        entry.sequence >= out.end_sequence ||
        (!previous.empty() && (entry.sequence <= previous.back().sequence || entry.offset <= previous.back().offset))) {
      return bad("entries out of order or outside the segment");
    }
    out.index.add(entry);
  }
  if (out.end_sequence < out.base || out.end_offset < kSegmentHeaderBytes) return bad("impossible end");
  return out;
}

}  // namespace annal::journal
