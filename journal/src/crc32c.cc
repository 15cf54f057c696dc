#include "annal/journal/crc32c.h"

#include <isa-l/crc.h>

#include <climits>

#include "annal/base/assert.h"

namespace annal::journal {

std::uint32_t crc32c_extend(std::uint32_t crc, std::span<const std::byte> data) noexcept {
  // ISA-L works on the raw register: the standard CRC32C inverts on the way in and out. Its length
  // is an int, so very large buffers go in pieces (records are capped far below that anyway).
  std::uint32_t state = ~crc;
  while (!data.empty()) {
    const std::size_t piece = data.size() < std::size_t{INT_MAX} ? data.size() : std::size_t{INT_MAX};
    // crc32_iscsi takes a non-const pointer but only reads the buffer.
    auto* bytes = const_cast<unsigned char*>(reinterpret_cast<const unsigned char*>(data.data()));
    state = crc32_iscsi(bytes, static_cast<int>(piece), state);
    data = data.subspan(piece);
  }
  return ~state;
}

}  // namespace annal::journal
