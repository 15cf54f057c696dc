// ForwardingBackend: an IoBackend that passes every call to another, for test and benchmark
// backends that change one or two calls (GatedBackend holds reap(), HookedBackend runs a hook
// before open(), bench's SlowSyncBackend makes every fdatasync slower).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "annal/journal/io_backend.h"

namespace annal::journal::test {

class ForwardingBackend : public IoBackend {
 public:
  explicit ForwardingBackend(std::shared_ptr<IoBackend> inner) : inner_(std::move(inner)) {}

  Result<FileId> open(const std::string& path, OpenMode mode) override { return inner_->open(path, mode); }
  Status close(FileId file) override { return inner_->close(file); }
  Result<std::uint64_t> size(FileId file) override { return inner_->size(file); }
  Result<std::size_t> read(FileId file, std::uint64_t offset, std::span<std::byte> out) override {
    return inner_->read(file, offset, out);
  }
  void read_ahead(FileId file, std::uint64_t offset, std::uint64_t bytes) override {
    inner_->read_ahead(file, offset, bytes);
  }
  Status write_back(FileId file, std::uint64_t offset, std::uint64_t bytes) override {
    return inner_->write_back(file, offset, bytes);
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
  Status check_private(const std::string& path) override { return inner_->check_private(path); }
  Result<bool> directory_locked(const std::string& directory) override {
    return inner_->directory_locked(directory);
  }
  void queue_write(FileId file, std::uint64_t offset, std::span<const std::byte> data, std::uint64_t tag) override {
    inner_->queue_write(file, offset, data, tag);
  }
  Status register_buffers(std::span<const std::span<std::byte>> buffers) override {
    return inner_->register_buffers(buffers);
  }
  void unregister_buffers() override { inner_->unregister_buffers(); }
  void queue_sync(FileId file, std::uint64_t tag) override { inner_->queue_sync(file, tag); }
  Status submit() override { return inner_->submit(); }
  Result<std::size_t> reap(std::span<Completion> out, std::size_t min_complete) override {
    return inner_->reap(out, min_complete);
  }
  void wake() override { inner_->wake(); }

 private:
  std::shared_ptr<IoBackend> inner_;
};

}  // namespace annal::journal::test
