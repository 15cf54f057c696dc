// Encryption at rest for one store (Options::encryption, docs/security.md): its key file KEYS,
// the master keys it is given, and the ciphers made from them for the journal's records and for
// every snapshot file.
//
// A record's payload, sealed (the journal's RecordCipher):
//
//   +0  master key version u32 LE      the version its stream key was derived under
//   +4  open number u32 LE             which open of the store wrote it (KEYS counts them)
//   +8  the clear part                 an event's flags and back pointer (9 B: event_codec.h); a
//                                      name record's id (8 B for a stream, 2 for a type)
//   +8+c AES-256-GCM ciphertext        the rest of the plain payload (an event's ids, then the
//                                      application's bytes; a name)
//   ...  tag (16 B)
//
// The clear part is what the engine needs of a record whose stream is erased: walking a stream
// back and recovering the index need the back pointer, never the data. It is authenticated with
// the header fields: both are the seal's additional data. The ciphertext is under the key of the
// record's stream (crypto::stream_key: HKDF of the master with the stream's
// seed from the key store's tree; a stream's name record is under the named stream's key), with
// nonce = sequence u64 LE || open number u32 LE, and the
// record's header fields as additional data (format.h, associated_data). A sequence is written
// twice only by different opens (a torn tail cut and written again), so a (key, nonce) pair never
// repeats; KEYS' open counter is bumped durably before an open's first write.
//
// A snapshot's state, sealed (the snapshot stores' StateCipher):
//
//   +0  master key version u32 LE
//   +4  nonce (12 B), random for each file
//   +16 AES-256-GCM ciphertext || tag (16 B)
//
// under HKDF(master, salt = this store's seed for id 2^64-1, "annal snapshot key v1"), so that
// stores sharing a master key do not share it; the file's name, schema and sequence as additional
// data. Snapshots are few and rewritten whole, so a random nonce needs no state.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <unordered_map>

#include "annal/base/status.h"
#include "annal/crypto/key.h"
#include "annal/crypto/store_keys.h"
#include "annal/journal/chain.h"
#include "annal/journal/io_backend.h"
#include "annal/journal/record_cipher.h"
#include "annal/journal/reseal.h"
#include "annal/snapshots/state_cipher.h"

namespace annal::engine {

// The key file's name in the store's directory.
inline constexpr const char* kKeysFileName = "KEYS";

class StoreCipher : public std::enable_shared_from_this<StoreCipher> {
 public:
  // Bytes a sealed record's payload has beyond the plain one.
  static constexpr std::size_t kRecordOverhead = 4 + 4 + 16;

  // Loads `directory`'s KEYS with the master keys of `keys`, or, when the store has none, makes a
  // new key state (saved by begin_writing, so that a failed open changes nothing on disk). KEYS is
  // read and written through `io` (null: the files themselves), the journal's backend, so that the
  // fault backend's power cuts reach it as they reach the log.
  [[nodiscard]] static Result<std::shared_ptr<StoreCipher>> open(const std::string& directory,
                                                                 std::shared_ptr<crypto::KeyProvider> keys,
                                                                 std::shared_ptr<journal::IoBackend> io = nullptr);

  // Before this open's first write, once the journal is recovered (`next_sequence`: the sequence
  // the next record will take). Refuses a key file older than the journal (a record written by an
  // open it has not counted: KEYS restored from a backup would repeat nonces); then takes the next
  // open number, begins sealing at `next_sequence` if nothing was sealed yet, and saves KEYS
  // durably.
  [[nodiscard]] Status begin_writing(std::uint64_t next_sequence);

  // The journal's cipher: each record it seals takes this open's number. (The ciphers hold the
  // store, not the other way round.)
  [[nodiscard]] std::shared_ptr<journal::RecordCipher> records();
  // Every snapshot store's cipher.
  [[nodiscard]] std::shared_ptr<snapshots::StateCipher> states();
  // A projection's snapshot store's cipher: bound to the sealing epoch of now (below).
  [[nodiscard]] std::shared_ptr<snapshots::StateCipher> projection_states();

