// Projection's default digest.
#include "annal/engine/projection.h"

#include <isa-l/crc64.h>

namespace annal::engine {

// CRC-64 (ECMA-182, reflected): 64 bits so that two different states of a large read model are
// told apart with no practical chance of a collision; computed with ISA-L, already the journal's.
std::optional<std::uint64_t> Projection::digest() const {
  if (schema() == 0) return std::nullopt;
  const std::vector<std::byte> state = snapshot();
  return crc64_ecma_refl(0, reinterpret_cast<const std::uint8_t*>(state.data()), state.size());
}

}  // namespace annal::engine
