#include "annal/ringbuf/detail/futex.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <ctime>

#include "annal/base/assert.h"

namespace annal::ringbuf::detail {

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t),
              "the futex word must be the atomic's own storage");
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);

namespace {

std::uint32_t* futex_address(const std::atomic<std::uint32_t>& word) {
  // The kernel only reads the word; the cast drops const for the syscall's signature.
  return const_cast<std::uint32_t*>(reinterpret_cast<const std::uint32_t*>(&word));
}

}  // namespace

void futex_wait(const std::atomic<std::uint32_t>& word, std::uint32_t expected,
                std::chrono::steady_clock::time_point deadline) noexcept {
  using std::chrono::duration_cast;
  using std::chrono::nanoseconds;
  using std::chrono::seconds;

  timespec absolute{};
  const timespec* timeout = nullptr;
  if (deadline != std::chrono::steady_clock::time_point::max()) {
    const auto since_epoch = deadline.time_since_epoch();
    const auto whole = duration_cast<seconds>(since_epoch);
    absolute.tv_sec = static_cast<time_t>(whole.count());
    absolute.tv_nsec = static_cast<long>(duration_cast<nanoseconds>(since_epoch - whole).count());
    timeout = &absolute;
  }
  // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline, so a wait interrupted by a
  // signal or a spurious wake-up never stretches past the caller's deadline.
  const long rc = syscall(SYS_futex, futex_address(word), FUTEX_WAIT_BITSET_PRIVATE, expected,
                          timeout, nullptr, FUTEX_BITSET_MATCH_ANY);
  // EAGAIN: the word changed before we slept; EINTR: a signal; ETIMEDOUT: the deadline. All three
  // send the caller back to re-check its condition. Anything else is a programming error.
  ANNAL_ASSERT(rc == 0 || errno == EAGAIN || errno == EINTR || errno == ETIMEDOUT);
}

void futex_wake_all(const std::atomic<std::uint32_t>& word) noexcept {
  const long rc = syscall(SYS_futex, futex_address(word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr,
                          nullptr, 0);
  ANNAL_ASSERT(rc >= 0);
}

}  // namespace annal::ringbuf::detail
