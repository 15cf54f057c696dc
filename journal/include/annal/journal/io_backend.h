// IoBackend: every byte the journal reads or writes goes through this interface, so the same
// journal code runs on io_uring in production, on plain POSIX calls, and on FaultBackend, which
// simulates crashes, torn writes, EIO and ENOSPC in tests.
//
// Two kinds of calls. Synchronous ones (open, read, write, sync, directory operations) serve open,
// recovery and segment preparation. The writer's hot path is asynchronous: it queues writes and
// syncs, submits once per round, and reaps completions; a queued sync runs only after every write
// queued before it has completed in full (short writes are finished inside the backend), which is
// what makes "acknowledged after its fdatasync" mean what it says.
//
// Threads: the asynchronous calls belong to the journal's writer thread alone. The synchronous
// file calls (open, close, size, read) must be safe to make from other threads at the same time,
// since Readers use them beside the writer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "annal/base/status.h"

namespace annal::journal {

using FileId = int;  // a file descriptor for the POSIX backends, an index for FaultBackend

enum class OpenMode {
  read_only,
  read_write,       // existing file
  create_exclusive,  // new file; fails if it exists
  // Existing file, written with O_DIRECT: every write's offset, length and buffer address must be
  // multiples of kDirectBlockBytes (else EINVAL). Fails with invalid_argument where the file
  // system has no direct I/O or needs a coarser alignment.
  read_write_direct,
  // New file, as create_exclusive, that only its owner may read or write whatever the file mode
  // the backend was given (a key store: check_private below).
  create_private,
};

struct Completion {
  std::uint64_t tag = 0;     // what the caller passed to queue_*
  std::int64_t result = 0;   // bytes written, 0 for a sync, or -errno
};

class IoBackend {
 public:
  virtual ~IoBackend() = default;

  virtual Result<FileId> open(const std::string& path, OpenMode mode) = 0;
  virtual Status close(FileId file) = 0;
  virtual Result<std::uint64_t> size(FileId file) = 0;
  // Reads up to out.size() bytes at `offset`; returns how many (fewer only at end of file).
  virtual Result<std::size_t> read(FileId file, std::uint64_t offset, std::span<std::byte> out) = 0;
  // Writes all of `data` (retrying short writes and EINTR).
  virtual Status write(FileId file, std::uint64_t offset, std::span<const std::byte> data) = 0;
  virtual Status sync(FileId file) = 0;  // fdatasync
  // Reserves [0, bytes) so later writes inside it cannot fail for space.
  virtual Status allocate(FileId file, std::uint64_t bytes) = 0;
  virtual Status truncate(FileId file, std::uint64_t bytes) = 0;

  virtual Status sync_directory(const std::string& directory) = 0;
  virtual Status rename(const std::string& from, const std::string& to) = 0;
  virtual Status remove(const std::string& path) = 0;
  // File names (not paths) in `directory`, unsorted.
  virtual Result<std::vector<std::string>> list(const std::string& directory) = 0;
  // Takes `directory`/LOCK for as long as the returned file stays open: a second holder, in this
  // process or another, gets ErrorCode::locked.
  virtual Result<FileId> lock_directory(const std::string& directory) = 0;
  // Whether someone holds `directory`/LOCK now, asked without taking it (a tool must never stop a
  // writer from opening). False when there is no LOCK file.
  virtual Result<bool> directory_locked(const std::string& directory) = 0;
  // invalid_argument, saying why and what to do, unless the file at `path` is a regular file of
  // this process's user (or root) that group and others may neither read nor write: what a file
  // made with create_private is, and a key store must be (someone else who could write it could
  // put back an older one). not_found if there is none. Backends without owners check existence.
  virtual Status check_private(const std::string& path) = 0;

  // Optional: a hint that `bytes` from `offset` of `file` will be read next, so the backend may start
  // reading them now, while the caller works on what it read before (a replay from disk then waits
  // for the disk less). Nothing to report: a hint that fails costs only the wait it would have saved.
  virtual void read_ahead(FileId file, std::uint64_t offset, std::uint64_t bytes) {
    (void)file, (void)offset, (void)bytes;
  }

  // Optional: writes the cached bytes [offset, offset + bytes) of `file` to the disk now and waits
  // for them, without the device cache flush of a sync (no durability promise: a sync still
  // follows). A writer of bulk data that others must not queue behind (the segment preparer's
  // zeros) sends it out a piece at a time this way, instead of leaving the kernel to write it all
  // back at once, or at the final sync, while the journal's syncs wait behind it. A failure must
  // be acted on here: on Linux the wait takes the file's error record, and the next sync of the
  // same descriptor may then report success.
  virtual Status write_back(FileId file, std::uint64_t offset, std::uint64_t bytes) {
    (void)file, (void)offset, (void)bytes;
    return {};
  }

  // Optional: the buffers the asynchronous writes will come from, until unregister_buffers() (or
  // the next registration). io_uring pins them once instead of on every write. Writes from other
  // memory still work. Fails if the kernel refuses (a memlock limit, say): the caller may go on
  // unregistered. Backends without such a thing accept and ignore it.
  virtual Status register_buffers(std::span<const std::span<std::byte>> buffers) {
    (void)buffers;
    return {};
  }
  virtual void unregister_buffers() {}

  // The asynchronous path. `data` must stay valid until its completion is reaped.
  virtual void queue_write(FileId file, std::uint64_t offset, std::span<const std::byte> data,
                           std::uint64_t tag) = 0;
  virtual void queue_sync(FileId file, std::uint64_t tag) = 0;
  // Hands everything queued to the kernel (or runs it, for the synchronous backends).
  virtual Status submit() = 0;
  // Waits until at least `min_complete` completions are ready, or wake() is called, then moves up
  // to out.size() of them into `out` and returns how many (after a wake-up, possibly fewer).
  virtual Result<std::size_t> reap(std::span<Completion> out, std::size_t min_complete) = 0;
  // Thread-safe: makes a reap() that is waiting return early, or the next one if none is waiting.
  // The writer waits for the disk in reap() while appenders stage more work; this lets it write a
  // full buffer without waiting for the fdatasync in flight.
  virtual void wake() = 0;
};

// Who may read what the store creates: its owner only, by default. Events are business records
// (orders, payments, readings), and a data directory is often on a shared host. Options widen it
// (Options::file_mode); the process's umask narrows it further, never the other way.
inline constexpr std::uint32_t kPrivateFileMode = 0600;
// A directory's mode for files of `file_mode`: search (x) wherever read is allowed, so 0600 makes
// 0700 and 0640 makes 0750.
[[nodiscard]] constexpr std::uint32_t directory_mode(std::uint32_t file_mode) noexcept {
  return file_mode | ((file_mode & 0444u) >> 2);
}
// invalid_argument unless `file_mode` is permission bits that let the owner read and write and
// others not write (0600, 0640, 0644 ...).
[[nodiscard]] Status check_file_mode(std::uint32_t file_mode);
// Makes `directory` and its missing parents, those it makes with directory_mode(file_mode) (after
// check_file_mode). An existing directory is left as it is.
[[nodiscard]] Status create_directories(const std::string& directory, std::uint32_t file_mode);

// The plain POSIX backend (pread/pwrite/fdatasync on the calling thread), for other components'
// files: snapshots, say. The files it creates get `file_mode`.
std::shared_ptr<IoBackend> make_posix_backend(std::uint32_t file_mode = kPrivateFileMode);

}  // namespace annal::journal
