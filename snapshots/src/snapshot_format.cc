#include "annal/snapshots/snapshot_format.h"

#include <charconv>
#include <cstring>

#include "annal/base/little_endian.h"
#include "annal/journal/crc32c.h"

namespace annal::snapshots {
namespace {

constexpr std::string_view kPrefix = "snapshot-";
constexpr std::string_view kSuffix = ".snap";
constexpr std::size_t kSequenceDigits = 20;

Status damaged(std::string_view where, const std::string& what) {
  return Status(ErrorCode::corruption, "snapshot " + std::string(where) + ": " + what);
}

}  // namespace

bool valid_projection_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > kProjectionNameBytesMax) return false;
  for (const char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

std::string snapshot_file_name(std::string_view name, std::uint64_t sequence) {
  ANNAL_ASSERT(valid_projection_name(name));
  std::string digits = std::to_string(sequence);
  return std::string(kPrefix) + std::string(name) + "-" + std::string(kSequenceDigits - digits.size(), '0') +
         digits + std::string(kSuffix);
}

std::optional<SnapshotFileName> parse_snapshot_file_name(std::string_view file) {
  if (file.size() < kPrefix.size() + 2 + kSequenceDigits + kSuffix.size()) return std::nullopt;
  if (!file.starts_with(kPrefix) || !file.ends_with(kSuffix)) return std::nullopt;
  const std::size_t digits_at = file.size() - kSuffix.size() - kSequenceDigits;
  const std::string_view name = file.substr(kPrefix.size(), digits_at - 1 - kPrefix.size());
  if (file[digits_at - 1] != '-' || !valid_projection_name(name)) return std::nullopt;
  std::uint64_t sequence = 0;
  const char* first = file.data() + digits_at;
  const auto parsed = std::from_chars(first, first + kSequenceDigits, sequence);
  if (parsed.ec != std::errc() || parsed.ptr != first + kSequenceDigits) return std::nullopt;
  return SnapshotFileName{name, sequence};
}

std::optional<std::uint64_t> parse_snapshot_file_name(std::string_view file, std::string_view name) {
  const auto parsed = parse_snapshot_file_name(file);
  if (!parsed || parsed->name != name) return std::nullopt;
  return parsed->sequence;
}

std::size_t snapshot_header_bytes(std::string_view name) noexcept { return kSnapshotFieldsBytes + name.size() + 4; }

std::vector<std::byte> encode_snapshot_header(const SnapshotHeader& header, std::span<const std::byte> state) {
  ANNAL_ASSERT(valid_projection_name(header.name));
  ANNAL_ASSERT(state.size() == header.state_bytes && header.state_bytes <= kSnapshotStateBytesMax);
  std::vector<std::byte> out(snapshot_header_bytes(header.name));
  std::memcpy(out.data(), kSnapshotMagic, sizeof(kSnapshotMagic));
  store_le<std::uint32_t>(out, 8, header.sealed ? kSealedSnapshotFormatVersion : kSnapshotFormatVersion);
  store_le<std::uint32_t>(out, 12, header.schema);
  store_le<std::uint64_t>(out, 16, header.sequence);
  store_le<std::uint64_t>(out, 24, header.created_ns);
  store_le<std::uint64_t>(out, 32, header.state_bytes);
  store_le<std::uint32_t>(out, 40, journal::crc32c_extend(0, state));
  store_le<std::uint32_t>(out, 44, static_cast<std::uint32_t>(header.name.size()));
  std::memcpy(out.data() + kSnapshotFieldsBytes, header.name.data(), header.name.size());
  const std::size_t covered = kSnapshotFieldsBytes + header.name.size();
  store_le<std::uint32_t>(out, covered, journal::crc32c_extend(0, std::span(out).first(covered)));
  return out;
}

Result<SnapshotHeader> decode_snapshot_header(std::span<const std::byte> in, std::string_view where,
                                              std::size_t& header_bytes) {
  if (in.size() < kSnapshotFieldsBytes) return damaged(where, "shorter than its header");
  if (std::memcmp(in.data(), kSnapshotMagic, sizeof(kSnapshotMagic)) != 0) return damaged(where, "bad magic");
  const auto version = load_le<std::uint32_t>(in, 8);
  if (version != kSnapshotFormatVersion && version != kSealedSnapshotFormatVersion) {
    return damaged(where, "format version " + std::to_string(version) + " is neither " +
                              std::to_string(kSnapshotFormatVersion) + " nor " +
                              std::to_string(kSealedSnapshotFormatVersion));
  }
  const auto name_bytes = load_le<std::uint32_t>(in, 44);
  if (name_bytes == 0 || name_bytes > kProjectionNameBytesMax) return damaged(where, "impossible name length");
  const std::size_t covered = kSnapshotFieldsBytes + name_bytes;
  if (in.size() < covered + 4) return damaged(where, "shorter than its header");
  if (load_le<std::uint32_t>(in, covered) != journal::crc32c_extend(0, in.first(covered))) {
    return damaged(where, "header checksum mismatch");
  }
  SnapshotHeader header;
  header.schema = load_le<std::uint32_t>(in, 12);
  header.sequence = load_le<std::uint64_t>(in, 16);
  header.created_ns = load_le<std::uint64_t>(in, 24);
  header.state_bytes = load_le<std::uint64_t>(in, 32);
  header.state_crc = load_le<std::uint32_t>(in, 40);
  header.sealed = version == kSealedSnapshotFormatVersion;
  header.name.assign(reinterpret_cast<const char*>(in.data() + kSnapshotFieldsBytes), name_bytes);
  if (header.state_bytes > kSnapshotStateBytesMax) return damaged(where, "impossible state length");
  header_bytes = covered + 4;
  return header;
}

std::vector<std::byte> snapshot_associated_data(std::string_view name, std::uint32_t schema, std::uint64_t sequence) {
  std::vector<std::byte> out(sizeof(kSnapshotMagic) + 4 + 4 + 8 + name.size());
  std::memcpy(out.data(), kSnapshotMagic, sizeof(kSnapshotMagic));
  store_le<std::uint32_t>(out, 8, kSealedSnapshotFormatVersion);
  store_le<std::uint32_t>(out, 12, schema);
  store_le<std::uint64_t>(out, 16, sequence);
  std::memcpy(out.data() + 24, name.data(), name.size());
  return out;
}

}  // namespace annal::snapshots
