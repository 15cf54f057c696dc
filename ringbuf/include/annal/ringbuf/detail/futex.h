// Linux futex calls for BlockingWaitStrategy, compiled in src/futex.cc so users' translation units do
// not pull in syscall headers.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace annal::ringbuf::detail {

// Sleeps while *word == expected, until woken or until `deadline` (steady_clock, which is
// CLOCK_MONOTONIC on Linux). time_point::max() means no deadline. Spurious returns are allowed.
void futex_wait(const std::atomic<std::uint32_t>& word, std::uint32_t expected,
                std::chrono::steady_clock::time_point deadline) noexcept;

// Wakes every thread sleeping on `word`.
void futex_wake_all(const std::atomic<std::uint32_t>& word) noexcept;

}  // namespace annal::ringbuf::detail
