// PosixBackend: IoBackend on plain system calls. The asynchronous calls run synchronously, in
// queue order, at submit(). It is the reference the io_uring backend is checked against, and
// what the journal falls back to where io_uring is unavailable.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "inline_queue.h"
#include "io_backend.h"

namespace annal::journal {

class PosixBackend final : public IoBackend {
 public:
  PosixBackend() = default;
  ~PosixBackend() override;
  PosixBackend(const PosixBackend&) = delete;
  PosixBackend& operator=(const PosixBackend&) = delete;

  Result<FileId> open(const std::string& path, OpenMode mode) override;
  Status close(FileId file) override;
  Result<std::uint64_t> size(FileId file) override;
  Result<std::size_t> read(FileId file, std::uint64_t offset, std::span<std::byte> out) override;
  Status write(FileId file, std::uint64_t offset, std::span<const std::byte> data) override;
  Status sync(FileId file) override;
  Status allocate(FileId file, std::uint64_t bytes) override;
  Status truncate(FileId file, std::uint64_t bytes) override;
  Status sync_directory(const std::string& directory) override;
  Status rename(const std::string& from, const std::string& to) override;
  Status remove(const std::string& path) override;
  Result<std::vector<std::string>> list(const std::string& directory) override;
  Result<FileId> lock_directory(const std::string& directory) override;

  void queue_write(FileId file, std::uint64_t offset, std::span<const std::byte> data,
                   std::uint64_t tag) override;
  void queue_sync(FileId file, std::uint64_t tag) override;
  Status submit() override;
  Result<std::size_t> reap(std::span<Completion> out, std::size_t min_complete) override;

 private:

  // 0 or an errno; `failed_at` is the offset the failing write had reached.
  int write_all(FileId file, std::uint64_t offset, std::span<const std::byte> data,
                std::uint64_t& failed_at);
  int sync_data(FileId file);
  [[nodiscard]] const std::string& path_of(FileId file) const;
  [[nodiscard]] Status errno_status(int error, const std::string& what) const;

  std::unordered_map<FileId, std::string> paths_;  // for error messages
  InlineQueue queue_;
};

}  // namespace annal::journal
