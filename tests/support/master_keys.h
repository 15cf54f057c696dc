// MasterKeys: the tests' KeyProvider, master keys by version held in memory, the newest current.
// Thread-safe, as the engine asks from any of its threads.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "annal/crypto/key.h"

namespace annal::test {

class MasterKeys final : public crypto::KeyProvider {
 public:
  // Version 1, random.
  MasterKeys() { add(1); }

  void add(std::uint32_t version) {
    std::lock_guard lock(mutex_);
    keys_.insert_or_assign(version, crypto::Key::random().value());
  }
  void drop(std::uint32_t version) {
    std::lock_guard lock(mutex_);
    keys_.erase(version);
  }
  std::uint32_t current_version() override {
    std::lock_guard lock(mutex_);
    return keys_.rbegin()->first;
  }
  Result<crypto::Key> master_key(std::uint32_t version) override {
    std::lock_guard lock(mutex_);
    const auto found = keys_.find(version);
    if (found == keys_.end()) return Status(ErrorCode::not_found, "no master key version " + std::to_string(version));
    return found->second.clone();
  }

 private:
  std::mutex mutex_;
  std::map<std::uint32_t, crypto::Key> keys_;
};

}  // namespace annal::test
