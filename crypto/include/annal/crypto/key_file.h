// KeyFile: master keys kept in a local file, the built-in KeyProvider for deployments without an
// HSM, KMS or vault. The file is the only copy of the keys: losing it loses every sealed event.
//
// Format (text, one key per line):
//
//   # comments and blank lines are ignored (the two keys below are examples: never use them)
//   1 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//   2 60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752
//
// "<version> <64 hex digits>": the version a decimal from 1 to 4294967295, the key 32 bytes in hex
// (either case), separated by spaces or tabs. Each version appears once; the highest is current.
//
// The file must be a regular file (a symbolic link to one is followed) that neither group nor
// others may read or write (mode 0600 or 0400): load() refuses anything looser rather than run with
// a key other users can copy, and says which chmod fixes it. It must belong to the user the
// process runs as, or to root: another owner could replace the file with keys it knows (ssh refuses
// such files alike), and the message says which chown fixes it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "annal/base/status.h"
#include "annal/crypto/key.h"

namespace annal::crypto {

inline constexpr std::size_t kKeyFileBytesMax = std::size_t{1} << 20;  // ~13,000 versions of keys

class KeyFile final : public KeyProvider {
 public:
  // Reads and checks the file at `path` once; later changes to it are not seen (load again after
  // add_key_version). Errors, each naming the path and, for a bad line, its number (never a key's
  // bytes): not_found if the file does not exist; invalid_argument if it is not a regular file,
  // group or others may read or write it, another account than ours or root owns it, it is over
  // kKeyFileBytesMax, a line is malformed, a version repeats or it holds no key; io_error if
  // reading fails.
  [[nodiscard]] static Result<std::unique_ptr<KeyFile>> load(const std::string& path);

  // Immutable after load(), so both are safe from any thread at once and never block.
  [[nodiscard]] std::uint32_t current_version() override;  // the highest version in the file
  [[nodiscard]] Result<Key> master_key(std::uint32_t version) override;  // a copy; not_found if absent

  [[nodiscard]] const std::string& path() const noexcept { return path_; }

 private:
  KeyFile(std::string path, std::map<std::uint32_t, Key> keys) noexcept;

  std::string path_;
  std::map<std::uint32_t, Key> keys_;  // never empty
};

// Creates `path` holding one fresh random key as version 1: created exclusively (an existing file,
// and the keys in it, are never overwritten: invalid_argument), mode 0600 whatever the umask,
// flushed to disk with its directory entry before returning. For `annal masterkey`.
[[nodiscard]] Status generate_key_file(const std::string& path);

// Rotation: appends a fresh random key as the next version (highest + 1) to the key file at `path`,
// keeping its existing lines and comments, and returns the new version. Atomic: the new contents go
// to PATH.tmp (mode 0600, fsynced), which is renamed over `path` and the directory fsynced, so a
// crash leaves the old file or the new one, never a torn one. The file is checked as load() checks
// it first, except that root may rotate a file another account owns; the new file keeps the old
// one's owner and group, so that account can still read it. A symbolic link is followed, as load()
// follows it: the file it points to is rotated (its PATH.tmp beside it), the link stays, and
// messages name that file.
//
// Rotations of one file take turns: each holds an exclusive flock on the key file from reading it
// to the rename, so concurrent calls (threads or processes) each add a version and none is lost.
// Blocks while another rotation of the file runs. Fails (invalid_argument) if PATH.tmp exists
// all the same: a rotation crashed before its rename (its key was never used), and the stale
// PATH.tmp may be removed.
[[nodiscard]] Result<std::uint32_t> add_key_version(const std::string& path);

}  // namespace annal::crypto
