#include "store_cipher.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <list>
#include <set>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "annal/base/assert.h"
#include "annal/base/little_endian.h"
#include "annal/crypto/aead.h"
#include "annal/crypto/hkdf.h"
#include "annal/crypto/key_file.h"
#include "annal/journal/small_file.h"
#include "event_codec.h"

namespace annal::engine {
namespace {

constexpr std::string_view kStateKeyLabel = "annal snapshot key v1";
// The seed tree's leaves that salt the snapshot keys: epoch e's is 2^64-1-e. The top 2^32 ids are
// kept for them: no stream has such an id (named streams count up from 2^63, the application's
// stay below it), and none of them is erased as a stream.
constexpr std::uint64_t kStateKeySeed = UINT64_MAX;
constexpr std::uint64_t kEpochsMax = std::uint64_t{1} << 32;
constexpr std::uint64_t epoch_leaf(std::uint64_t epoch) { return kStateKeySeed - epoch; }
constexpr std::size_t kStateEpochAt = 4;
constexpr std::size_t kStateNonceAt = 8;
constexpr std::size_t kStateOverhead = 8 + crypto::kNonceBytes + crypto::kTagBytes;
// Stream ciphers kept per sealer and per opener: each holds OpenSSL's key schedules (about a
// kilobyte); a miss costs a derivation (a few microseconds, docs/crypto.md).
constexpr std::size_t kCachedCiphers = 1024;
// Stream keys kept by the store (StoreCipher::stream_key): 32 bytes and a map node each.
constexpr std::size_t kKeysKept = std::size_t{1} << 18;
// Where KEYS names the master key version it is sealed under (crypto/store_keys.h).
constexpr std::size_t kKeyStoreVersionAt = 12;

// The system stream and the snapshot keys' leaves are the store's own: never erased as a stream.
Status refuse_own_stream(std::uint64_t stream_id) {
  if (stream_id != kSystemStream && stream_id <= epoch_leaf(kEpochsMax)) return {};
  return Status(ErrorCode::invalid_argument, "stream " + std::to_string(stream_id) + " is the store's own: not erasable");
}

// Raises `highest` to `value` if it is higher, from any thread.
template <class T>
void raise_to(std::atomic<T>& highest, T value) noexcept {
  T seen = highest.load(std::memory_order_relaxed);
  while (value > seen && !highest.compare_exchange_weak(seen, value, std::memory_order_acq_rel)) {
  }
}


// AES-256-GCM ciphers by (stream, master version), the most recently used kept. One thread's.
class CipherCache {
 public:
  explicit CipherCache(std::shared_ptr<StoreCipher> store) : store_(std::move(store)) {}

  Result<crypto::Aes256Gcm*> get(std::uint64_t stream_id, std::uint32_t version) {
    // A stream erased since: its key must not outlive it here. Rare, so everything goes.
    if (const std::uint64_t erasures = store_->erasures(); erasures != erasures_seen_) {
      index_.clear();
      lru_.clear();
      erasures_seen_ = erasures;
    }
    const Id id{stream_id, version};
    if (const auto found = index_.find(id); found != index_.end()) {
      lru_.splice(lru_.begin(), lru_, found->second);  // most recent first
      return &found->second->second;
    }
    auto key = store_->stream_key(stream_id, version);
    if (!key.ok()) return key.status();
    if (lru_.size() == kCachedCiphers) {
      // The least recently used one, keyed again: no allocation, no OpenSSL lookup.
      index_.erase(lru_.back().first);
      lru_.splice(lru_.begin(), lru_, std::prev(lru_.end()));
      lru_.front().second.rekey(key.value());
      lru_.front().first = id;
    } else {
      lru_.emplace_front(id, crypto::Aes256Gcm::make(key.value()));
    }
    index_.emplace(id, lru_.begin());
    return &lru_.front().second;
  }

