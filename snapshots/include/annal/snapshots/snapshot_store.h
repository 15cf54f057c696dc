// SnapshotStore: projections' snapshots in the engine's directory (format in snapshot_format.h):
// written atomically, the newest `keep` of each projection kept, read back verified.
//
//   SnapshotStore store(directory, io, /*keep=*/3);
//   Status s = store.write("orders", /*schema=*/2, applied_sequence, state_bytes);
//   std::vector<SnapshotStore::Skipped> skipped;                  // for the log line
//   auto newest = store.newest("orders", 2, durable_sequence, &skipped);
//   // newest.value(): nullopt -> replay from the journal's start
//
// Not thread-safe for one projection name; different names may be used from different threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "annal/base/status.h"
#include "annal/journal/io_backend.h"
#include "annal/snapshots/snapshot_format.h"
#include "annal/snapshots/state_cipher.h"

namespace annal::snapshots {

class SnapshotStore {
 public:
  // `io` is the journal's backend (tests inject faults through it). keep >= 1. With a `cipher`,
  // states are written sealed and sealed ones are opened (state_cipher.h); without one, a sealed
  // state fails to load, saying it is encrypted (headers still read: tools list them).
  SnapshotStore(std::string directory, std::shared_ptr<journal::IoBackend> io, std::size_t keep,
                std::shared_ptr<StateCipher> cipher = nullptr);

  // Writes `state` as projection `name`'s state at `sequence` (schema `schema`): to a .tmp file,
  // synced, renamed into place, directory synced; then removes all but the newest `keep` at or
  // below `sequence` (any above it were passed over by a rebuild: another schema, damaged, and go
  // once a snapshot past them is written). On an error the snapshots already there are untouched.
  Status write(std::string_view name, std::uint32_t schema, std::uint64_t sequence, std::span<const std::byte> state);

  struct Loaded {
    SnapshotHeader header;
    std::vector<std::byte> state;
  };
  struct Skipped {
    std::string file;
    Status why;  // damaged, unreadable, another schema
    std::uint64_t sequence = 0;  // the sequence its name gives
  };
  // The newest snapshot of `name` at or below `max_sequence`, of schema `schema`, that reads back
  // intact; nullopt if there is none. Those passed over on the way are added to `skipped` (if
  // given), each with the reason. Fails only if the directory cannot be listed.
  Result<std::optional<Loaded>> newest(std::string_view name, std::uint32_t schema, std::uint64_t max_sequence,
                                       std::vector<Skipped>* skipped = nullptr);

  // Sequences of `name`'s snapshot files, ascending (names only; nothing is read).
  Result<std::vector<std::uint64_t>> sequences(std::string_view name);

  // Every projection's snapshot sequences, ascending, by name (names only; nothing is read).
  Result<std::map<std::string, std::vector<std::uint64_t>, std::less<>>> all();

  // The oldest snapshot of `name` of schema `schema` whose header reads back intact (the state is
  // not read); nullopt if there is none. For retention: recovery may fall back as far as this.
  Result<std::optional<std::uint64_t>> oldest(std::string_view name, std::uint32_t schema);

  // Every snapshot file of every projection, read back and checked (the state too, with
  // `verify_state`), for tools. A file that fails has its name and sequence from its file name.
  struct FileReport {
    std::string file;
    SnapshotHeader header;
    std::uint64_t bytes = 0;  // header and state
    Status status;
  };
  Result<std::vector<FileReport>> inspect(bool verify_state);

  // The newest snapshot of `name` past `sequence` that reads back intact, state included, of any
  // schema (a sealed state's checksum verified, not opened: no key needed); nullopt if there is none. The engine's own snapshots are written only once the log
  // holds their sequence durably, so one past the log's end proves the log lost events.
  Result<std::optional<std::uint64_t>> newest_intact_after(std::string_view name, std::uint64_t sequence);

  // Takes every snapshot, of any projection, past `sequence` out of use: states that include
  // events the log no longer holds. The log will hold other events at those sequences, so such a
  // file must be gone before anything is appended again. `set_aside` empty: removed (what a crash
  // took back was never acknowledged); otherwise renamed to <file><set_aside>, kept as evidence of
  // a loss. Returns the files, or the first error.
  Result<std::vector<std::string>> discard_after(std::uint64_t sequence, std::string_view set_aside = {});

 private:
  [[nodiscard]] std::string path(const std::string& file) const { return directory_ + "/" + file; }
  Status write_file(const std::string& tmp, std::span<const std::byte> header, std::span<const std::byte> state);
  // How far load() goes: the header; the state read too, its checksum verified, a sealed one left
  // sealed (a witness needs no key); or the state opened (a sealed one needs the cipher).
  enum class Depth { header, checksummed, opened };
  Result<Loaded> load(std::string_view name, std::uint64_t sequence, Depth depth);
  // Removes all but the newest `keep` of `name` at or below `written` (the one just written);
  // those above it stay.
  void prune(std::string_view name, std::uint64_t written);

  const std::string directory_;
  const std::shared_ptr<journal::IoBackend> io_;
  const std::size_t keep_;
  const std::shared_ptr<StateCipher> cipher_;  // null: states in clear
};

}  // namespace annal::snapshots
