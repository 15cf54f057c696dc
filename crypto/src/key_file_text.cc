#include "key_file_text.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "annal/crypto/key_file.h"

namespace annal::crypto {
namespace {

// Read or write permission for group or others. Execute bits are harmless and not checked.
constexpr mode_t kTooOpen = S_IRGRP | S_IWGRP | S_IROTH | S_IWOTH;

std::string octal_mode(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

// Why a file opened for reading cannot be a key file, or ok if it can.
Status check_key_file(const std::string& path, const struct stat& st, KeyFileOwners owners, std::size_t bytes_max) {
  if (!S_ISREG(st.st_mode)) {
    return Status(ErrorCode::invalid_argument,
                  "key file " + path + " is not a regular file (a directory, device or pipe): give the key file itself");
  }
  const uid_t us = ::geteuid();
  const bool any_owner = owners == KeyFileOwners::any_if_we_are_root && us == 0;
  if (st.st_uid != us && st.st_uid != 0 && !any_owner) {
    // Mode 0600 keeps others out, but not the owner: another account could swap in keys it knows.
    return Status(ErrorCode::invalid_argument,
                  "key file " + path + " belongs to uid " + std::to_string(st.st_uid) + ", but this process runs as uid " +
                      std::to_string(us) + " and trusts only a key file of its own or root's, since the owner can "
                      "replace the keys: run chown " + std::to_string(us) + " " + path + ", or run as uid " +
                      std::to_string(st.st_uid));
  }
  if ((st.st_mode & kTooOpen) != 0) {
    // The key would be readable (or replaceable) by other users: refuse before reading a byte.
    return Status(ErrorCode::invalid_argument,
                  "key file " + path + " has mode " + octal_mode(st.st_mode) +
                      ", which lets group or others read or write it; a master key must be its owner's "
                      "alone: run chmod 600 " + path);
  }
  if (static_cast<std::size_t>(st.st_size) > bytes_max) {
    return Status(ErrorCode::invalid_argument, "key file " + path + " is " + std::to_string(st.st_size) +
                                                   " bytes, over the " + std::to_string(bytes_max) +
                                                   " bytes it may be: is it the right file?");
  }
  return {};
}

Status read_all(int fd, const std::string& path, std::size_t expected, SecretText& text) {
  std::vector<char>& bytes = text.bytes();
  ANNAL_ASSERT(bytes.capacity() > expected);  // resize must not reallocate: see SecretText
  bytes.resize(expected + 1);  // one spare byte shows a file that grew while being read
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_status("read", path, errno);
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  if (done != expected) {
    return Status(ErrorCode::io_error, "key file " + path + " changed while being read; try again");
  }
  bytes.resize(done);
  return {};
}

Status write_all(int fd, const std::string& path, std::string_view text) {
  while (!text.empty()) {
    const ssize_t n = ::write(fd, text.data(), text.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_status("write", path, errno);
    text.remove_prefix(static_cast<std::size_t>(n));
  }
  return {};
}

// O_NONBLOCK so that a FIFO given by mistake is refused when checked rather than blocking the open.
int open_key_file(const std::string& path) {
  return ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
}

Result<SecretText> read_open_key_file(int fd, const std::string& path, KeyFileOwners owners, std::size_t bytes_max) {
  // fstat on the open descriptor: the file checked is the file read, even if `path` changes.
  struct stat st {};
  Status status = ::fstat(fd, &st) == 0 ? check_key_file(path, st, owners, bytes_max) : errno_status("fstat", path, errno);
  SecretText text(status.ok() ? static_cast<std::size_t>(st.st_size) + 1 : 0);
  if (status.ok()) status = read_all(fd, path, static_cast<std::size_t>(st.st_size), text);
  if (!status.ok()) return status;
  return text;
}

}  // namespace

SecretText::~SecretText() {
  if (bytes_.capacity() > 0) OPENSSL_cleanse(bytes_.data(), bytes_.capacity());  // none once moved from
}

void SecretText::append(std::string_view text) {
  ANNAL_ASSERT(text.size() <= bytes_.capacity() - bytes_.size());
  bytes_.insert(bytes_.end(), text.begin(), text.end());
}

Result<SecretText> read_key_file_text(const std::string& path, KeyFileOwners owners, std::size_t bytes_max) {
  const int fd = open_key_file(path);
  if (fd < 0) return errno_status("open", path, errno);
  Result<SecretText> text = read_open_key_file(fd, path, owners, bytes_max);
  ::close(fd);
  return text;
}

Result<SecretText> read_key_file_text(const KeyFileLock& lock, const std::string& path, KeyFileOwners owners) {
  return read_open_key_file(lock.fd(), path, owners, kKeyFileBytesMax);
}

Result<std::string> resolve_key_file_path(const std::string& path) {
  char* resolved = ::realpath(path.c_str(), nullptr);
  if (resolved == nullptr) return errno_status("resolve (realpath)", path, errno);
  std::string target(resolved);
  std::free(resolved);
  return target;
}

Result<KeyFileLock> KeyFileLock::take(const std::string& path) {
  // Each retry means another rotation renamed a new file in while we waited: a bound only
  // against a file replaced without end.
  constexpr int kAttemptsMax = 100;
  for (int attempt = 0; attempt < kAttemptsMax; ++attempt) {
    const int fd = open_key_file(path);
    if (fd < 0) return errno_status("open", path, errno);
    int locked = ::flock(fd, LOCK_EX);
    while (locked != 0 && errno == EINTR) locked = ::flock(fd, LOCK_EX);
    if (locked != 0) {
      const Status failed = errno_status("flock", path, errno);
      ::close(fd);
      return failed;
    }
    // The lock guards the file we opened; a rotation that held it before us may have renamed
    // another over `path`, and then ours is the old one, which nobody will read again.
    struct stat held {}, now {};
    if (::fstat(fd, &held) == 0 && ::stat(path.c_str(), &now) == 0 && held.st_dev == now.st_dev &&
        held.st_ino == now.st_ino) {
      return KeyFileLock(fd, FileOwner{.uid = held.st_uid, .gid = held.st_gid});
    }
    ::close(fd);
  }
  return Status(ErrorCode::io_error, "key file " + path + " was replaced " + std::to_string(kAttemptsMax) +
                                         " times while add_key_version waited for its lock; try again");
}

KeyFileLock::~KeyFileLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the flock
}

Status write_new_secret_file(const std::string& path, std::string_view text, std::string_view if_exists,
                             std::optional<FileOwner> owner) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0 && errno == EEXIST) {
    return Status(ErrorCode::invalid_argument, "key file " + path + " already exists: " + std::string(if_exists));
  }
  if (fd < 0) return errno_status("create", path, errno);
  Status status;
  if (owner && ::geteuid() == 0 && ::fchown(fd, owner->uid, owner->gid) != 0) status = errno_status("fchown", path, errno);
  // The umask may only remove bits; fchmod makes it 0600 exactly, readable by the owner.
  if (status.ok() && ::fchmod(fd, 0600) != 0) status = errno_status("fchmod", path, errno);
  if (status.ok()) status = write_all(fd, path, text);
  if (status.ok() && ::fsync(fd) != 0) status = errno_status("fsync", path, errno);
  if (::close(fd) != 0 && status.ok()) status = errno_status("close", path, errno);
  if (!status.ok()) ::unlink(path.c_str());
  return status;
}

Status replace_with(const std::string& tmp, const std::string& path) {
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const Status renamed = errno_status("rename " + tmp + " over it", path, errno);
    ::unlink(tmp.c_str());
    return renamed;
  }
  return sync_parent_directory(path);
}

Status sync_parent_directory(const std::string& path) {
  const std::size_t slash = path.rfind('/');
  const std::string directory = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  const int fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno_status("open directory " + directory, path, errno);
  Status status = ::fsync(fd) == 0 ? Status() : errno_status("fsync directory " + directory, path, errno);
  ::close(fd);
  return status;
}

Status errno_status(std::string_view what, const std::string& path, int error) {
  const std::string message = "key file " + path + ": " + std::string(what) + ": " + std::strerror(error);
  switch (error) {
    case ENOSPC: return Status(ErrorCode::no_space, message);
    case ENOENT: return Status(ErrorCode::not_found, message);
    case EACCES:
    case EPERM: return Status(ErrorCode::invalid_argument, message);
    default: return Status(ErrorCode::io_error, message);
  }
}

}  // namespace annal::crypto