 private:
  struct Id {
    std::uint64_t stream_id;
    std::uint32_t version;
    bool operator==(const Id&) const = default;
  };
  struct IdHash {
    std::size_t operator()(const Id& id) const noexcept { return std::hash<std::uint64_t>{}(id.stream_id * 31 + id.version); }
  };
  const std::shared_ptr<StoreCipher> store_;
  std::uint64_t erasures_seen_ = 0;
  std::list<std::pair<Id, crypto::Aes256Gcm>> lru_;
  std::unordered_map<Id, std::list<std::pair<Id, crypto::Aes256Gcm>>::iterator, IdHash> index_;
};

// The stream whose key seals a record: its own; for a stream's name, the named stream's (event_codec.h).
std::uint64_t key_stream(const journal::RecordHeader& header) {
  return header.stream_id == kSystemStream && header.type == kTypeStreamNamed ? header.stream_version : header.stream_id;
}

// The bytes at the start of a record's plain payload that stay in clear (authenticated, as part of
// the additional data): what the engine needs of a record whose stream was erased. An event's
// flags and back pointer (its ids are the application's, sealed with the payload); a name's id.
std::size_t clear_bytes(const journal::RecordHeader& header) {
  if (header.stream_id != kSystemStream) return kMetadataBytesMin;
  if (header.type == kTypeStreamNamed) return 8;
  if (header.type == kTypeEventTypeNamed) return 2;
  return 0;
}

// The additional data of a seal: the record's header fields, then its clear bytes.
struct Associated {
  Associated(std::span<const std::byte> header, std::span<const std::byte> clear) : size(header.size() + clear.size()) {
    ANNAL_ASSERT(size <= bytes.size());
    std::memcpy(bytes.data(), header.data(), header.size());
    if (!clear.empty()) std::memcpy(bytes.data() + header.size(), clear.data(), clear.size());
  }
  std::span<const std::byte> view() const { return std::span(bytes).first(size); }

  std::array<std::byte, journal::kAssociatedBytes + kMetadataBytesMin> bytes;
  std::size_t size;
};

// A record's nonce: its sequence, then the open number that wrote it.
std::array<std::byte, crypto::kNonceBytes> record_nonce(std::uint64_t sequence, std::uint32_t open_number) {
  std::array<std::byte, crypto::kNonceBytes> nonce{};
  store_le<std::uint64_t>(nonce, 0, sequence);
  store_le<std::uint32_t>(nonce, 8, open_number);
  return nonce;
}

class RecordSealer final : public journal::RecordCipher {
 public:
  explicit RecordSealer(std::shared_ptr<StoreCipher> store) : store_(store), ciphers_(std::move(store)) {}

  std::size_t overhead() const noexcept override { return StoreCipher::kRecordOverhead; }

  void seal(const journal::RecordHeader& header, std::span<const std::byte> associated, std::span<const std::byte> prefix,
            std::span<const std::byte> payload, std::span<std::byte> out) override {
    // begin_writing has numbered this open, before the journal took any record.
    ANNAL_ASSERT(store_->open_number() != 0);
    ANNAL_ASSERT(out.size() == prefix.size() + payload.size() + StoreCipher::kRecordOverhead);
    auto cipher = ciphers_.get(key_stream(header), store_->key_version());
    // The master key of this version was fetched at open and the seed tree is in memory: only an
    // allocation failing in OpenSSL can fail here, and a record cannot be left unsealed.
    if (!cipher.ok()) {
      std::fprintf(stderr, "annal: cannot seal the record at sequence %llu: %s\n",
                   static_cast<unsigned long long>(header.sequence), cipher.status().to_string().c_str());
      std::abort();
    }
    store_le<std::uint32_t>(out, 0, store_->key_version());
    store_le<std::uint32_t>(out, 4, store_->open_number());
    const std::size_t clear = clear_bytes(header);
    ANNAL_ASSERT(prefix.size() >= clear);
    std::memcpy(out.data() + 8, prefix.data(), prefix.size());
    if (!payload.empty()) std::memcpy(out.data() + 8 + prefix.size(), payload.data(), payload.size());
    const std::span<std::byte> body = out.subspan(8 + clear);
    const auto nonce = record_nonce(header.sequence, store_->open_number());
    cipher.value()->seal(nonce, Associated(associated, prefix.first(clear)).view(),
                         body.first(body.size() - crypto::kTagBytes), body);
  }

