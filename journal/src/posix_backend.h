// PosixFiles: the synchronous half of IoBackend on plain system calls, shared by PosixBackend and
// UringBackend. PosixBackend runs the asynchronous calls synchronously too, in queue order, at
// submit(): it is the reference the io_uring backend is checked against.
#pragma once

#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "inline_queue.h"
#include "annal/journal/io_backend.h"

namespace annal::journal {

class PosixFiles : public IoBackend {
 public:
  explicit PosixFiles(std::uint32_t file_mode) : file_mode_(file_mode) {}
  ~PosixFiles() override;
  PosixFiles(const PosixFiles&) = delete;
  PosixFiles& operator=(const PosixFiles&) = delete;

  Result<FileId> open(const std::string& path, OpenMode mode) override;
  Status close(FileId file) override;
  Result<std::uint64_t> size(FileId file) override;
  Result<std::size_t> read(FileId file, std::uint64_t offset, std::span<std::byte> out) override;
  void read_ahead(FileId file, std::uint64_t offset, std::uint64_t bytes) override;
  Status write_back(FileId file, std::uint64_t offset, std::uint64_t bytes) override;
  Status write(FileId file, std::uint64_t offset, std::span<const std::byte> data) override;
  Status sync(FileId file) override;
  Status allocate(FileId file, std::uint64_t bytes) override;
  Status truncate(FileId file, std::uint64_t bytes) override;
  Status sync_directory(const std::string& directory) override;
  Status rename(const std::string& from, const std::string& to) override;
  Status remove(const std::string& path) override;
  Result<std::vector<std::string>> list(const std::string& directory) override;
  Result<FileId> lock_directory(const std::string& directory) override;
  Result<bool> directory_locked(const std::string& directory) override;
  Status check_private(const std::string& path) override;

 protected:
  // 0 or an errno; `failed_at` is the offset the failing write had reached.
  int write_all(FileId file, std::uint64_t offset, std::span<const std::byte> data,
                std::uint64_t& failed_at);
  int sync_data(FileId file);

 private:
  [[nodiscard]] std::string path_of(FileId file) const;
  [[nodiscard]] Status errno_status(int error, const std::string& what) const;
  void remember(FileId file, const std::string& path);

  // For error messages. The writer, the segment preparer and readers open and close files from
  // their own threads, hence the lock; it is never held across a system call.
  mutable std::mutex paths_mutex_;
  std::unordered_map<FileId, std::string> paths_;
  const std::uint32_t file_mode_;  // of the files it creates
};

class PosixBackend final : public PosixFiles {
 public:
  explicit PosixBackend(std::uint32_t file_mode = kPrivateFileMode) : PosixFiles(file_mode) {}
  void queue_write(FileId file, std::uint64_t offset, std::span<const std::byte> data,
                   std::uint64_t tag) override;
  void queue_sync(FileId file, std::uint64_t tag) override;
  Status submit() override;
  Result<std::size_t> reap(std::span<Completion> out, std::size_t min_complete) override;
  void wake() override {}  // reap() never waits: everything completed at submit()

 private:
  InlineQueue queue_;
};

}  // namespace annal::journal
