// The key file's bytes on disk: read with its permissions checked, written durably. POSIX calls
// directly, not the journal's I/O backend: crypto depends on base alone, and a key file is read once
// at startup, outside the engine's I/O path.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "annal/base/status.h"

namespace annal::crypto {

// A key file's text in memory, wiped (OPENSSL_cleanse) when destroyed. A vector, not a string:
// moving a vector always hands over its buffer, where a short string's would be copied and left.
class SecretText {
 public:
  SecretText() = default;
  explicit SecretText(std::size_t capacity) { bytes_.reserve(capacity); }
  ~SecretText();
  SecretText(SecretText&&) noexcept = default;
  SecretText& operator=(SecretText&&) = delete;
  SecretText(const SecretText&) = delete;
  SecretText& operator=(const SecretText&) = delete;

  // Appends without ever reallocating (which would leave a copy behind): the capacity given at
  // construction must suffice, and an append past it asserts.
  void append(std::string_view text);
  [[nodiscard]] std::string_view view() const noexcept { return {bytes_.data(), bytes_.size()}; }
  // For read(2) into the reserved capacity; resizing past it is the caller's bug.
  [[nodiscard]] std::vector<char>& bytes() noexcept { return bytes_; }

 private:
  std::vector<char> bytes_;
};

// Whose key file is trusted. A file's owner can replace its keys with ones it knows, so load()
// trusts only a file of this process's user or of root (as ssh does). A rotation run as root
// accepts any owner: it rewrites the file for that owner (add_key_version keeps it), and no key
// root relies on is at stake.
enum class KeyFileOwners { ours_or_root, any_if_we_are_root };

// The whole of the key file at `path`, after checking that it is a regular file of at most
// `bytes_max` bytes that group and others may neither read nor write, owned as `owners` allows.
// Errors as KeyFile::load() documents them.
[[nodiscard]] Result<SecretText> read_key_file_text(const std::string& path, KeyFileOwners owners,
                                                    std::size_t bytes_max);

// `path` with every symbolic link resolved (realpath): the file a rotation replaces, beside which
// its PATH.tmp goes. Errors as errno_status gives them (not_found if the file does not exist).
[[nodiscard]] Result<std::string> resolve_key_file_path(const std::string& path);

struct FileOwner {
  uid_t uid = 0;
  gid_t gid = 0;
};

// An exclusive flock on the key file at `path`, held until destruction, so that rotations of one
// file take turns: each reads the file the last one renamed into place, and none is lost. Only
// add_key_version takes it; load() needs none, since a rename swaps the whole file at once. The
// lock is on the key file itself, not on a PATH.lock beside it: nothing is left behind to own,
// protect or clean up.
class KeyFileLock {
 public:
  // Blocks while another rotation holds the lock. The file is then checked still to be the one at
  // `path` (a rotation that held the lock may have renamed a new one over it), and opened anew if
  // not. Errors: not_found if there is no file; io_error if the file keeps being replaced.
  [[nodiscard]] static Result<KeyFileLock> take(const std::string& path);
  ~KeyFileLock();
  KeyFileLock(KeyFileLock&& other) noexcept : fd_(other.fd_), owner_(other.owner_) { other.fd_ = -1; }
  KeyFileLock& operator=(KeyFileLock&&) = delete;
  KeyFileLock(const KeyFileLock&) = delete;
  KeyFileLock& operator=(const KeyFileLock&) = delete;

  // The locked file, opened for reading at offset 0; read it with read_key_file_text.
  [[nodiscard]] int fd() const noexcept { return fd_; }
  // Its owner, which the rotated file keeps.
  [[nodiscard]] FileOwner owner() const noexcept { return owner_; }

 private:
  KeyFileLock(int fd, FileOwner owner) noexcept : fd_(fd), owner_(owner) {}
  int fd_;
  FileOwner owner_;
};

// As above, from the file `lock` holds (named `path` in messages).
[[nodiscard]] Result<SecretText> read_key_file_text(const KeyFileLock& lock, const std::string& path, KeyFileOwners owners);

// Creates `path` exclusively with mode 0600, writes `text`, fsyncs and closes it. On failure the
// partial file is removed. If `path` exists: invalid_argument, the message ending with `if_exists`
// (what it means and what to do). Does not sync the directory: the caller does, after any rename.
// Run as root with an `owner`, the file is given to that owner before a byte is written, so that
// root replacing a service account's file leaves it readable by that account; otherwise it is
// ours, as the file it replaces already is (load() trusts no other, but root's).
[[nodiscard]] Status write_new_secret_file(const std::string& path, std::string_view text, std::string_view if_exists,
                                           std::optional<FileOwner> owner = std::nullopt);

// fsyncs the directory holding `path`, so that its creation or a rename onto it is durable.
[[nodiscard]] Status sync_parent_directory(const std::string& path);

// Renames `tmp` (written by write_new_secret_file) over `path` and syncs the directory: the rename
// is the commit point, before it the old file is whole, after it the new one. `tmp` is removed if
// the rename fails.
[[nodiscard]] Status replace_with(const std::string& tmp, const std::string& path);

// A Status for a failed system call on `path`: no_space for ENOSPC, not_found for ENOENT,
// invalid_argument for EACCES and EPERM (the operator's to fix), io_error otherwise.
[[nodiscard]] Status errno_status(std::string_view what, const std::string& path, int error);

}  // namespace annal::crypto