  std::unique_ptr<journal::RecordOpener> opener() const override;

 private:
  const std::shared_ptr<StoreCipher> store_;
  CipherCache ciphers_;  // the appending thread's (seal runs under the journal's append lock)
};

class RecordOpenerImpl final : public journal::RecordOpener {
 public:
  explicit RecordOpenerImpl(std::shared_ptr<StoreCipher> store) : store_(store), ciphers_(std::move(store)) {}

  Status open(const journal::RecordHeader& header, std::span<const std::byte> associated,
              std::span<const std::byte> sealed, std::span<std::byte> out) override {
    const auto version = load_le<std::uint32_t>(sealed, 0);
    const auto open_number = load_le<std::uint32_t>(sealed, 4);
    // A key state made at this open seals only what this open writes.
    if (store_->made_at_this_open() && open_number != store_->open_number()) {
      return Status(ErrorCode::not_found, "this store had no key file (" + std::string(kKeysFileName) +
                                              ") when opened, so it has no key for its sealed records: restore " +
                                              kKeysFileName + " from where it was kept (a backup)");
    }
    const std::size_t clear = clear_bytes(header);
    if (sealed.size() < StoreCipher::kRecordOverhead + clear) {
      return Status(ErrorCode::corruption, "a sealed payload shorter than its clear part");
    }
    auto cipher = ciphers_.get(key_stream(header), version);
    if (!cipher.ok()) return cipher.status();
    const std::span<const std::byte> in_clear = sealed.subspan(8, clear);
    const Status opened = cipher.value()->open(record_nonce(header.sequence, open_number),
                                               Associated(associated, in_clear).view(), sealed.subspan(8 + clear),
                                               out.subspan(clear));
    if (opened.ok()) std::memcpy(out.data(), in_clear.data(), clear);
    if (!opened.ok()) {
      return Status(ErrorCode::corruption, "it does not authenticate under stream " + std::to_string(key_stream(header)) +
                                               "'s key of master version " + std::to_string(version) +
                                               ": another key, or bytes altered or moved");
    }
    store_->saw_open_number(open_number);
    return {};
  }

  std::optional<std::size_t> erased(const journal::RecordHeader& header, std::span<const std::byte> sealed,
                                    std::span<std::byte> out) override {
    const std::size_t clear = clear_bytes(header);
    if (sealed.size() < StoreCipher::kRecordOverhead + clear || !store_->erased(key_stream(header))) return std::nullopt;
    std::memcpy(out.data(), sealed.data() + 8, clear);
    return clear;
  }

  Status check_plain(const journal::RecordHeader& header) override {
    const std::uint64_t from = store_->sealed_from();
    if (from != 0 && header.sequence >= from) {
      return Status(ErrorCode::corruption, "a record in clear at sequence " + std::to_string(header.sequence) +
                                               ", where this store seals every record from " + std::to_string(from) +
                                               ": the store did not write it");
    }
    return {};
  }

 private:
  const std::shared_ptr<StoreCipher> store_;
  CipherCache ciphers_;
};

std::unique_ptr<journal::RecordOpener> RecordSealer::opener() const {
  return std::make_unique<RecordOpenerImpl>(store_);
}

// Seals under the master key version of this open and a snapshot key epoch: `bound`, if given
// (a projection's snapshots: bound to the epoch current when it was added, so that one running
// through an erasure cannot seal what it made of the erased stream under a key that outlives
// it), else the store's sealing epoch (the engine's own state). Opens under the file's epoch.
class StateSealer final : public snapshots::StateCipher {
 public:
  StateSealer(std::shared_ptr<StoreCipher> store, std::optional<std::uint64_t> bound)
      : store_(std::move(store)), bound_(bound) {}

  std::size_t overhead() const noexcept override { return kStateOverhead; }
  std::uint64_t state_bytes_max() const noexcept override { return crypto::kPlaintextBytesMax; }

