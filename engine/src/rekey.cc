#include "annal/engine/rekey.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <functional>
#include <vector>

#include "annal/base/assert.h"
#include "annal/crypto/hkdf.h"
#include "annal/journal/journal.h"
#include "annal/journal/reseal.h"
#include "annal/journal/small_file.h"
#include "annal/snapshots/snapshot_format.h"
#include "store_cipher.h"

namespace annal::engine {
namespace {

// The I/O backend the options ask for, when the caller gives none.
Result<std::shared_ptr<journal::IoBackend>> files_of(const Options& options, std::shared_ptr<journal::IoBackend> io) {
  if (io) return io;
  return journal::make_posix_backend(options.journal.file_mode);
}

Status open_elsewhere(const std::string& directory, const Status& why) {
  return Status(ErrorCode::locked, directory + " is open in another process (an engine, annal serve, load or import): "
                                               "rekey rewrites it offline; close that first (" + why.message() + ")");
}

// The store's LOCK, or why not.
Result<journal::FileId> locked(journal::IoBackend& io, const std::string& directory) {
  auto lock = io.lock_directory(directory);
  if (lock.code() == ErrorCode::locked) return open_elsewhere(directory, lock.status());
  return lock;
}

// Recovers the journal as an open would (a torn tail cut, every sealed segment chained, with the
// chain key of the newest version), then closes it: what follows reads a log that needs nothing.
// Only when needed (journal::needs_recovery): an open that recovers nothing still writes (a
// padding record at the tail), and a rekey with nothing to do writes nothing.
Status recover(const std::string& directory, const Options& options, const std::shared_ptr<journal::IoBackend>& io) {
  auto opened = StoreCipher::open(directory, options.encryption, io);
  if (!opened.ok()) return opened.status();
  StoreCipher& cipher = *opened.value();
  journal::Options opening = options.journal;
  opening.index_interval_bytes = options.index_interval_bytes;  // as the engine's, so the index files stay
  // Nothing is appended: the smallest record limit, which any commit and segment size hold.
  opening.record_bytes_max = journal::kRecordHeaderBytes;
  auto chain_key = cipher.chain_key();
  if (!chain_key.ok()) return chain_key.status();
  opening.chain_key = std::move(chain_key).value();
  auto journal = journal::Journal::open(directory, opening, io);
  if (journal.code() == ErrorCode::locked) return open_elsewhere(directory, journal.status());
  if (!journal.ok()) return journal.status();
  return journal.value()->close();
}

// Reseals one snapshot file if it is under an older version: the file replaced atomically.
Result<StoreCipher::StateReseal> reseal_snapshot(journal::IoBackend& io, const std::string& path, StoreCipher& cipher,
                                                 const std::function<Status()>& begin) {
  auto file = io.open(path, journal::OpenMode::read_only);
  if (!file.ok()) return file.status();
  auto size = io.size(file.value());
  std::vector<std::byte> bytes;
  if (size.ok()) {
    bytes.resize(size.value());
    auto read = io.read(file.value(), 0, bytes);
    if (!read.ok()) size = read.status();
    else if (read.value() != bytes.size()) size = Status(ErrorCode::corruption, path + ": shorter than its size");
  }
  (void)io.close(file.value());
  if (!size.ok()) return size.status();
  std::size_t header_bytes = 0;
  auto header = snapshots::decode_snapshot_header(bytes, path, header_bytes);
  if (!header.ok()) return header.status();
  if (!header.value().sealed) return StoreCipher::StateReseal::current;  // in clear: nothing to reseal
  if (bytes.size() != header_bytes + header.value().state_bytes) {
    return Status(ErrorCode::corruption, path + ": its length is not its header's and state's");
  }
  const std::span<const std::byte> sealed = std::span(bytes).subspan(header_bytes);
  std::vector<std::byte> resealed(sealed.size());
  const auto associated =
      snapshots::snapshot_associated_data(header.value().name, header.value().schema, header.value().sequence);
  auto done = cipher.reseal_state(associated, sealed, resealed);
  if (!done.ok()) return Status(done.code(), path + ": " + done.status().message());
  if (done.value() != StoreCipher::StateReseal::resealed) return done;
  std::vector<std::byte> out = snapshots::encode_snapshot_header(header.value(), resealed);
  out.insert(out.end(), resealed.begin(), resealed.end());
  OPENSSL_cleanse(bytes.data(), bytes.size());
  // A snapshot's nonce is random, but KEYS is still saved under the newest version before
  // anything sealed under it is written, as for records.
  if (Status began = begin(); !began.ok()) return began;
  if (Status replaced = journal::replace_small_file(io, path, out, journal::OpenMode::create_exclusive); !replaced.ok()) {
    return replaced;
  }
  return done;
}

// Every snapshot file of the store (projections' and the engine's own state's).
Status reseal_snapshots(journal::IoBackend& io, const std::string& directory, StoreCipher& cipher,
                        const std::function<Status()>& begin, RekeyReport& report) {
  auto names = io.list(directory);
  if (!names.ok()) return names.status();
  std::sort(names.value().begin(), names.value().end());
  for (const std::string& name : names.value()) {
    if (!snapshots::parse_snapshot_file_name(name)) continue;
    auto done = reseal_snapshot(io, directory + "/" + name, cipher, begin);
    if (!done.ok()) return done.status();
    if (done.value() == StoreCipher::StateReseal::resealed) ++report.snapshots_resealed;
    if (done.value() == StoreCipher::StateReseal::destroyed) ++report.snapshots_destroyed;
  }
  return {};
}

void take_journal_report(const journal::ResealReport& journal_report, RekeyReport& report) {
  report.segments = journal_report.segments;
  report.segments_rewritten = journal_report.segments_rewritten;
  report.records_resealed = journal_report.records_resealed;
  report.chain_entries_retagged = journal_report.entries_retagged;
  report.chain_rewritten = journal_report.chain_rewritten;
  report.resumed = journal_report.resumed;
  report.head_before = journal_report.head_before;
  report.head_after = journal_report.head_after;
}

}  // namespace

Result<RekeyReport> rekey(const std::string& directory, const Options& options, std::shared_ptr<journal::IoBackend> io) {
  auto files = files_of(options, std::move(io));
  if (!files.ok()) return files.status();
  journal::IoBackend& disk = *files.value();
  if (disk.check_private(directory + "/" + kKeysFileName).code() == ErrorCode::not_found) {
    return Status(ErrorCode::invalid_argument, directory + " is not encrypted (it has no key file, " + kKeysFileName +
                                                   "): there is nothing sealed to rekey");
  }
  if (!options.encryption) {
    return Status(ErrorCode::invalid_argument, "rekey needs the store's master keys: the newest version and every "
                                               "older one it holds data under (a key file: --key-file or ANNAL_KEY_FILE)");
  }
  auto lock = locked(disk, directory);
  if (!lock.ok()) return lock.status();
  auto needed = journal::needs_recovery(disk, directory);
  if (!needed.ok()) {
    (void)disk.close(lock.value());
    return needed.status();
  }
  if (needed.value()) {
    (void)disk.close(lock.value());
    if (Status recovered = recover(directory, options, files.value()); !recovered.ok()) return recovered;
    lock = locked(disk, directory);
    if (!lock.ok()) return lock.status();
  }
  struct Unlock {
    journal::IoBackend& io;
    journal::FileId file;
    ~Unlock() { (void)io.close(file); }
  } unlock{disk, lock.value()};
  // KEYS read under the lock: as nobody else can change it any more.
  auto opened = StoreCipher::open(directory, options.encryption, files.value());
  if (!opened.ok()) return opened.status();
  StoreCipher& cipher = *opened.value();

  RekeyReport report;
  report.key_version = cipher.key_version();
  // KEYS first, before anything sealed is written: a new open number, saved durably under the
  // newest version (the first thing the rekey writes, and only when it writes anything).
  bool began = false;
  const auto begin = [&]() -> Status {
    if (began) return {};
    began = true;
    report.key_store_resealed = cipher.key_store_version() != cipher.key_version();
    // Every open that seals saved where sealing began; a rekey must not move it (it writes no record).
    if (cipher.sealed_from() == 0) {
      return Status(ErrorCode::invalid_argument, directory + "/" + kKeysFileName +
                                                     " says the store has sealed nothing yet: there is nothing to rekey");
    }
    return cipher.begin_writing(cipher.sealed_from());
  };
  journal::ResealOptions resealing;
  auto chain_key = cipher.chain_key();
  if (!chain_key.ok()) return chain_key.status();
  resealing.chain_key = std::move(chain_key).value();
  resealing.chain_keys = crypto::chain_keys(options.encryption);
  resealing.before_first_write = begin;
  const std::unique_ptr<StoreCipher::Resealer> resealer = cipher.resealer();
  auto resealed = journal::reseal_journal(disk, directory, *resealer, resealing);
  if (!resealed.ok()) return resealed.status();
  take_journal_report(resealed.value(), report);
  report.records_erased_left = resealer->erased_left();
  if (report.records_resealed > 0) report.open_number = cipher.open_number();
  if (Status snapshots = reseal_snapshots(disk, directory, cipher, begin, report); !snapshots.ok()) return snapshots;
  // KEYS alone under an older version (nothing else was): saved under the newest.
  if (cipher.key_store_version() != cipher.key_version()) {
    if (Status saved = begin(); !saved.ok()) return saved;
  }
  return report;
}

}  // namespace annal::engine