  // A stream's data key under master `version`: not_found when the stream's seed is punctured or
  // the provider lacks the version. Any thread.
  [[nodiscard]] Result<crypto::Key> stream_key(std::uint64_t stream_id, std::uint32_t version);
  // Makes stream `stream_id`'s key under the version this open seals with ready ahead of an
  // append, outside the engine's sequencing lock: the record sealer, under it, then finds the key
  // kept rather than deriving it (some microseconds, while every other appender waits). What it
  // cannot derive (an erased stream) the append refuses anyway. Any thread.
  void prepare(std::uint64_t stream_id) { (void)stream_key(stream_id, key_version_); }
  // The key snapshots are sealed with under master `version`. Any thread.
  [[nodiscard]] Result<crypto::Key> state_key(std::uint32_t version, std::uint64_t epoch);
  // The journal's chain key (annal/journal/chain.h) under the master this open seals with.
  [[nodiscard]] Result<std::shared_ptr<const journal::ChainKey>> chain_key();

  // Snapshot key epochs. Each erasure ends one: the snapshots sealed before it, which may hold
  // what projections made of the erased stream (and the engine's state, its name), are sealed
  // under a key the erasure destroys, in every copy of them. The current epoch is the first whose
  // seed-tree leaf is whole; snapshots are sealed under the sealing epoch, which an erasure moves
  // on (advance_sealing_epoch) before retire_snapshot_epochs destroys the ones below it, durably
  // (KEYS rewritten atomically). Any thread.
  [[nodiscard]] std::uint64_t snapshot_epoch();
  [[nodiscard]] std::uint64_t sealing_epoch();
  void advance_sealing_epoch(std::uint64_t epoch);
  [[nodiscard]] Status retire_snapshot_epochs();
  // The highest epoch of a snapshot opened so far: above snapshot_epoch(), an erasure was cut
  // short after its new snapshot was written (Engine's open retires the epochs below it).
  void saw_snapshot_epoch(std::uint64_t epoch) noexcept;
  [[nodiscard]] std::uint64_t newest_snapshot_epoch_seen() const noexcept {
    return newest_epoch_seen_.load(std::memory_order_acquire);
  }

  // Crypto-shredding: destroys `stream_id`'s seed in KEYS, durably (the seed tree punctured, the
  // file rewritten atomically), and drops every cached cipher of it, in every sealer and opener.
  // From then on its records open as erased (RecordOpener::erased). Idempotent. Called once the
  // erasure is decided (its record durable): should the file not be written, the seed is destroyed
  // in memory all the same and the error returned (the engine stops; its next open erases it
  // again from the journal's record). The reserved leaf
  // of the snapshot key (2^64-1) and the system stream (0) cannot be erased: invalid_argument.
  [[nodiscard]] Status erase(std::uint64_t stream_id);
  // Whether erase(stream_id) would be taken, checked before anything is written: its
  // invalid_argument for the store's own streams, or when the key file would grow past its limit.
  [[nodiscard]] Status check_erasable(std::uint64_t stream_id);
  [[nodiscard]] bool erased(std::uint64_t stream_id);
  // Counts erase() calls: caches compare it to drop what they hold of an erased stream.
  [[nodiscard]] std::uint64_t erasures() const noexcept { return erasures_.load(std::memory_order_acquire); }