  Status seal(std::span<const std::byte> associated, std::span<const std::byte> state, std::span<std::byte> out) override {
    const std::uint32_t version = store_->key_version();
    const std::uint64_t epoch = bound_.value_or(store_->sealing_epoch());
    auto cipher = cipher_of(version, epoch);
    if (!cipher.ok()) return cipher.status();
    store_le<std::uint32_t>(out, 0, version);
    store_le<std::uint32_t>(out, kStateEpochAt, static_cast<std::uint32_t>(epoch));
    const std::span<std::byte> nonce = out.subspan(kStateNonceAt, crypto::kNonceBytes);
    if (RAND_bytes(reinterpret_cast<unsigned char*>(nonce.data()), static_cast<int>(nonce.size())) != 1) {
      return Status(ErrorCode::failed, "OpenSSL could not make a random nonce for a snapshot");
    }
    cipher.value().seal(std::span<const std::byte, crypto::kNonceBytes>(nonce.data(), crypto::kNonceBytes), associated,
                        state, out.subspan(kStateNonceAt + crypto::kNonceBytes));
    return {};
  }

  Status open(std::span<const std::byte> associated, std::span<const std::byte> sealed, std::span<std::byte> out) override {
    const auto version = load_le<std::uint32_t>(sealed, 0);
    const auto epoch = load_le<std::uint32_t>(sealed, kStateEpochAt);
    // Below the current epoch: an erasure destroyed its key on purpose. not_found, not damage.
    if (epoch < store_->snapshot_epoch()) {
      return Status(ErrorCode::not_found, "sealed under snapshot key epoch " + std::to_string(epoch) +
                                              ", which an erasure destroyed (erase_stream): unreadable by design");
    }
    auto cipher = cipher_of(version, epoch);
    if (!cipher.ok()) return Status(ErrorCode::corruption, cipher.status().message());
    const Status opened = cipher.value().open(sealed.subspan(kStateNonceAt).first<crypto::kNonceBytes>(), associated,
                                              sealed.subspan(kStateNonceAt + crypto::kNonceBytes), out);
    if (!opened.ok()) {
      return Status(ErrorCode::corruption, "the state does not authenticate under the snapshot key of master version " +
                                               std::to_string(version) + ", epoch " + std::to_string(epoch) +
                                               ": another key, or bytes altered or moved");
    }
    store_->saw_snapshot_epoch(epoch);
    return {};
  }

  Status check_plain(std::uint64_t sequence) override {
    const std::uint64_t from = store_->sealed_from();
    if (from != 0 && sequence >= from) {
      return Status(ErrorCode::corruption, "a snapshot in clear at sequence " + std::to_string(sequence) +
                                               ", where this store seals everything from " + std::to_string(from) +
                                               ": the store did not write it");
    }
    return {};
  }

 private:
  // Made per call: snapshot stores call from several threads, and snapshots are rare.
  Result<crypto::Aes256Gcm> cipher_of(std::uint32_t version, std::uint64_t epoch) {
    auto key = store_->state_key(version, epoch);
    if (!key.ok()) return key.status();
    return crypto::Aes256Gcm::make(key.value());
  }

  const std::shared_ptr<StoreCipher> store_;
  const std::optional<std::uint64_t> bound_;
};

// Seals records anew under the store's current master version: annal rekey's.
class RecordResealerImpl final : public StoreCipher::Resealer {
 public:
  explicit RecordResealerImpl(const std::shared_ptr<StoreCipher>& store) : store_(store), opener_(store), sealer_(store) {}
  ~RecordResealerImpl() override { OPENSSL_cleanse(plain_.data(), plain_.size()); }

