// FaultBackend: an in-memory IoBackend that fails on command and simulates power loss, for tests.
//
// Each file keeps what was synced and the writes since. crash() models a power cut: every file
// keeps its synced bytes plus an arbitrary subset of its unsynced writes, each of which may itself
// be torn at 512-byte sector boundaries; names created, renamed or removed since their directory
// was last synced revert; open files and locks are gone. A failed sync behaves like Linux after
// "fsyncgate": the unsynced writes are dropped from what will survive a crash, yet reads still
// return them, so retrying the sync and carrying on would silently lose data.
//
// Every choice comes from a seeded generator: a failing seed replays exactly.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "inline_queue.h"
#include "annal/journal/io_backend.h"

namespace annal::journal {

class FaultBackend final : public IoBackend {
 public:
  static constexpr std::size_t kSectorBytes = 512;

  explicit FaultBackend(std::uint64_t seed) : random_(seed) {}

  // The n-th write (or sync) from now fails with `error` (an errno such as EIO or ENOSPC); with
  // `persistent`, so does every one after it. Counting starts at 1 and covers both the
  // synchronous and the queued calls.
  void fail_write(std::uint64_t nth, int error, bool persistent = false);
  void fail_sync(std::uint64_t nth, int error, bool persistent = false);
  // Writes and allocations that would take the total size of all files past `bytes` fail with
  // ENOSPC.
  void set_space_limit(std::uint64_t bytes) {
    std::lock_guard lock(mutex_);
    space_limit_ = bytes;
  }
  void crash();
  // crash() right before the n-th data operation from now (write or sync, queued or not), which
  // then fails with EIO: power lost at a chosen point of the writer's work.
  void crash_before(std::uint64_t nth) {
    std::lock_guard lock(mutex_);
    crash_at_ = operations_ + nth;
  }
  // After crash() every call fails with EIO, as if the process were gone, until revive(): a
  // journal still running on this backend cannot touch the post-crash image. revive() also
  // cancels the failures planned with fail_write/fail_sync and a crash_before not yet reached.
  void revive() {
    std::lock_guard lock(mutex_);
    dead_ = false;
    writes_.fail_at = syncs_.fail_at = 0;  // a new boot: failures planned for the old one are off
    crash_at_ = 0;
  }

  [[nodiscard]] std::uint64_t writes() const {
    std::lock_guard lock(mutex_);
    return writes_.count;
  }
  [[nodiscard]] std::uint64_t syncs() const {
    std::lock_guard lock(mutex_);
    return syncs_.count;
  }
  // Calls of read() so far, and the bytes they returned: tests check what a reader touches.
  [[nodiscard]] std::uint64_t reads() const {
    std::lock_guard lock(mutex_);
    return reads_;
  }
  [[nodiscard]] std::uint64_t read_bytes() const {
    std::lock_guard lock(mutex_);
    return read_bytes_;
  }
  // What a read of `path` would return now; empty if there is no such file.
  [[nodiscard]] std::vector<std::byte> contents(const std::string& path) const;

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
  Result<bool> directory_locked(const std::string& directory) override;
  Status check_private(const std::string& path) override;  // no owners here: that it exists

  void queue_write(FileId file, std::uint64_t offset, std::span<const std::byte> data,
                   std::uint64_t tag) override;
  void queue_sync(FileId file, std::uint64_t tag) override;
  Status submit() override;
  Result<std::size_t> reap(std::span<Completion> out, std::size_t min_complete) override;
  void wake() override {}  // reap() never waits: everything completed at submit()

 private:
  struct PendingWrite {
    std::uint64_t offset;
    std::vector<std::byte> data;
  };
  struct Node {
    std::vector<std::byte> current;  // what reads see
    std::vector<std::byte> durable;  // what survives a crash for sure
    std::vector<PendingWrite> pending;  // unsynced writes, in order
  };
  struct OpenFile {
    std::shared_ptr<Node> node;
    std::string path;
    bool direct = false;  // opened read_write_direct: reads and writes must be block-aligned
  };
  struct FaultPlan {
    std::uint64_t count = 0;
    std::uint64_t fail_at = 0;  // 0: never
    int error = 0;
    bool persistent = false;
    // errno for the next operation, or 0.
    int next() {
      ++count;
      const bool hit = fail_at != 0 && (count == fail_at || (persistent && count > fail_at));
      return hit ? error : 0;
    }
  };

  Result<OpenFile*> find(FileId file);
  int write_data(OpenFile& file, std::uint64_t offset, std::span<const std::byte> data);
  int sync_data(OpenFile& file);
  [[nodiscard]] std::uint64_t total_bytes() const;
  [[nodiscard]] std::vector<std::byte> survivor(const Node& node);
  static Status error_status(int error, const std::string& what);

  // The writer, the segment preparer and readers call in from their own threads. Recursive
  // because some calls are made of others (a submitted queue runs write and sync).
  mutable std::recursive_mutex mutex_;
  std::mt19937_64 random_;
  std::map<std::string, std::shared_ptr<Node>> names_;
  std::map<std::string, std::shared_ptr<Node>> durable_names_;
  std::map<FileId, OpenFile> open_;
  std::map<FileId, std::string> locks_;  // lock file id -> locked directory
  FileId next_file_ = 3;
  FaultPlan writes_, syncs_;
  std::uint64_t space_limit_ = UINT64_MAX;
  bool dead_ = false;
  std::uint64_t operations_ = 0;
  std::uint64_t crash_at_ = 0;  // 0: no planned crash
  std::uint64_t reads_ = 0, read_bytes_ = 0;
  // Counts a data operation; true if the planned crash happens now.
  bool crash_now();
  InlineQueue queue_;
};

}  // namespace annal::journal
