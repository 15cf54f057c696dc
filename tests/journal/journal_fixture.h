// What the journal's tests share: a scratch directory, recognisable payloads, the list of I/O
// backends for typed tests, and a fixture that opens a journal on each.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "annal/journal/journal.h"
#include "fault_backend.h"
#include "posix_backend.h"
#include "temp_directory.h"
#include "uring_backend.h"

namespace annal::journal::test {

// A deadline for waits that should end at once: far enough never to fire on a loaded machine,
// near enough that a lost wake-up fails the test instead of hanging it.
inline Journal::Clock::time_point soon() { return Journal::Clock::now() + std::chrono::seconds(30); }

// Bytes that depend on (stream, version), so a record read back proves it is the one written.
inline std::vector<std::byte> payload_for(std::uint64_t stream, std::uint64_t version,
                                          std::size_t bytes = 40) {
  std::vector<std::byte> out(bytes);
  for (std::size_t i = 0; i < bytes; ++i) {
    out[i] = static_cast<std::byte>((stream * 31 + version * 7 + i) & 0xFF);
  }
  return out;
}

using annal::test::TempDirectory;

// A journal in a fresh directory on backend `Backend`. The FaultBackend is kept (fault_) so a test
// can reopen on the same in-memory files.
template <class Backend>
class JournalFixture : public ::testing::Test {
 protected:
  std::shared_ptr<IoBackend> backend() {
    if constexpr (std::is_same_v<Backend, FaultBackend>) {
      if (!fault_) fault_ = std::make_shared<FaultBackend>(1);
      return fault_;
    } else if constexpr (std::is_same_v<Backend, UringBackend>) {
      auto uring = UringBackend::create(64);
      ANNAL_ASSERT(uring.ok());
      return std::shared_ptr<IoBackend>(std::move(uring).value());
    } else {
      return std::make_shared<PosixBackend>();
    }
  }
  Result<std::unique_ptr<Journal>> open(Options options = {}) {
    return Journal::open(dir_.path(), options, backend());
  }
  TempDirectory dir_;
  std::shared_ptr<FaultBackend> fault_;
};

using Backends = ::testing::Types<PosixBackend, UringBackend, FaultBackend>;
struct BackendName {
  template <class B>
  static std::string GetName(int) {
    if (std::is_same_v<B, FaultBackend>) return "Fault";
    return std::is_same_v<B, UringBackend> ? "Uring" : "Posix";
  }
};

}  // namespace annal::journal::test
