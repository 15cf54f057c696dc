// CRC32C (Castagnoli), the checksum of every journal record and segment header, and of snapshot
// files. Chosen for bench/checksum_bench.cc's figures and because it is the storage industry's
// checksum (iSCSI, ext4, LevelDB, RocksDB): guaranteed to catch every burst error up to 32 bits,
// computed in hardware.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace annal::journal {

// CRC32C of `data` continuing from `crc` (the CRC of what came before, or a seed such as a
// segment's salt). crc32c_extend(0, "123456789") == 0xE3069283.
[[nodiscard]] std::uint32_t crc32c_extend(std::uint32_t crc, std::span<const std::byte> data) noexcept;

}  // namespace annal::journal