  // annal rekey (annal/engine/rekey.h). A resealer opens a sealed record under the version it was
  // sealed with and seals it again under key_version() with this open's number (begin_writing
  // before the first reseal; stale() may be asked before); a record of an erased stream is never stale (it cannot be opened: it stays as it is).
  class Resealer : public journal::RecordResealer {
   public:
    // Records stale() saw under another version that stay as they are because their stream is
    // erased (no key opens them, under any version), each counted once.
    [[nodiscard]] virtual std::size_t erased_left() const noexcept = 0;
  };
  [[nodiscard]] std::unique_ptr<Resealer> resealer();
  // A snapshot's sealed state sealed anew under key_version(), in its own epoch, into `out` (the
  // same size). `current`: already under key_version(), nothing written; `destroyed`: its epoch's
  // key was destroyed by an erasure, so it cannot be read by anyone (it stays as it is).
  enum class StateReseal { resealed, current, destroyed };
  [[nodiscard]] Result<StateReseal> reseal_state(std::span<const std::byte> associated,
                                                 std::span<const std::byte> sealed, std::span<std::byte> out);
  // Whether the provider has master key `version` (its error if not).
  [[nodiscard]] Status has_master(std::uint32_t version);
  // The master key version KEYS was sealed under when read (key_version() once this open saved it).
  [[nodiscard]] std::uint32_t key_store_version() const noexcept { return stored_version_; }

  // What the openers need to know of the key state. Any thread.
  [[nodiscard]] std::uint64_t sealed_from() const { return sealed_from_.load(std::memory_order_acquire); }
  [[nodiscard]] bool made_at_this_open() const noexcept { return fresh_; }
  // Called by openers with each record's open number: the highest one seen.
  void saw_open_number(std::uint32_t number) noexcept;
  [[nodiscard]] std::uint32_t open_number() const noexcept { return open_number_; }
  [[nodiscard]] std::uint32_t key_version() const noexcept { return key_version_; }

 private:
  StoreCipher(std::string path, std::shared_ptr<crypto::KeyProvider> keys, std::shared_ptr<journal::IoBackend> io,
              crypto::StoreKeys state, bool fresh, std::uint32_t key_version);
  // Replaces KEYS with `state` sealed under the current master key, atomically and durably.
  [[nodiscard]] Status save(const crypto::StoreKeys& state);
  [[nodiscard]] Result<crypto::Key> master(std::uint32_t version);  // under mutex_
  // The key state with the seeds of `leaves` destroyed, for a save. Under mutex_.
  [[nodiscard]] crypto::StoreKeys punctured(std::span<const std::uint64_t> leaves);

  const std::string path_;  // DIR/KEYS
  const std::shared_ptr<crypto::KeyProvider> keys_;
  const std::shared_ptr<journal::IoBackend> io_;
  const bool fresh_;                // no KEYS was found: this open made the key state
  const std::uint32_t key_version_; // the master version this open seals under
  std::uint32_t open_number_ = 0;   // set by begin_writing, before any record is sealed
  std::uint32_t stored_version_ = 0;  // KEYS' master version: as read, then as saved
  std::atomic<std::uint64_t> sealed_from_;
  std::atomic<std::uint32_t> newest_open_seen_{0};
  std::atomic<std::uint64_t> erasures_{0};
  std::atomic<std::uint64_t> newest_epoch_seen_{0};

  std::mutex mutex_;
  crypto::StoreKeys state_;                    // under mutex_ (the seed tree is not thread-safe)
  std::uint64_t epoch_ = 0;          // under mutex_: the current snapshot key epoch
  std::uint64_t sealing_epoch_ = 0;  // under mutex_: at or above epoch_
  std::map<std::uint32_t, crypto::Key> masters_;  // under mutex_: fetched once per version
  // Derived stream keys by (stream, master version). Every append looks its stream's up twice
  // (prepare, then the sealer under the journal's lock), so they have a lock of their own that
  // lookups share; a change takes it exclusively after mutex_ (erase, or a key kept once its seed
  // is known not punctured).
  struct KeptId {
    std::uint64_t stream_id;
    std::uint32_t version;
    bool operator==(const KeptId&) const = default;
  };
  struct KeptIdHash {
    std::size_t operator()(const KeptId& id) const noexcept {
      return std::hash<std::uint64_t>{}(id.stream_id ^ (std::uint64_t{id.version} << 56));
    }
  };
  std::shared_mutex kept_mutex_;
  std::unordered_map<KeptId, crypto::Key, KeptIdHash> keys_kept_;  // under kept_mutex_
};

}  // namespace annal::engine
