#include "posix_backend.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "annal/journal/format.h"

namespace annal::journal {
namespace {

ErrorCode code_for(int error) {
  switch (error) {
    case ENOSPC:
    case EDQUOT: return ErrorCode::no_space;
    case ENOENT: return ErrorCode::not_found;
    case EWOULDBLOCK: return ErrorCode::locked;
    default: return ErrorCode::io_error;
  }
}

// Runs `call` until it stops failing with EINTR; returns its result (-1 with errno set on error).
template <class Call>
auto retry_eintr(Call&& call) {
  for (;;) {
    const auto rc = call();
    if (rc >= 0 || errno != EINTR) return rc;
  }
}

// Linux 6.1+ reports the alignment direct I/O needs; annal writes in kDirectBlockBytes units, so
// anything coarser is refused. Older kernels do not say: writes then fail with EINVAL if wrong.
Status check_direct_alignment(int fd, const std::string& path) {
  struct statx stx {};
  if (::statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) != 0 || (stx.stx_mask & STATX_DIOALIGN) == 0) {
    return {};
  }
  if (stx.stx_dio_offset_align == 0) {
    return Status(ErrorCode::invalid_argument, path + ": this file system has no direct I/O; turn direct_io off");
  }
  if (stx.stx_dio_offset_align > kDirectBlockBytes || stx.stx_dio_mem_align > kDirectBlockBytes) {
    return Status(ErrorCode::invalid_argument,
                  path + ": direct I/O here needs " + std::to_string(stx.stx_dio_offset_align) +
                      "-byte alignment, more than annal's " + std::to_string(kDirectBlockBytes) +
                      "-byte blocks; turn direct_io off");
  }
  return {};
}

}  // namespace

PosixFiles::~PosixFiles() {
  for (const auto& [file, path] : paths_) ::close(file);
}

std::string PosixFiles::path_of(FileId file) const {
  std::lock_guard lock(paths_mutex_);
  const auto found = paths_.find(file);
  return found == paths_.end() ? "(unknown file)" : found->second;
}

void PosixFiles::remember(FileId file, const std::string& path) {
  std::lock_guard lock(paths_mutex_);
  paths_[file] = path;
}

Status PosixFiles::errno_status(int error, const std::string& what) const {
  return Status(code_for(error), what + ": " + std::strerror(error));
}

Result<FileId> PosixFiles::open(const std::string& path, OpenMode mode) {
  int flags = O_CLOEXEC;
  switch (mode) {
    case OpenMode::read_only: flags |= O_RDONLY; break;
    case OpenMode::read_write: flags |= O_RDWR; break;
    case OpenMode::create_exclusive: flags |= O_RDWR | O_CREAT | O_EXCL; break;
    case OpenMode::read_write_direct: flags |= O_RDWR | O_DIRECT; break;
    case OpenMode::create_private: flags |= O_RDWR | O_CREAT | O_EXCL; break;
  }
  const mode_t created = mode == OpenMode::create_private ? kPrivateFileMode : file_mode_;
  const int fd = retry_eintr([&] { return ::open(path.c_str(), flags, created); });
  if (fd < 0 && errno == EINVAL && mode == OpenMode::read_write_direct) {
    return Status(ErrorCode::invalid_argument,
                  "open " + path + " with O_DIRECT: this file system has no direct I/O; "
                  "turn direct_io off or put the journal on a disk file system");
  }
  if (fd < 0) return errno_status(errno, "open " + path);
  if (mode == OpenMode::read_write_direct) {
    if (Status aligned = check_direct_alignment(fd, path); !aligned.ok()) {
      ::close(fd);
      return aligned;
    }
  }
  remember(fd, path);
  return fd;
}

Status PosixFiles::close(FileId file) {
  const std::string path = path_of(file);
  {
    std::lock_guard lock(paths_mutex_);
    paths_.erase(file);
  }
  // Never retry close: on Linux the descriptor is gone even when close reports EINTR.
  if (::close(file) != 0) return errno_status(errno, "close " + path);
  return {};
}

Result<std::uint64_t> PosixFiles::size(FileId file) {
  struct stat st {};
  if (::fstat(file, &st) != 0) return errno_status(errno, "stat " + path_of(file));
  return static_cast<std::uint64_t>(st.st_size);
}