  bool stale(const journal::RecordHeader& header, std::span<const std::byte> sealed) override {
    if (sealed.size() < StoreCipher::kRecordOverhead) return false;  // not the engine's: reseal would refuse it
    // Every sealed record passes here before any is resealed: the newest open number among them
    // tells begin_writing whether KEYS is older than the journal.
    store_->saw_open_number(load_le<std::uint32_t>(sealed, 4));
    const auto version = load_le<std::uint32_t>(sealed, 0);
    if (version == store_->key_version()) return false;
    if (store_->erased(key_stream(header))) {
      // The survey passes every record in order before the copies pass some again.
      if (header.sequence > counted_through_) ++erased_left_;
      counted_through_ = std::max(counted_through_, header.sequence);
      return false;
    }
    counted_through_ = std::max(counted_through_, header.sequence);
    versions_.insert(version);
    return true;
  }

  std::size_t erased_left() const noexcept override { return erased_left_; }

  Status ready() override {
    for (const std::uint32_t version : versions_) {
      if (version > store_->key_version()) return newer_than_given(version);
      if (Status has = store_->has_master(version); !has.ok()) {
        return Status(ErrorCode::invalid_argument,
                      "records are sealed under master key version " + std::to_string(version) + ", which the keys "
                      "given lack (" + has.message() + "): rekey needs every version the store holds data under, "
                      "the newest included");
      }
    }
    return {};
  }

  Status reseal(const journal::RecordHeader& header, std::span<const std::byte> associated,
                std::span<const std::byte> sealed, std::span<std::byte> out) override {
    ANNAL_ASSERT(out.size() == sealed.size());
    const auto version = load_le<std::uint32_t>(sealed, 0);
    if (version > store_->key_version()) return newer_than_given(version);
    plain_.resize(sealed.size() - StoreCipher::kRecordOverhead);
    if (Status opened = opener_.open(header, associated, sealed, plain_); !opened.ok()) return opened;
    sealer_.seal(header, associated, plain_, {}, out);
    OPENSSL_cleanse(plain_.data(), plain_.size());
    return {};
  }

 private:
  Status newer_than_given(std::uint32_t version) const {
    return Status(ErrorCode::invalid_argument, "records are sealed under master key version " + std::to_string(version) +
                                                   ", newer than the newest given (" +
                                                   std::to_string(store_->key_version()) +
                                                   "): rekey with the newest key file");
  }

