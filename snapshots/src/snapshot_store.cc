#include "annal/snapshots/snapshot_store.h"

#include <algorithm>

#include "annal/base/wall_clock.h"
#include "annal/journal/crc32c.h"

namespace annal::snapshots {
SnapshotStore::SnapshotStore(std::string directory, std::shared_ptr<journal::IoBackend> io, std::size_t keep,
                             std::shared_ptr<StateCipher> cipher)
    : directory_(std::move(directory)), io_(std::move(io)), keep_(keep), cipher_(std::move(cipher)) {
  ANNAL_ASSERT(io_ != nullptr && keep_ >= 1);
}

Status SnapshotStore::write(std::string_view name, std::uint32_t schema, std::uint64_t sequence,
                            std::span<const std::byte> state) {
  if (!valid_projection_name(name)) {
    return Status(ErrorCode::invalid_argument, "projection name \"" + std::string(name) +
                                                   "\": 1 to 64 of A-Z a-z 0-9 _ .");
  }
  if (state.size() > kSnapshotStateBytesMax) {
    return Status(ErrorCode::invalid_argument, "snapshot of " + std::string(name) + ": state over 16 GiB");
  }
  const std::string file = snapshot_file_name(name, sequence);
  std::vector<std::byte> sealed;
  if (cipher_) {
    if (state.size() > cipher_->state_bytes_max()) {
      return Status(ErrorCode::invalid_argument, "snapshot of " + std::string(name) + ": a state of " +
                                                     std::to_string(state.size()) + " bytes, over the " +
                                                     std::to_string(cipher_->state_bytes_max()) +
                                                     " its encryption seals in one piece");
    }
    sealed.resize(state.size() + cipher_->overhead());
    if (Status done = cipher_->seal(snapshot_associated_data(name, schema, sequence), state, sealed); !done.ok()) {
      return Status(done.code(), "snapshot " + file + ": sealing its state: " + done.message());
    }
    state = sealed;
  }
  const auto header = encode_snapshot_header({.name = std::string(name), .schema = schema, .sequence = sequence,
                                              .created_ns = wall_clock_ns(), .state_bytes = state.size(),
                                              .sealed = cipher_ != nullptr},
                                             state);
  const std::string tmp = path(file + ".tmp");
  (void)io_->remove(tmp);  // left by a crash during an earlier write, or absent
  if (Status written = write_file(tmp, header, state); !written.ok()) {
    (void)io_->remove(tmp);
    return written;
  }
  // The rename is the commit point; syncing the directory makes it durable.
  if (Status renamed = io_->rename(tmp, path(file)); !renamed.ok()) return renamed;
  if (Status synced = io_->sync_directory(directory_); !synced.ok()) return synced;
  prune(name, sequence);
  return {};
}

Status SnapshotStore::write_file(const std::string& tmp, std::span<const std::byte> header,
                                 std::span<const std::byte> state) {
  const auto file = io_->open(tmp, journal::OpenMode::create_exclusive);
  if (!file.ok()) return file.status();
  Status status = io_->write(file.value(), 0, header);
  if (status.ok() && !state.empty()) status = io_->write(file.value(), header.size(), state);
  if (status.ok()) status = io_->sync(file.value());
  const Status closed = io_->close(file.value());
  return status.ok() ? closed : status;
}

Result<std::map<std::string, std::vector<std::uint64_t>, std::less<>>> SnapshotStore::all() {
  auto files = io_->list(directory_);
  if (!files.ok()) return files.status();
  std::map<std::string, std::vector<std::uint64_t>, std::less<>> out;
  for (const std::string& file : files.value()) {
    if (const auto parsed = parse_snapshot_file_name(file)) out[std::string(parsed->name)].push_back(parsed->sequence);
  }
  for (auto& [name, sequences] : out) std::sort(sequences.begin(), sequences.end());
  return out;
}

Result<std::vector<SnapshotStore::FileReport>> SnapshotStore::inspect(bool verify_state) {
  auto every = all();
  if (!every.ok()) return every.status();
  std::vector<FileReport> out;
  for (const auto& [name, sequences] : every.value()) {
    for (const std::uint64_t sequence : sequences) {
      FileReport report{.file = snapshot_file_name(name, sequence), .header = {.name = name, .sequence = sequence},
                        .bytes = 0, .status = {}};
      auto loaded = load(name, sequence, verify_state ? Depth::opened : Depth::header);
      if (loaded.ok()) {
        report.header = std::move(loaded.value().header);
        report.bytes = snapshot_header_bytes(name) + report.header.state_bytes;
      } else {
        report.status = loaded.status();
      }
      out.push_back(std::move(report));
    }
  }
  return out;
}

Result<std::vector<std::uint64_t>> SnapshotStore::sequences(std::string_view name) {
  auto every = all();
  if (!every.ok()) return every.status();
  const auto found = every.value().find(name);
  return found == every.value().end() ? std::vector<std::uint64_t>() : std::move(found->second);
}

Result<std::optional<std::uint64_t>> SnapshotStore::oldest(std::string_view name, std::uint32_t schema) {
  auto all = sequences(name);
  if (!all.ok()) return all.status();
  for (const std::uint64_t sequence : all.value()) {
    const auto header = load(name, sequence, Depth::header);
    if (header.ok() && header.value().header.schema == schema) return std::optional<std::uint64_t>(sequence);
  }
  return std::optional<std::uint64_t>();
}

Result<std::optional<std::uint64_t>> SnapshotStore::newest_intact_after(std::string_view name,
                                                                        std::uint64_t sequence) {
  auto all = sequences(name);
  if (!all.ok()) return all.status();
  for (auto it = all.value().rbegin(); it != all.value().rend() && *it > sequence; ++it) {
    if (load(name, *it, Depth::checksummed).ok()) return std::optional<std::uint64_t>(*it);
  }
  return std::optional<std::uint64_t>();
}

Result<std::vector<std::string>> SnapshotStore::discard_after(std::uint64_t sequence, std::string_view set_aside) {
  auto files = io_->list(directory_);
  if (!files.ok()) return files.status();
  std::vector<std::string> removed;
  for (const std::string& file : files.value()) {
    const auto parsed = parse_snapshot_file_name(file);
    if (!parsed || parsed->sequence <= sequence) continue;
    Status gone = set_aside.empty() ? io_->remove(path(file)) : io_->rename(path(file), path(file + std::string(set_aside)));
    if (!gone.ok()) return gone;
    removed.push_back(file);
  }
  if (removed.empty()) return removed;
  // Durable before the log moves on past `sequence`.
  if (Status synced = io_->sync_directory(directory_); !synced.ok()) return synced;
  return removed;
}

// Older snapshots beyond `keep`. A failed removal only leaves a file behind; the next write retries.
void SnapshotStore::prune(std::string_view name, std::uint64_t written) {
  const auto all = sequences(name);
  if (!all.ok()) return;
  // Those above `written` were passed over (another schema, damaged): a rebuild replays from below
  // them and removes them once it has written past them.
  const auto end = std::upper_bound(all.value().begin(), all.value().end(), written);
  const auto kept = static_cast<std::size_t>(end - all.value().begin());
  for (std::size_t i = 0; i + keep_ < kept; ++i) (void)io_->remove(path(snapshot_file_name(name, all.value()[i])));
}

Result<std::optional<SnapshotStore::Loaded>> SnapshotStore::newest(std::string_view name, std::uint32_t schema,
                                                                   std::uint64_t max_sequence,
                                                                   std::vector<Skipped>* skipped) {
  auto all = sequences(name);
  if (!all.ok()) return all.status();
  for (auto it = all.value().rbegin(); it != all.value().rend(); ++it) {
    if (*it > max_sequence) continue;
    auto loaded = load(name, *it, Depth::opened);
    Status why = loaded.status();
    if (loaded.ok() && loaded.value().header.schema != schema) {
      why = Status(ErrorCode::invalid_argument, "schema " + std::to_string(loaded.value().header.schema) +
                                                    ", the projection is at schema " + std::to_string(schema));
    }
    if (why.ok()) return std::optional<Loaded>(std::move(loaded.value()));
    if (skipped != nullptr) skipped->push_back({snapshot_file_name(name, *it), why, *it});
  }
  return std::optional<Loaded>();
}

// Reads one snapshot and checks everything it says about itself; the state too if `with_state`.
Result<SnapshotStore::Loaded> SnapshotStore::load(std::string_view name, std::uint64_t sequence, Depth depth) {
  const std::string file = snapshot_file_name(name, sequence);
  const auto opened = io_->open(path(file), journal::OpenMode::read_only);
  if (!opened.ok()) return opened.status();
  struct Closer {
    journal::IoBackend& io;
    journal::FileId file;
    ~Closer() { (void)io.close(file); }
  } closer{*io_, opened.value()};
  const auto size = io_->size(opened.value());
  if (!size.ok()) return size.status();
  std::vector<std::byte> head(std::min<std::uint64_t>(size.value(), snapshot_header_bytes(name)));
  const auto got = io_->read(opened.value(), 0, head);
  if (!got.ok()) return got.status();
  std::size_t header_bytes = 0;
  auto header = decode_snapshot_header(std::span(head).first(got.value()), file, header_bytes);
  if (!header.ok()) return header.status();
  if (header.value().name != name || header.value().sequence != sequence) {
    return Status(ErrorCode::corruption, "snapshot " + file + ": its header says " + header.value().name + " at " +
                                             std::to_string(header.value().sequence));
  }
  if (size.value() != header_bytes + header.value().state_bytes) {
    return Status(ErrorCode::corruption, "snapshot " + file + ": " + std::to_string(size.value()) +
                                             " bytes, the header promises " +
                                             std::to_string(header_bytes + header.value().state_bytes));
  }
  if (!header.value().sealed && cipher_) {
    // Judged before the state is read: retention (oldest) and tools read headers only.
    if (Status plain = cipher_->check_plain(sequence); !plain.ok()) {
      return Status(plain.code(), "snapshot " + file + ": a state in clear where the store seals everything: " +
                                      plain.message());
    }
  }
  if (header.value().sealed && cipher_ &&
      header.value().state_bytes > cipher_->state_bytes_max() + cipher_->overhead()) {
    return Status(ErrorCode::corruption, "snapshot " + file + ": a sealed state of " +
                                             std::to_string(header.value().state_bytes) + " bytes, more than was ever sealed");
  }
  if (depth == Depth::header) return Loaded{std::move(header.value()), {}};
  const auto state_bytes = static_cast<std::size_t>(header.value().state_bytes);
  Loaded out{std::move(header.value()), std::vector<std::byte>(state_bytes)};
  const auto read = io_->read(opened.value(), header_bytes, out.state);
  if (!read.ok()) return read.status();
  if (read.value() != out.state.size() || journal::crc32c_extend(0, out.state) != out.header.state_crc) {
    return Status(ErrorCode::corruption, "snapshot " + file + ": state checksum mismatch");
  }
  if (!out.header.sealed || depth == Depth::checksummed) return out;
  if (!cipher_) {
    return Status(ErrorCode::invalid_argument, "snapshot " + file +
                                                   ": its state is encrypted (sealed), and the store was opened "
                                                   "without its key: open it with the key it was written with");
  }
  if (out.state.size() < cipher_->overhead()) {
    return Status(ErrorCode::corruption, "snapshot " + file + ": a sealed state shorter than its seal");
  }
  std::vector<std::byte> plain(out.state.size() - cipher_->overhead());
  if (Status unsealed = cipher_->open(snapshot_associated_data(name, out.header.schema, sequence), out.state, plain);
      !unsealed.ok()) {
    return Status(unsealed.code(), "snapshot " + file + ": cannot open its sealed state: " + unsealed.message());
  }
  out.state = std::move(plain);
  return out;
}

}  // namespace annal::snapshots