Result<std::size_t> PosixFiles::read(FileId file, std::uint64_t offset, std::span<std::byte> out) {
  std::size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = retry_eintr([&] {
      return ::pread(file, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
    });
    if (n < 0) return errno_status(errno, "read " + path_of(file) + " at " + std::to_string(offset + done));
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  return done;
}

void PosixFiles::read_ahead(FileId file, std::uint64_t offset, std::uint64_t bytes) {
  // The kernel queues the reads and returns; the page cache holds the bytes for the pread to come.
  (void)::posix_fadvise(file, static_cast<off_t>(offset), static_cast<off_t>(bytes), POSIX_FADV_WILLNEED);
}

Status PosixFiles::write_back(FileId file, std::uint64_t offset, std::uint64_t bytes) {
  const int rc = retry_eintr([&] {
    return ::sync_file_range(file, static_cast<off_t>(offset), static_cast<off_t>(bytes),
                             SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
  });
  if (rc != 0) return errno_status(errno, "write back " + path_of(file));
  return {};
}

int PosixFiles::write_all(FileId file, std::uint64_t offset, std::span<const std::byte> data,
                            std::uint64_t& failed_at) {
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = retry_eintr([&] {
      return ::pwrite(file, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    });
    failed_at = offset + done;
    if (n < 0) return errno;
    // A write that moves nothing will not move anything on a retry either.
    if (n == 0) return EIO;
    done += static_cast<std::size_t>(n);
  }
  return 0;
}

Status PosixFiles::write(FileId file, std::uint64_t offset, std::span<const std::byte> data) {
  std::uint64_t failed_at = offset;
  const int error = write_all(file, offset, data, failed_at);
  if (error != 0) return errno_status(error, "write " + path_of(file) + " at " + std::to_string(failed_at));
  return {};
}

// Not retried on EINTR either: fdatasync does not fail with EINTR on Linux, and a failed sync must
// never be retried as if nothing happened (the kernel may already have dropped the pages).
int PosixFiles::sync_data(FileId file) { return ::fdatasync(file) == 0 ? 0 : errno; }

Status PosixFiles::sync(FileId file) {
  const int error = sync_data(file);
  if (error != 0) return errno_status(error, "fdatasync " + path_of(file));
  return {};
}

Status PosixFiles::allocate(FileId file, std::uint64_t bytes) {
  const int rc = retry_eintr([&] { return ::fallocate(file, 0, 0, static_cast<off_t>(bytes)); });
  if (rc != 0) return errno_status(errno, "fallocate " + path_of(file) + " to " + std::to_string(bytes));
  return {};
}

Status PosixFiles::truncate(FileId file, std::uint64_t bytes) {
  const int rc = retry_eintr([&] { return ::ftruncate(file, static_cast<off_t>(bytes)); });
  if (rc != 0) return errno_status(errno, "truncate " + path_of(file) + " to " + std::to_string(bytes));
  return {};
}

Status PosixFiles::sync_directory(const std::string& directory) {
  const int fd = retry_eintr([&] { return ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); });
  if (fd < 0) return errno_status(errno, "open directory " + directory);
  const int rc = ::fsync(fd);
  const int error = errno;
  ::close(fd);
  if (rc != 0) return errno_status(error, "fsync directory " + directory);
  return {};
}

Status PosixFiles::rename(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) return errno_status(errno, "rename " + from + " to " + to);
  return {};
}

Status PosixFiles::remove(const std::string& path) {
  if (::unlink(path.c_str()) != 0) return errno_status(errno, "remove " + path);
  return {};
}

