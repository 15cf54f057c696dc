// eventually: polls a condition until it holds, for tests that cannot be told when something
// happens on another thread. The limit is a hang guard, a minute by default, far beyond any
// healthy run on a slow machine (ASan, a loaded CI box): never a judgement on speed.
#pragma once

#include <chrono>
#include <thread>

namespace annal::test {

template <typename Condition>
bool eventually(Condition condition, std::chrono::milliseconds limit = std::chrono::seconds(60)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (condition()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace annal::test