  const std::shared_ptr<StoreCipher> store_;
  RecordOpenerImpl opener_;
  RecordSealer sealer_;
  std::set<std::uint32_t> versions_;  // of the stale records seen
  std::uint64_t counted_through_ = 0;  // the highest sequence stale() has seen
  std::size_t erased_left_ = 0;
  std::vector<std::byte> plain_;  // one record's plain payload, between opening and sealing
};

}  // namespace

StoreCipher::StoreCipher(std::string path, std::shared_ptr<crypto::KeyProvider> keys,
                         std::shared_ptr<journal::IoBackend> io, crypto::StoreKeys state, bool fresh,
                         std::uint32_t key_version)
    : path_(std::move(path)),
      keys_(std::move(keys)),
      io_(std::move(io)),
      fresh_(fresh),
      key_version_(key_version),
      sealed_from_(state.sealed_from),
      state_(std::move(state)) {
  // The current epoch: the first whose leaf an erasure has not destroyed.
  while (epoch_ < kEpochsMax && state_.seeds.punctured(epoch_leaf(epoch_))) ++epoch_;
  sealing_epoch_ = epoch_;
}

Result<std::shared_ptr<StoreCipher>> StoreCipher::open(const std::string& directory,
                                                       std::shared_ptr<crypto::KeyProvider> keys,
                                                       std::shared_ptr<journal::IoBackend> io) {
  ANNAL_ASSERT(keys != nullptr);
  if (!io) io = journal::make_posix_backend();
  const std::string path = directory + "/" + kKeysFileName;
  std::optional<crypto::StoreKeys> state;
  std::uint32_t stored_version = 0;
  // Whoever else could write KEYS could put back an older one, and nonces would repeat.
  if (Status private_file = io->check_private(path); private_file.code() != ErrorCode::not_found) {
    if (!private_file.ok()) return Status(private_file.code(), "key store: " + private_file.message());
    auto bytes = journal::read_small_file(*io, path, crypto::kStoreKeysBytesMax);
    if (!bytes.ok()) return bytes.status();
    auto loaded = crypto::open_store_keys(path, bytes.value(), *keys);
    if (!loaded.ok()) return loaded.status();
    stored_version = load_le<std::uint32_t>(bytes.value(), kKeyStoreVersionAt);
    state = std::move(loaded).value();
  }
  const bool fresh = !state.has_value();
  if (fresh) {
    auto seeds = crypto::SeedTree::create();
    if (!seeds.ok()) return seeds.status();
    state.emplace(crypto::StoreKeys{.opens = 0, .sealed_from = 0, .seeds = std::move(seeds).value()});
  }
  const std::uint32_t version = keys->current_version();
  std::shared_ptr<StoreCipher> cipher(
      new StoreCipher(path, std::move(keys), std::move(io), std::move(*state), fresh, version));
  cipher->stored_version_ = stored_version;
  // The current master now, so that sealing never waits for the provider (or fails on it).
  {
    std::lock_guard lock(cipher->mutex_);
    if (auto master = cipher->master(version); !master.ok()) return master.status();
  }
  return cipher;
}

Status StoreCipher::save(const crypto::StoreKeys& state) {
  auto bytes = crypto::seal_store_keys(path_, state, *keys_);
  if (!bytes.ok()) return bytes.status();
  return journal::replace_small_file(*io_, path_, bytes.value(), journal::OpenMode::create_private);
}

Status StoreCipher::begin_writing(std::uint64_t next_sequence) {
  std::lock_guard lock(mutex_);
  ANNAL_ASSERT(open_number_ == 0);
  if (const std::uint32_t seen = newest_open_seen_.load(std::memory_order_acquire); seen > state_.opens) {
    return Status(ErrorCode::invalid_argument,
                  "key store " + path_ + " counts " + std::to_string(state_.opens) +
                      " opens, but the journal holds a record written by open " + std::to_string(seen) +
                      ": the key file is older than the journal (restored from a backup?). Writing with it would "
                      "reuse nonces; put back the newest " + kKeysFileName);
  }
  if (state_.opens >= UINT32_MAX) {
    return Status(ErrorCode::invalid_argument, "key store " + path_ + ": 2^32 opens counted, the most its nonces allow");
  }
  const std::uint64_t opens = state_.opens;
  const std::uint64_t sealed_from = state_.sealed_from;
  ++state_.opens;
  if (state_.sealed_from == 0) state_.sealed_from = next_sequence;
  if (Status saved = save(state_); !saved.ok()) {
    state_.opens = opens;
    state_.sealed_from = sealed_from;
    return saved;
  }
  open_number_ = static_cast<std::uint32_t>(state_.opens);
  stored_version_ = key_version_;
  sealed_from_.store(state_.sealed_from, std::memory_order_release);
  return {};
}

std::shared_ptr<journal::RecordCipher> StoreCipher::records() { return std::make_shared<RecordSealer>(shared_from_this()); }

std::shared_ptr<snapshots::StateCipher> StoreCipher::states() {
  return std::make_shared<StateSealer>(shared_from_this(), std::nullopt);
}

std::shared_ptr<snapshots::StateCipher> StoreCipher::projection_states() {
  return std::make_shared<StateSealer>(shared_from_this(), sealing_epoch());
}

Result<crypto::Key> StoreCipher::master(std::uint32_t version) {
  if (const auto found = masters_.find(version); found != masters_.end()) return found->second.clone();
  auto key = keys_->master_key(version);
  if (!key.ok()) return key.status();
  return masters_.emplace(version, std::move(key).value()).first->second.clone();
}

Result<std::shared_ptr<const journal::ChainKey>> StoreCipher::chain_key() {
  std::lock_guard lock(mutex_);
  auto master_key = master(key_version_);
  if (!master_key.ok()) return master_key.status();
  auto key = crypto::chain_key(master_key.value(), key_version_);
  if (!key.ok()) return key.status();
  return std::make_shared<const journal::ChainKey>(journal::ChainKey{.version = key_version_, .key = std::move(key).value()});
}

Result<crypto::Key> StoreCipher::stream_key(std::uint64_t stream_id, std::uint32_t version) {
  // Derived keys are kept (32 bytes each): a derivation walks the last levels of the seed tree and
  // runs HKDF, some microseconds, where the ciphers' caches hold a thousand streams' key schedules.
  const KeptId id{stream_id, version};
  {
    std::shared_lock kept(kept_mutex_);
    if (const auto found = keys_kept_.find(id); found != keys_kept_.end()) return found->second.clone();
  }
  std::unique_lock lock(mutex_);
  auto from = state_.seeds.ancestor(stream_id);
  if (!from.ok()) return from.status();
  auto master_key = master(version);
  if (!master_key.ok()) return master_key.status();
  // The derivation itself outside the lock: appenders meeting new streams (prepare) derive side by
  // side instead of queueing, and the journal's sealer, which takes this lock, does not wait for them.
  lock.unlock();
  const crypto::Key seed = crypto::SeedTree::descend(from.value(), stream_id);
  auto key = crypto::stream_key(master_key.value(), seed.bytes(), stream_id, version);
  if (!key.ok()) return key.status();
  lock.lock();
  // An erasure of another stream leaves this one's seed as it was; of this one, the key must not
  // be kept nor given.
  if (state_.seeds.punctured(stream_id)) return state_.seeds.ancestor(stream_id).status();
  std::unique_lock kept(kept_mutex_);
  if (keys_kept_.size() >= kKeysKept) keys_kept_.clear();  // rare, and cheaper than an LRU's upkeep
  keys_kept_.try_emplace(id, key.value().clone());
  return key;
}

Result<crypto::Key> StoreCipher::state_key(std::uint32_t version, std::uint64_t epoch) {
  if (epoch >= kEpochsMax) return Status(ErrorCode::corruption, "snapshot key epoch " + std::to_string(epoch));
  std::lock_guard lock(mutex_);
  auto master_key = master(version);
  if (!master_key.ok()) return master_key.status();
  // Salted with a seed of this store's tree, so that two stores sharing a master key (tenants of
  // one service) do not share a snapshot key: a snapshot moved between them does not open.
  auto salt = state_.seeds.seed(epoch_leaf(epoch));
  if (!salt.ok()) {
    return Status(ErrorCode::not_found, "the snapshot key of epoch " + std::to_string(epoch) +
                                            " was destroyed by an erasure (erase_stream): what was sealed under it is "
                                            "gone for good (a projection running since before the erasure takes "
                                            "snapshots again once the engine is reopened)");
  }
  return crypto::derive_key(master_key.value(), salt.value().bytes(), std::as_bytes(std::span(kStateKeyLabel)));
}

std::uint64_t StoreCipher::sealing_epoch() {
  std::lock_guard lock(mutex_);
  return sealing_epoch_;
}

void StoreCipher::advance_sealing_epoch(std::uint64_t epoch) {
  std::lock_guard lock(mutex_);
  ANNAL_ASSERT(epoch < kEpochsMax);
  sealing_epoch_ = std::max(sealing_epoch_, epoch);
}

Status StoreCipher::retire_snapshot_epochs() {
  std::lock_guard lock(mutex_);
  if (epoch_ == sealing_epoch_) return {};
  std::vector<std::uint64_t> leaves;
  for (std::uint64_t epoch = epoch_; epoch < sealing_epoch_; ++epoch) leaves.push_back(epoch_leaf(epoch));
  crypto::StoreKeys next = punctured(leaves);
  if (Status saved = save(next); !saved.ok()) return saved;
  state_.seeds = std::move(next.seeds);
  epoch_ = sealing_epoch_;
  return {};
}

std::uint64_t StoreCipher::snapshot_epoch() {
  std::lock_guard lock(mutex_);
  return epoch_;
}

void StoreCipher::saw_snapshot_epoch(std::uint64_t epoch) noexcept { raise_to(newest_epoch_seen_, epoch); }

crypto::StoreKeys StoreCipher::punctured(std::span<const std::uint64_t> leaves) {
  // Punctured on a copy: the tree in memory changes only once the file has.
  crypto::StoreKeys next{.opens = state_.opens, .sealed_from = state_.sealed_from, .seeds = state_.seeds.clone()};
  for (const std::uint64_t leaf : leaves) next.seeds.puncture(leaf);
  return next;
}

Status StoreCipher::check_erasable(std::uint64_t stream_id) {
  if (Status own = refuse_own_stream(stream_id); !own.ok()) return own;
  std::lock_guard lock(mutex_);
  if (state_.seeds.punctured(stream_id)) return {};
  // The erasure destroys the stream's seed, and then the snapshot key's epoch: both must fit.
  const std::array<std::uint64_t, 2> leaves = {stream_id, epoch_leaf(sealing_epoch_)};
  crypto::StoreKeys next = punctured(leaves);
  if (sealing_epoch_ + 1 >= kEpochsMax) return Status(ErrorCode::invalid_argument, "no snapshot key epoch is left");
  return crypto::store_keys_fit(path_, next);
}

Status StoreCipher::erase(std::uint64_t stream_id) {
  if (Status own = refuse_own_stream(stream_id); !own.ok()) return own;
  std::lock_guard lock(mutex_);
  if (state_.seeds.punctured(stream_id)) return {};
  const std::array<std::uint64_t, 1> leaves = {stream_id};
  crypto::StoreKeys next = punctured(leaves);
  // The erasure is decided before this (its record is durable in the journal): a key store that
  // cannot be written stops the engine, and the next open finishes the erasure. Until then the
  // seed goes from memory all the same, so that this store gives none of the stream back.
  const Status saved = save(next);
  state_.seeds = std::move(next.seeds);
  {
    std::unique_lock kept(kept_mutex_);
    std::erase_if(keys_kept_, [&](const auto& entry) { return entry.first.stream_id == stream_id; });
  }
  erasures_.fetch_add(1, std::memory_order_acq_rel);
  return saved;
}

Status StoreCipher::has_master(std::uint32_t version) {
  std::lock_guard lock(mutex_);
  return master(version).status();
}

bool StoreCipher::erased(std::uint64_t stream_id) {
  std::lock_guard lock(mutex_);
  return state_.seeds.punctured(stream_id);
}

void StoreCipher::saw_open_number(std::uint32_t number) noexcept { raise_to(newest_open_seen_, number); }

std::unique_ptr<StoreCipher::Resealer> StoreCipher::resealer() {
  // Made before begin_writing (stale() only looks); reseal() seals under this open's number, so
  // only after it (the sealer asserts so).
  return std::make_unique<RecordResealerImpl>(shared_from_this());
}

Result<StoreCipher::StateReseal> StoreCipher::reseal_state(std::span<const std::byte> associated,
                                                          std::span<const std::byte> sealed, std::span<std::byte> out) {
  ANNAL_ASSERT(out.size() == sealed.size());
  if (sealed.size() < kStateOverhead) return Status(ErrorCode::corruption, "a sealed state shorter than its seal");
  const auto version = load_le<std::uint32_t>(sealed, 0);
  const auto epoch = load_le<std::uint32_t>(sealed, kStateEpochAt);
  if (version == key_version_) return StateReseal::current;
  if (version > key_version_) {
    return Status(ErrorCode::invalid_argument, "sealed under master key version " + std::to_string(version) +
                                                   ", newer than the newest given (" + std::to_string(key_version_) +
                                                   "): rekey with the newest key file");
  }
  if (epoch < snapshot_epoch()) return StateReseal::destroyed;
  StateSealer sealer(shared_from_this(), epoch);  // in its own epoch: an erasure still ends it
  std::vector<std::byte> plain(sealed.size() - kStateOverhead);
  Status done = sealer.open(associated, sealed, plain);
  if (done.ok()) done = sealer.seal(associated, plain, out);
  OPENSSL_cleanse(plain.data(), plain.size());
  if (!done.ok()) return done;
  return StateReseal::resealed;
}

}  // namespace annal::engine