Result<std::vector<std::string>> PosixFiles::list(const std::string& directory) {
  DIR* dir = ::opendir(directory.c_str());
  if (dir == nullptr) return errno_status(errno, "list " + directory);
  std::vector<std::string> names;
  errno = 0;
  while (const dirent* entry = ::readdir(dir)) {
    const std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  const int error = errno;
  ::closedir(dir);
  if (error != 0) return errno_status(error, "list " + directory);
  return names;
}

namespace {

// The whole of the LOCK file, as an open file description lock (F_OFD_*): like flock it belongs to
// the open file description, so a second open of the same directory in this process is refused
// just like another process, and unlike flock it can be queried without being taken.
struct flock whole_file_write_lock() {
  struct flock lock {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  return lock;
}

}  // namespace

Result<FileId> PosixFiles::lock_directory(const std::string& directory) {
  const std::string path = directory + "/" + std::string(kLockFileName);
  const int fd = retry_eintr([&] { return ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, file_mode_); });
  if (fd < 0) return errno_status(errno, "open " + path);
  // Both kinds, on the one descriptor: Linux keeps flock and fcntl locks apart, so a writer built
  // before the OFD lock (flock only) and one built after must still exclude each other. Both go
  // with the open file description: released together when it closes or the process dies.
  struct flock lock = whole_file_write_lock();
  if (retry_eintr([&] { return ::flock(fd, LOCK_EX | LOCK_NB); }) != 0 ||
      retry_eintr([&] { return ::fcntl(fd, F_OFD_SETLK, &lock); }) != 0) {
    const int error = errno;
    ::close(fd);
    if (error == EWOULDBLOCK || error == EAGAIN || error == EACCES) {
      return Status(ErrorCode::locked, directory + " is in use by another journal (" + path +
                                           " is locked); close it or use another directory");
    }
    return errno_status(error, "lock " + path);
  }
  remember(fd, path);
  return fd;
}

Status PosixFiles::check_private(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return errno_status(errno, "stat " + path);
  if (!S_ISREG(st.st_mode)) return Status(ErrorCode::invalid_argument, path + " is not a regular file");
  if (st.st_uid != ::geteuid() && st.st_uid != 0) {
    return Status(ErrorCode::invalid_argument,
                  path + " belongs to uid " + std::to_string(st.st_uid) + ", not to this process's (" +
                      std::to_string(::geteuid()) + ") or root: whoever owns it could replace it. Check who put it there, "
                      "then chown it to the store's user");
  }
  if ((st.st_mode & 0077u) != 0) {
    char mode[16];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777u));
    return Status(ErrorCode::invalid_argument, path + " has mode " + mode +
                                                   ": group and others must not read or write it. Check that nobody "
                                                   "replaced it, then chmod 600 it");
  }
  return {};
}

Result<bool> PosixFiles::directory_locked(const std::string& directory) {
  const std::string path = directory + "/" + std::string(kLockFileName);
  const int fd = retry_eintr([&] { return ::open(path.c_str(), O_RDONLY | O_CLOEXEC); });
  if (fd < 0) {
    if (errno == ENOENT) return false;
    return errno_status(errno, "open " + path);
  }
  struct flock lock = whole_file_write_lock();
  const int rc = retry_eintr([&] { return ::fcntl(fd, F_OFD_GETLK, &lock); });
  const int error = errno;
  ::close(fd);
  if (rc != 0) return errno_status(error, "query the lock of " + path);
  return lock.l_type != F_UNLCK;
}

void PosixBackend::queue_write(FileId file, std::uint64_t offset, std::span<const std::byte> data,
                               std::uint64_t tag) {
  queue_.queue_write(file, offset, data, tag);
}

void PosixBackend::queue_sync(FileId file, std::uint64_t tag) { queue_.queue_sync(file, tag); }

Status PosixBackend::submit() {
  queue_.submit([this](const InlineQueue::Op& op) {
    std::uint64_t failed_at = 0;
    return op.is_sync ? sync_data(op.file) : write_all(op.file, op.offset, op.data, failed_at);
  });
  return {};
}

Result<std::size_t> PosixBackend::reap(std::span<Completion> out, std::size_t min_complete) {
  return queue_.reap(out, min_complete);
}

std::shared_ptr<IoBackend> make_posix_backend(std::uint32_t file_mode) { return std::make_shared<PosixBackend>(file_mode); }

Status check_file_mode(std::uint32_t file_mode) {
  if ((file_mode & ~0777u) != 0 || (file_mode & 0600u) != 0600u || (file_mode & 0002u) != 0) {
    char given[16];
    std::snprintf(given, sizeof(given), "%o", file_mode);
    return Status(ErrorCode::invalid_argument, std::string("file_mode ") + given +
                                                   ": must be permission bits (at most 0777) that let the owner read "
                                                   "and write and others not write: 0600 (the default), 0640 or 0644, say");
  }
  return {};
}

Status create_directories(const std::string& directory, std::uint32_t file_mode) {
  if (Status valid = check_file_mode(file_mode); !valid.ok()) return valid;
  if (directory.empty()) return {};
  struct stat info {};
  if (::stat(directory.c_str(), &info) == 0) {
    if (S_ISDIR(info.st_mode)) return {};
    return Status(ErrorCode::invalid_argument, directory + " exists and is not a directory");
  }
  const auto slash = directory.find_last_of('/');
  if (slash != std::string::npos && slash > 0) {
    if (Status parent = create_directories(directory.substr(0, slash), file_mode); !parent.ok()) return parent;
  }
  if (::mkdir(directory.c_str(), directory_mode(file_mode)) != 0 && errno != EEXIST) {
    return Status(code_for(errno), "cannot create directory " + directory + ": " + std::strerror(errno));
  }
  return {};
}

}  // namespace annal::journal
