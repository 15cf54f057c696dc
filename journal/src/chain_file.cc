#include "chain_file.h"

#include "annal/journal/small_file.h"
#include "recovery.h"

namespace annal::journal {

bool entry_follows(const ChainEntry& entry, std::uint64_t previous_last, std::uint64_t first_base) noexcept {
  return entry.base == previous_last + 1 || (entry.base == first_base && previous_last < first_base);
}

Result<ChainFile> read_chain_file(IoBackend& io, const std::string& directory) {
  const std::string path = join_path(directory, std::string(kChainFileName));
  auto file = io.open(path, OpenMode::read_only);
  if (file.code() == ErrorCode::not_found) return ChainFile{};
  if (!file.ok()) return file.status();
  auto bytes = read_whole(io, file.value());
  (void)io.close(file.value());
  if (!bytes.ok()) return bytes.status();
  ChainFile chain;
  const std::span<const std::byte> all(bytes.value());
  for (std::size_t at = 0; at < all.size(); at += kChainEntryBytes) {
    const auto entry = decode_chain_entry(all.subspan(at));
    if (!entry) {
      chain.damaged_at = at / kChainEntryBytes;
      chain.damaged_entry_incomplete = all.size() - at < kChainEntryBytes;
      break;
    }
    chain.entries.push_back(*entry);
  }
  return chain;
}

Status rewrite_chain_file(IoBackend& io, const std::string& directory, const std::vector<ChainEntry>& entries) {
  std::vector<std::byte> bytes(entries.size() * kChainEntryBytes);
  for (std::size_t i = 0; i < entries.size(); ++i) {
    encode_chain_entry(entries[i], std::span(bytes).subspan(i * kChainEntryBytes).first<kChainEntryBytes>());
  }
  return replace_small_file(io, join_path(directory, std::string(kChainFileName)), bytes, OpenMode::create_exclusive);
}

}  // namespace annal::journal
