// GatedBackend: another backend whose reap() can be held shut, for tests that need the writer
// stopped with its writes in flight (appenders then run out of buffers and wait) at a moment the
// test chooses. Everything else goes straight through.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>

#include "annal/journal/io_backend.h"

namespace annal::journal::test {

class GatedBackend final : public IoBackend {
 public:
  explicit GatedBackend(std::shared_ptr<IoBackend> inner) : inner_(std::move(inner)) {}

  void hold() {
    std::lock_guard lock(mutex_);
    held_ = true;
  }
  void release() {
    std::lock_guard lock(mutex_);
    held_ = false;
    changed_.notify_all();
  }
  // Waits until the writer is stopped at the gate (false after `timeout`: a hang guard).
  bool wait_until_stopped(std::chrono::seconds timeout = std::chrono::seconds(60)) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return stopped_ > 0; });
  }

  Result<std::size_t> reap(std::span<Completion> out, std::size_t min_complete) override {
    {
      std::unique_lock lock(mutex_);
      ++stopped_;
      changed_.notify_all();
      changed_.wait(lock, [&] { return !held_; });
      --stopped_;
    }
    return inner_->reap(out, min_complete);
  }

  Result<FileId> open(const std::string& path, OpenMode mode) override { return inner_->open(path, mode); }
  Status close(FileId file) override { return inner_->close(file); }
  Result<std::uint64_t> size(FileId file) override { return inner_->size(file); }
  Result<std::size_t> read(FileId file, std::uint64_t offset, std::span<std::byte> out) override {
    return inner_->read(file, offset, out);
  }
  Status write(FileId file, std::uint64_t offset, std::span<const std::byte> data) override {
    return inner_->write(file, offset, data);
  }
  Status sync(FileId file) override { return inner_->sync(file); }
  Status allocate(FileId file, std::uint64_t bytes) override { return inner_->allocate(file, bytes); }
  Status truncate(FileId file, std::uint64_t bytes) override { return inner_->truncate(file, bytes); }
  Status sync_directory(const std::string& directory) override { return inner_->sync_directory(directory); }
  Status rename(const std::string& from, const std::string& to) override { return inner_->rename(from, to); }
  Status remove(const std::string& path) override { return inner_->remove(path); }
  Result<std::vector<std::string>> list(const std::string& directory) override { return inner_->list(directory); }
  Result<FileId> lock_directory(const std::string& directory) override { return inner_->lock_directory(directory); }
  Result<bool> directory_locked(const std::string& directory) override {
    return inner_->directory_locked(directory);
  }
  void queue_write(FileId file, std::uint64_t offset, std::span<const std::byte> data, std::uint64_t tag) override {
    inner_->queue_write(file, offset, data, tag);
  }
  void queue_sync(FileId file, std::uint64_t tag) override { inner_->queue_sync(file, tag); }
  Status submit() override { return inner_->submit(); }
  void wake() override { inner_->wake(); }

 private:
  std::shared_ptr<IoBackend> inner_;
  std::mutex mutex_;
  std::condition_variable changed_;
  bool held_ = false;
  int stopped_ = 0;
};

}  // namespace annal::journal::test
