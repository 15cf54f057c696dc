// Engine: see engine.h. docs/engine.md explains the sequencing and its measurements.
#include "annal/engine/engine.h"

#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <tuple>

#include "annal/base/thread_role.h"
#include "annal/base/user_code.h"
#include "annal/base/wall_clock.h"
#include "annal/journal/reader.h"
#include "annal/ringbuf/sequence_group.h"
#include "catalog.h"
#include "durability_notifier.h"
#include "engine_state.h"
#include "event_codec.h"
#include "idempotency_window.h"
#include "live_ring.h"
#include "projection_runner.h"
#include "store_cipher.h"
#include "sequencer_thread.h"
#include "stream_index.h"

namespace annal::engine {
namespace {

// Destroys `object` and constructs a new one in its place (references to it stay valid).
template <class T, class... Args>
void renew(T& object, Args&&... args) {
  std::destroy_at(&object);
  std::construct_at(&object, std::forward<Args>(args)...);
}

// A stream read jumps from event to event; each jump reads about one index interval from the
// journal, so its chunk need not be large.
constexpr std::size_t kStreamReadChunkBytes = 4u << 10;
constexpr auto kReadDurableWait = std::chrono::seconds(5);
// A state snapshot waits this long for the log to hold its sequence durably, then gives up (the
// next one is taken later).
constexpr auto kStateDurableWait = std::chrono::seconds(30);

Status bad_option(const std::string& what) { return Status(ErrorCode::invalid_argument, "engine options: " + what); }

Status check_options(const Options& options) {
  // The engine sizes records and batches, and seals snapshots, for a cipher it makes itself
  // (docs/security.md: Options::encryption, to come); one slipped in underneath would be neither.
  if (options.journal.cipher) {
    return bad_option("journal.cipher is the engine's to set (encryption at rest is not yet offered by the engine: "
                      "docs/security.md); leave it empty");
  }
  if (!std::has_single_bit(options.ring_capacity) || options.ring_capacity > (std::size_t{1} << 24)) {
    return bad_option("ring_capacity must be a power of two up to 2^24, not " + std::to_string(options.ring_capacity));
  }
  if (options.events_per_append_max == 0 || options.events_per_append_max > (1u << 16)) {
    return bad_option("events_per_append_max must be 1 to 65536");
  }
  // An append may define its stream and one type per event before the events themselves.
  if (options.ring_capacity < 2 * options.events_per_append_max + 1) {
    return bad_option("ring_capacity " + std::to_string(options.ring_capacity) +
                      " cannot hold one whole append (2 x events_per_append_max + 1 slots)");
  }
  if (options.event_bytes_max == 0 || options.event_bytes_max > (64u << 20)) {
    return bad_option("event_bytes_max must be 1 byte to 64 MiB");
  }
  if (options.ring_slot_bytes > options.event_bytes_max + kMetadataBytesMax) {
    return bad_option("ring_slot_bytes is larger than any event can be");
  }
  if (options.idempotency_window > (std::size_t{1} << 24)) return bad_option("idempotency_window is over 2^24 ids");
  if (options.live_subscriptions_max > ringbuf::SequenceGroup::kMembersMax) {
    return bad_option("live_subscriptions_max is over " + std::to_string(ringbuf::SequenceGroup::kMembersMax));
  }
  if (options.index_interval_bytes < 512) return bad_option("index_interval_bytes is under 512");
  if (options.subscriber_lag_max >= options.ring_capacity) {
    return bad_option("subscriber_lag_max " + std::to_string(options.subscriber_lag_max) + " is not below ring_capacity");
  }
  if (options.state_snapshots_kept == 0) return bad_option("state_snapshots_kept must be at least 1");
  return {};
}

// What sealing adds to each record's payload (none in clear).
std::size_t seal_overhead(const Options& options) { return options.encryption ? StoreCipher::kRecordOverhead : 0; }

journal::Options journal_options(const Options& options) {
  journal::Options out = options.journal;
  const std::size_t event = options.event_bytes_max + kMetadataBytesMax + seal_overhead(options);
  const std::size_t name = kNamePrefixBytesMax + kNameBytesMax + seal_overhead(options);
  out.record_bytes_max = journal::kRecordHeaderBytes + std::max(event, name);
  // One event of the largest size fits in a commit with the records that may come before it in
  // its append: a new stream's name and a new type's.
  out.commit_bytes_max =
      std::max(out.commit_bytes_max, journal::padded_record_bytes(event) + 2 * journal::padded_record_bytes(name));
  out.index_interval_bytes = options.index_interval_bytes;
  return out;
}

// The journal's options for opening `directory`, with the engine's witness of what the log held:
// its newest intact state snapshot past the log's end (written only once the log held that
// sequence durably, snapshot_state), which proves the log lost acknowledged events. (A store last
// written under Durability::none and opened under another mode after a power cut may be refused
// for a snapshot of what the cut took back: accept_data_loss then.) With the store's cipher, if it
// is encrypted.
journal::Options journal_options(const Options& options, const std::string& directory,
                                 std::shared_ptr<journal::IoBackend> io, const std::shared_ptr<StoreCipher>& cipher) {
  journal::Options out = journal_options(options);
  if (cipher) out.cipher = cipher->records();
  // Under Durability::none a state snapshot waited only for its sequence to be written, which a
  // power cut may take back: no witness then.
  if (options.journal.durability == journal::Durability::none) return out;
  out.durable_witness = [directory, io = std::move(io)](std::uint64_t last) -> std::optional<journal::DurableWitness> {
    snapshots::SnapshotStore store(directory, io, 1);
    const auto newest = store.newest_intact_after(kEngineStateName, last);
    if (!newest.ok() || !newest.value()) return std::nullopt;
    return journal::DurableWitness{*newest.value(),
                                   snapshots::snapshot_file_name(kEngineStateName, *newest.value())};
  };
  return out;
}

// The store's cipher under Options::encryption; null in clear, where a key file says the store is
// encrypted is refused.
Result<std::shared_ptr<StoreCipher>> store_cipher(const std::string& directory, const Options& options,
                                                  const std::shared_ptr<journal::IoBackend>& io) {
  if (options.encryption) {
    auto cipher = StoreCipher::open(directory, options.encryption, io);
    if (!cipher.ok() || !cipher.value()->made_at_this_open()) return cipher;
    // No key file, and a journal: turning encryption on, or the key file lost. Its newest record
    // tells, read without writing anything (a writable open would).
    auto files = io->list(directory);
    if (!files.ok()) return files.status();
    const bool has_log = std::any_of(files.value().begin(), files.value().end(),
                                     [](const std::string& name) { return name.ends_with(".log"); });
    if (!has_log) return cipher;
    journal::Options reading = journal_options(options);
    reading.cipher = cipher.value()->records();
    auto existing = journal::Journal::open_read_only(directory, reading, io);
    if (!existing.ok()) return existing.status();
    if (const std::uint64_t last = existing.value()->last_sequence(); last != 0) {
      if (auto newest = existing.value()->read(last, 1); !newest.ok()) return newest.status();
    }
    return cipher;
  }
  if (io->check_private(directory + "/" + kKeysFileName).code() != ErrorCode::not_found) {
    return Status(ErrorCode::invalid_argument, directory + " is encrypted (it has a key file, " + kKeysFileName +
                                                   "): open it with its master keys (Options::encryption; the annal tools take --key-file FILE or "
                                                   "ANNAL_KEY_FILE)");
  }
  return std::shared_ptr<StoreCipher>();
}

std::string describe(const StreamRef& stream) {
  return stream.by_name() ? "stream \"" + std::string(stream.name()) + "\""
                          : "stream " + std::to_string(stream.stream_id());
}

std::string describe(std::optional<std::uint64_t> version) {
  return version ? "its last version is " + std::to_string(*version) : "it has no events";
}

Status check_name(std::string_view what, std::string_view name) {
  if (name.empty() || name.size() > kNameBytesMax) {
    return Status(ErrorCode::invalid_argument, std::string(what) + " names are 1 to " + std::to_string(kNameBytesMax) +
                                                   " bytes, not " + std::to_string(name.size()));
  }
  return {};
}

// SnapshotStore::newest, with a log line for each snapshot passed over (damaged, another schema).
Result<std::optional<snapshots::SnapshotStore::Loaded>> newest_snapshot(snapshots::SnapshotStore& store,
                                                                         std::string_view name, std::uint32_t schema,
                                                                         std::uint64_t max_sequence) {
  std::vector<snapshots::SnapshotStore::Skipped> skipped;
  auto newest = store.newest(name, schema, max_sequence, &skipped);
  for (const auto& passed : skipped) {
    std::fprintf(stderr, "annal: snapshot %s passed over: %s\n", passed.file.c_str(), passed.why.to_string().c_str());
  }
  return newest;
}

Event to_event(const EventView& view) { return Event{view.header, {view.payload.begin(), view.payload.end()}}; }

class EngineImpl final : public Engine {
 public:
  EngineImpl(std::string directory, const Options& options, std::unique_ptr<journal::Journal> journal,
             std::shared_ptr<journal::IoBackend> io, bool read_only, std::shared_ptr<StoreCipher> cipher)
      : directory_(std::move(directory)), io_(std::move(io)), read_only_(read_only), options_(options),
        commit_bytes_max_(journal_options(options).commit_bytes_max), cipher_(std::move(cipher)),
        journal_(std::move(journal)), state_store_(directory_, io_, options.state_snapshots_kept, state_cipher()),
        window_(options.idempotency_window) {
    records_.reserve(2 * options.events_per_append_max + 1);
    metadata_.resize(options.events_per_append_max);
    name_prefixes_.resize(options.events_per_append_max + 1);
    type_ids_.reserve(options.events_per_append_max);
    new_types_.reserve(options.events_per_append_max);
  }

  // A close() called from a callback or from apply() could not join the thread it ran on: those
  // threads are joined here, before the members they use are destroyed. The closer thread last:
  // until the callback and projection threads are joined, one of them may still be starting it.
  ~EngineImpl() override {
    (void)close();
    if (notifier_) notifier_->stop();
    for (ProjectionRunner* runner : runners()) runner->stop();
    if (closer_.joinable()) closer_.join();
  }

  Status start() {
    if (!read_only_) {
      if (Status discarded = discard_snapshots_past_log(); !discarded.ok()) return discarded;
    }
    if (Status recovered = recover(); !recovered.ok()) return recovered;
    if (cipher_ && !read_only_) {
      // The newest record opened, so that the cipher knows the newest open that wrote (recover()
      // may have read nothing: a state snapshot at the log's end).
      if (const std::uint64_t last = journal_->last_sequence(); last != 0) {
        if (auto newest = journal_->read(last, 1); !newest.ok()) return newest.status();
      }
      if (Status numbered = cipher_->begin_writing(journal_->last_sequence() + 1); !numbered.ok()) return numbered;
      // An erasure whose record is in the log, but whose key a crash kept from being destroyed:
      // destroyed now, before anything can read the stream (erase_stream).
      for (const std::uint64_t stream : erased_in_log_) {
        if (cipher_->erased(stream)) continue;
        if (Status erased = cipher_->erase(stream); !erased.ok()) return erased;
      }
      // The snapshot key's epoch, which an erasure ends after its stream's key. An erasure read in
      // the log came after the newest state snapshot restored: the one it writes is missing, so
      // the epoch is ended now. A state snapshot of an epoch above the current one was written
      // by an erasure cut short before it ended the epochs below: they are ended now.
      if (!erased_in_log_.empty()) {
        if (Status rotated = rotate_snapshot_epoch(); !rotated.ok()) return rotated;
      } else if (cipher_->newest_snapshot_epoch_seen() > cipher_->snapshot_epoch()) {
        cipher_->advance_sealing_epoch(cipher_->newest_snapshot_epoch_seen());
        if (Status retired = cipher_->retire_snapshot_epochs(); !retired.ok()) return retired;
      }
    }
    erased_in_log_.clear();
    open_report_.data_loss = journal_->recovery().data_loss;
    if (read_only_) {
      open_report_.stopped_at_damage = journal_->recovery().message;
      learn_ = [this](const journal::RecordView& record) {
        std::lock_guard lock(append_mutex_);  // no appends here: it serialises the learners
        return take_system_record(record, /*again=*/true);
      };
    }
    ring_ = LiveRing::make(options_, journal_->last_sequence() + 1,
                           ReadContext{*journal_, catalog_, closed_, [this](int change) { notifier_->follow(change); },
                                       learn_, &erased_below_,
                                       [this](std::uint64_t stream) { return cipher_ && cipher_->erased(stream); }});
    notifier_ = std::make_unique<DurabilityNotifier>(
        *journal_, [this](std::uint64_t durable) { ring_->advance_durable(durable); });
    if (options_.state_snapshot_every_events != 0) {
      state_snapshotter_ = std::thread([this] { snapshot_state_loop(); });
      name_thread(state_snapshotter_, "annal-state");
    }
    if (options_.sequencing == Sequencing::sequencer_thread) {
      sequencer_ = std::make_unique<SequencerThread>(
          [this](const StreamRef& stream, const ExpectedVersion& expected, std::span<const EventData> events) {
            std::lock_guard lock(append_mutex_);  // uncontended: only this thread takes it
            return sequence(stream, expected, events);
          });
    }
    return {};
  }

  AppendResult append(const StreamRef& stream, const ExpectedVersion& expected,
                      std::span<const EventData> events) override {
    if (Status valid = validate(stream, events); !valid.ok()) return valid;
    // A known stream's key, derived outside the lock (RecordCipher's contract); a new stream's id
    // is given under it, and its key derived there.
    if (cipher_ && !read_only_) {
      if (const auto id = resolve(stream)) cipher_->prepare(*id);
    }
    AppendResult result = sequencer_ ? sequencer_->submit(stream, expected, events) : [&] {
      std::lock_guard lock(append_mutex_);
      return sequence(stream, expected, events);
    }();
    if (result.ok()) t_appended_here = {journal_.get(), result.value().last_sequence};
    return result;
  }

  Status wait_durable(const Receipt& receipt, Clock::time_point deadline) override {
    return journal_->wait_durable(receipt.last_sequence, deadline);
  }

  void on_durable(const Receipt& receipt, std::function<void(const Status&)> done) override {
    notifier_->add(receipt.last_sequence, std::move(done));
  }
  std::future<Status> durable_future(const Receipt& receipt) override {
    auto promise = std::make_shared<std::promise<Status>>();
    std::future<Status> future = promise->get_future();
    notifier_->add_internal(receipt.last_sequence, [promise](const Status& status) { promise->set_value(status); });
    return future;
  }

  Result<std::vector<Event>> read_stream(const StreamRef& stream, const ReadStreamOptions& options,
                                         Clock::time_point deadline) override;

  Result<std::vector<Event>> read_all(std::uint64_t from, std::size_t max_count) override {
    auto reader = journal_->reader(from);
    if (!reader.ok()) return reader.status();
    std::vector<Event> out;
    while (out.size() < max_count) {
      const auto record = reader.value()->next();
      if (!record.ok()) return record.status();
      if (!record.value()) break;
      const auto view = view_record(*record.value(), catalog_, learn_);
      if (!view.ok()) return view.status();
      if (view.value()) out.push_back(to_event(*view.value()));
    }
    return out;
  }

  Result<std::unique_ptr<Subscription>> subscribe(std::uint64_t from) override {
    return subscribe(from, Gating::durable);
  }

  Result<std::unique_ptr<Subscription>> subscribe(std::uint64_t from, Gating gating) {
    if (closed_.load(std::memory_order_acquire)) return Status(ErrorCode::failed, "the engine is closed");
    if (from > journal_->last_sequence() + 1) {
      return Status(ErrorCode::invalid_argument,
                    "subscription from sequence " + std::to_string(from) + ", past the end of the log (" +
                        std::to_string(journal_->last_sequence()) +
                        "): a checkpoint from another store, or from events a crash did not keep");
    }
    auto reader = journal_->reader(from);
    if (!reader.ok()) return reader.status();
    return ring_->subscribe(std::move(reader.value()), gating);
  }

  std::optional<std::uint64_t> stream_version(const StreamRef& stream) const override {
    const auto id = resolve(stream);
    if (!id) return std::nullopt;
    const auto state = index_.find(*id);
    if (!state) return std::nullopt;
    return state->last_version;
  }

  std::optional<std::uint64_t> find_stream(std::string_view name) const override { return catalog_.find_stream(name); }
  std::uint64_t stream_count() const override { return index_.size(); }
  std::uint64_t event_count() const override { return index_.events(); }
  std::uint64_t event_type_count() const override { return catalog_.type_names(); }
  std::size_t idempotency_window() const override { return options_.idempotency_window; }

  Status add_projection(std::string_view name, std::shared_ptr<Projection> projection,
                        const ProjectionOptions& options) override;
  Result<std::unique_ptr<ProjectionRunner>> make_runner(std::string_view name, std::shared_ptr<Projection> projection,
                                                        const ProjectionOptions& options);

  Status query(std::string_view name, std::uint64_t min_sequence, const std::function<void(const Projection&)>& fn,
               Clock::duration timeout) override {
    ProjectionRunner* runner = find_projection(name);
    if (runner == nullptr) return Status(ErrorCode::not_found, "no projection " + std::string(name));
    return runner->query(min_sequence, fn, Clock::now() + timeout).status();
  }

  Result<std::uint64_t> build_as_of(std::string_view snapshots_of, Projection& into, AsOf at) override;
  Result<ConsistencyReport> check_projection(std::string_view name, Projection& fresh, Clock::duration timeout) override;
  Result<std::uint64_t> trim_journal() override;

  Result<std::vector<snapshots::SnapshotStore::FileReport>> inspect_snapshots(bool verify_state) override {
    snapshots::SnapshotStore store(directory_, io_, 1, state_cipher());
    return store.inspect(verify_state);
  }

  Result<ProjectionStatus> projection_status(std::string_view name) const override {
    ProjectionRunner* runner = find_projection(name);
    if (runner == nullptr) return Status(ErrorCode::not_found, "no projection " + std::string(name));
    return runner->status();
  }
  const OpenReport& open_report() const override { return open_report_; }
  std::uint64_t durable_sequence() const override { return journal_->durable_sequence(); }
  std::uint64_t last_sequence() const override { return journal_->last_sequence(); }

  Status writable() const override {
    {
      std::lock_guard lock(append_mutex_);
      if (!failed_.ok()) return failed_;
    }
    return journal_->writable();
  }

  Metrics metrics() const override {
    Metrics metrics{.journal = journal_->stats(),
                    .durable_sequence = journal_->durable_sequence(),
                    .last_sequence = journal_->last_sequence(),
                    .streams = stream_count(),
                    .state_snapshots = 0,
                    .state_snapshot_ns = state_snapshot_ns_.snapshot()};
    metrics.state_snapshots = metrics.state_snapshot_ns.count;
    return metrics;
  }

  // From user code (a callback, apply(), a query function), close() only begins the close and
  // leaves the joining to a thread of its own: what it joins may be waiting for the very thread
  // that called it (a query it is running, a durable_future only the callback thread fulfils).
  Status close() override {
    if ((notifier_ && notifier_->on_callback_thread()) || t_projection_thread) {
      begin_close();
      std::call_once(closer_started_, [this] {
        closer_ = std::thread([this] { (void)finish_close(); });
        name_thread(closer_, "annal-close");
      });
      return {};
    }
    return finish_close();
  }

 private:
  // What close() does at once, on any thread, without waiting for one: appends are refused from
  // here on, and nothing that waits on the ring is left waiting (a projection's apply() or a
  // callback may be appending, waiting for slots): closed, the ring fails those waits and the
  // subscriptions, so every projection gets to the end of its step. Projections are asked to stop
  // first, so the closed subscription is not taken for their failure. Runners are looked up
  // outside projections_mutex_'s hold: user code on their threads may be looking one up.
  void begin_close() {
    for (ProjectionRunner* runner : runners()) runner->request_stop();
    closed_.store(true, std::memory_order_release);
    if (ring_) ring_->close();
  }

  Status finish_close() {
    std::lock_guard once(close_mutex_);  // a second caller waits until the first is done
    if (close_finished_) return close_status_;
    close_finished_ = true;
    begin_close();
    const std::vector<ProjectionRunner*> runners_now = runners();
    if (sequencer_) sequencer_->stop();
    { std::lock_guard drain(append_mutex_); }  // appends under way finish; later ones see closed_
    // Nothing reaches the journal any more. Closed, it makes everything durable and ends every
    // wait for durability; the notifier then runs every callback, settled or failed. Only then are
    // the projections joined: user code on their threads may have been waiting for either.
    close_status_ = journal_->close();
    if (notifier_) notifier_->stop();
    for (ProjectionRunner* runner : runners_now) runner->stop_applying();  // last snapshots taken
    // Everything is durable now (or never will be), so no snapshot waits long for the log.
    for (ProjectionRunner* runner : runners_now) runner->stop_writing();
    if (state_snapshotter_.joinable()) {
      {
        std::lock_guard lock(state_mutex_);
        state_stopping_ = true;
      }
      state_wanted_.notify_all();
      state_snapshotter_.join();
      // Everything is durable now: a snapshot at the end makes the next open read nothing. Not
      // fatal if it fails: the next open reads more of the journal.
      if (close_status_.ok()) {
        if (Status written = snapshot_state(); !written.ok()) {
          std::fprintf(stderr, "annal: engine state snapshot at close not written: %s\n", written.to_string().c_str());
        }
      }
    }
    return close_status_;
  }

  Status validate(const StreamRef& stream, std::span<const EventData> events) const;
  AppendResult sequence(const StreamRef& stream, const ExpectedVersion& expected, std::span<const EventData> events);
  AppendResult repeat_of(const IdempotencyWindow::Entry& original, std::uint64_t stream,
                         std::span<const EventData> events) const;
  Status resolve_types(std::span<const EventData> events);
  struct Batch {
    std::uint64_t first = 0;        // journal sequence of the batch's first record
    std::uint64_t first_event = 0;  // ... and of its first event (after the name records)
    std::uint64_t first_version = 0;
    std::size_t bytes = 0;          // in the journal
  };
  Batch build_batch(const StreamRef& stream, bool known, std::uint64_t stream_id, const StreamState* state,
                    std::span<const EventData> events);
  AppendResult commit(const StreamRef& stream, bool known, std::uint64_t stream_id, const Batch& batch,
                      std::span<const EventData> events);
  Status discard_snapshots_past_log();
  Status refuse_if_read_only(std::string_view what) const;
  Status take_system_record(const journal::RecordView& record, bool again);
  Result<std::uint64_t> erase_stream(const StreamRef& stream) override;
  struct Erasure {
    std::uint64_t stream_id = 0;
    std::uint64_t sequence = 0;  // of its record
  };
  Result<Erasure> erase_under_locks(const StreamRef& stream);
  void tell_of_erasure(const Erasure& erasure);
  void listen_for_erasures(const std::string& name, const std::shared_ptr<Projection>& projection);
  // Returns the projection let go of: the caller drops it outside its locks (a destructor may wait).
  [[nodiscard]] std::shared_ptr<Projection> stop_listening(const Projection* projection);
  void rebuild_after_erasure();
  Status rotate_snapshot_epoch();
  Status refuse_lost_snapshots();
  [[nodiscard]] std::string trimmed_log_refusal(const std::string& projection, const std::string& why) const;
  Status replay_into(Projection& into, std::uint64_t from, std::uint64_t to);
  Result<std::uint64_t> sequence_at_time(std::uint64_t unix_ns, std::uint64_t durable);
  Status recover();
  Status restore_state();
  void snapshot_state_loop();
  Status snapshot_state();
  Result<Metadata> recover_event(const journal::RecordHeader& header, std::span<const std::byte> stored, bool erased,
                                 StreamIndex::Exclusive& streams);

  // Every runner; no new one is added once closed_ is set.
  [[nodiscard]] std::vector<ProjectionRunner*> runners() const {
    std::lock_guard lock(projections_mutex_);
    std::vector<ProjectionRunner*> out;
    for (const auto& [name, runner] : projections_) out.push_back(runner.get());
    for (const auto& runner : retired_) out.push_back(runner.get());
    return out;
  }

  // Runners are never removed while the engine is open, so the pointer outlives the lock.
  [[nodiscard]] ProjectionRunner* find_projection(std::string_view name) const {
    std::lock_guard lock(projections_mutex_);
    const auto found = projections_.find(name);
    return found == projections_.end() ? nullptr : found->second.get();
  }

  [[nodiscard]] std::optional<std::uint64_t> resolve(const StreamRef& stream) const {
    if (!stream.by_name()) return stream.stream_id();
    return catalog_.find_stream(stream.name());
  }

  // Every snapshot store's cipher (null: in clear).
  [[nodiscard]] std::shared_ptr<snapshots::StateCipher> state_cipher() const {
    return cipher_ ? cipher_->states() : nullptr;
  }

  const std::string directory_;
  const std::shared_ptr<journal::IoBackend> io_;  // for files beside the journal's: snapshots
  const bool read_only_;  // open_read_only: nothing is written; names are learned as records come
  LearnName learn_;       // read_only_ only: take_system_record, for view_record
  std::vector<std::uint64_t> erased_in_log_;  // start() only: the streams recover() read erasures of
  const Options options_;
  const std::size_t commit_bytes_max_;
  const std::shared_ptr<StoreCipher> cipher_;  // Options::encryption: the store's keys; null in clear
  std::unique_ptr<journal::Journal> journal_;
  Catalog catalog_;
  StreamIndex index_;
  std::mutex close_mutex_;
  std::atomic<bool> closed_{false};  // appends, subscriptions and new projections are refused
  bool close_finished_ = false;      // under close_mutex_
  Status close_status_;              // under close_mutex_
  std::once_flag closer_started_;
  std::thread closer_;               // a close() begun by user code finishes here
  std::unique_ptr<LiveRing> ring_;
  std::unique_ptr<DurabilityNotifier> notifier_;
  std::unique_ptr<SequencerThread> sequencer_;  // Sequencing::sequencer_thread only
  // The engine's state snapshots: requested by the appender every state_snapshot_every_events,
  // taken under the sequencing lock and written by a thread of their own.
  snapshots::SnapshotStore state_store_;
  std::thread state_snapshotter_;
  std::mutex state_mutex_;
  std::condition_variable state_wanted_;
  bool state_due_ = false;       // under state_mutex_
  bool state_stopping_ = false;  // under state_mutex_
  std::uint64_t events_since_state_snapshot_ = 0;  // under append_mutex_
  std::uint64_t state_snapshot_at_ = 0;            // under append_mutex_: the newest one's sequence
  Histogram state_snapshot_ns_{1'000'000, 16};     // 1 ms to 33 s, doubling
  OpenReport open_report_;
  mutable std::mutex projections_mutex_;
  std::map<std::string, std::unique_ptr<ProjectionRunner>, std::less<>> projections_;  // under projections_mutex_
  std::set<std::string, std::less<>> adding_;  // under projections_mutex_: names add_projection is making
  // Projection::stream_erased's bookkeeping, under erasures_mutex_ (taken last, and nothing taken
  // or called under it): every projection from before its runner reads an event, and the erasures
  // made since the engine opened (no more than KEYS holds), so that each projection is told of
  // each erasure once: by the erasure, or, added after it, as it is added.
  std::mutex erasures_mutex_;
  std::vector<std::pair<std::string, std::shared_ptr<Projection>>> listeners_;
  std::vector<Erasure> erasures_;
  std::atomic<std::uint64_t> erased_below_{0};  // the last erasure record's sequence in this run
  // Runners an erasure replaced (rebuild_after_erasure): stopped, kept until the engine is
  // destroyed, since a thread may still hold a pointer to one. Under projections_mutex_.
  std::vector<std::unique_ptr<ProjectionRunner>> retired_;

  // The sequencing lock: one append at a time checks versions, goes to the journal and into the
  // ring, so the version check and the sequence assignment cannot interleave with another's.
  std::mutex state_writes_mutex_;  // taken before append_mutex_: snapshot_state, erase_stream
  mutable std::mutex append_mutex_;  // mutable: writable() reads failed_
  IdempotencyWindow window_;  // under append_mutex_
  Status failed_;             // under append_mutex_: the journal refused an append; the engine stopped
  // Scratch for the append being sequenced, under append_mutex_; sized at open, never reallocated.
  std::vector<journal::RecordInput> records_;
  std::vector<std::array<std::byte, kMetadataBytesMax>> metadata_;
  std::vector<std::array<std::byte, kNamePrefixBytesMax>> name_prefixes_;
  std::vector<std::uint16_t> type_ids_;
  std::vector<std::string_view> new_types_;
};

Status EngineImpl::validate(const StreamRef& stream, std::span<const EventData> events) const {
  if (stream.by_name()) {
    if (Status valid = check_name("stream", stream.name()); !valid.ok()) return valid;
  } else if (stream.stream_id() == kSystemStream || (stream.stream_id() & kNamedStreamBit) != 0) {
    return Status(ErrorCode::invalid_argument, "stream id " + std::to_string(stream.stream_id()) +
                                                   ": ids chosen by the application are 1 to 2^63 - 1");
  }
  if (events.empty() || events.size() > options_.events_per_append_max) {
    return Status(ErrorCode::invalid_argument, "an append carries 1 to " + std::to_string(options_.events_per_append_max) +
                                                   " events (events_per_append_max), not " + std::to_string(events.size()));
  }
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (Status valid = check_name("event type", events[i].type); !valid.ok()) return valid;
    if (events[i].payload.size() > options_.event_bytes_max) {
      return Status(ErrorCode::invalid_argument, "event " + std::to_string(i) + " of the append to " + describe(stream) +
                                                     " has " + std::to_string(events[i].payload.size()) +
                                                     " payload bytes; event_bytes_max is " +
                                                     std::to_string(options_.event_bytes_max));
    }
  }
  if (events.size() > 1) {
    std::vector<std::pair<Id128, std::size_t>> ids;
    for (std::size_t i = 0; i < events.size(); ++i) {
      if (!events[i].event_id.empty()) ids.emplace_back(events[i].event_id, i);
    }
    std::sort(ids.begin(), ids.end(), [](const auto& a, const auto& b) {
      return std::tie(a.first.hi, a.first.lo) < std::tie(b.first.hi, b.first.lo);
    });
    const auto twin = std::adjacent_find(ids.begin(), ids.end(), [](const auto& a, const auto& b) { return a.first == b.first; });
    if (twin != ids.end()) {
      return Status(ErrorCode::invalid_argument, "events " + std::to_string(twin->second) + " and " +
                                                     std::to_string(std::next(twin)->second) +
                                                     " of one append have the same event id");
    }
  }
  return {};
}

AppendResult EngineImpl::sequence(const StreamRef& stream, const ExpectedVersion& expected,
                                  std::span<const EventData> events) {
  if (closed_.load(std::memory_order_acquire)) return Status(ErrorCode::failed, "the engine is closed");
  if (Status writable = refuse_if_read_only("append"); !writable.ok()) return writable;
  if (!failed_.ok()) return failed_;
  const std::optional<std::uint64_t> known = resolve(stream);
  const std::uint64_t stream_id = known ? *known : catalog_.next_stream_id();

  if (window_.enabled()) {
    for (const EventData& event : events) {
      if (event.event_id.empty()) continue;
      if (const auto* original = window_.find(event.event_id)) return repeat_of(*original, stream_id, events);
    }
  }

  if (known && cipher_ && cipher_->erased(stream_id)) {
    return Status(ErrorCode::invalid_argument, describe(stream) + " was erased (erase_stream): it takes no more events");
  }
  const StreamState* state = known ? index_.find_as_writer(stream_id) : nullptr;
  const std::optional<std::uint64_t> current =
      state != nullptr ? std::optional<std::uint64_t>(state->last_version) : std::nullopt;
  if (!expected.admits(current)) {
    return AppendResult(Status(ErrorCode::conflict, describe(stream) + ": expected " + expected.to_string() +
                                                        ", but " + describe(current)),
                        current);
  }
  if (Status resolved = resolve_types(events); !resolved.ok()) return resolved;
  const Batch batch = build_batch(stream, known.has_value(), stream_id, state, events);
  if (batch.bytes > commit_bytes_max_) {
    return Status(ErrorCode::invalid_argument, "an append of " + std::to_string(batch.bytes) +
                                                   " bytes does not fit in journal.commit_bytes_max");
  }

  // From the first change to the catalog on, the engine's memory and the journal must move
  // together: any failure here (an I/O error, or an exception such as bad_alloc half-way) stops
  // the engine for good; reopening rebuilds everything from the journal.
  try {
    return commit(stream, known.has_value(), stream_id, batch, events);
  } catch (const std::exception& error) {
    failed_ = Status(ErrorCode::failed, std::string("the engine stopped: an append failed half-way (") +
                                            error.what() + "); reopen it to recover from the journal");
    // The ring may hold a claim it never published, or miss records the journal has: live
    // subscribers go on from the journal, which has every record it took.
    ring_->fail();
    return failed_;
  }
}

// Records the batch's names, hands it to the journal and the ring, and updates the index and the
// idempotency window. Under the sequencing lock.
AppendResult EngineImpl::commit(const StreamRef& stream, bool known, std::uint64_t stream_id, const Batch& batch,
                                std::span<const EventData> events) {
  // Names go into the catalog before the journal has the records: a reader that sees an event
  // must find its names.
  if (!known) {
    const Status added = catalog_.add_stream(stream_id, stream.name());
    ANNAL_ASSERT(added.ok());
  }
  for (const std::string_view name : new_types_) {
    const Status added = catalog_.add_type(catalog_.next_type_id(), name);
    ANNAL_ASSERT(added.ok());
  }
  const auto appended = journal_->append(records_);
  if (!appended.ok()) {
    failed_ = appended.status();
    return failed_;
  }
  ANNAL_ASSERT(appended.value().first == batch.first && appended.value().last == batch.first + records_.size() - 1);
  const Receipt receipt{.first_sequence = batch.first_event, .last_sequence = appended.value().last,
                        .stream_id = stream_id, .first_version = batch.first_version,
                        .last_version = batch.first_version + events.size() - 1};
  index_.put(stream_id, {receipt.last_version, receipt.last_sequence});
  for (std::size_t i = 0; i < events.size(); ++i) {
    window_.remember(events[i].event_id, receipt, static_cast<std::uint32_t>(i));
  }
  // false only when the engine is closing; the events are in the journal all the same.
  (void)ring_->publish(batch.first, records_);
  events_since_state_snapshot_ += records_.size();
  if (options_.state_snapshot_every_events != 0 && events_since_state_snapshot_ >= options_.state_snapshot_every_events) {
    events_since_state_snapshot_ = 0;
    std::lock_guard lock(state_mutex_);
    state_due_ = true;
    state_wanted_.notify_one();
  }
  return receipt;
}

// Fills records_: names first (stream, then types), then the events, each pointing to the stream's
// previous event. The caller is the only appender, so the journal's next sequence is known.
EngineImpl::Batch EngineImpl::build_batch(const StreamRef& stream, bool known, std::uint64_t stream_id,
                                          const StreamState* state, std::span<const EventData> events) {
  records_.clear();
  Batch batch;
  batch.first = journal_->last_sequence() + 1;
  std::size_t prefixes = 0;
  const auto define = [&](std::uint16_t type, std::uint64_t id, std::string_view name) {
    auto& prefix = name_prefixes_[prefixes++];
    const std::size_t used = encode_name_prefix(type, id, prefix);
    records_.push_back({.stream_id = kSystemStream, .stream_version = type == kTypeStreamNamed ? id : 0, .type = type,
                        .prefix = std::span(prefix).first(used), .payload = std::as_bytes(std::span(name))});
  };
  if (!known) define(kTypeStreamNamed, stream_id, stream.name());
  for (std::size_t t = 0; t < new_types_.size(); ++t) {
    define(kTypeEventTypeNamed, catalog_.next_type_id() + t, new_types_[t]);
  }
  batch.first_event = batch.first + records_.size();
  batch.first_version = state != nullptr ? state->last_version + 1 : 0;
  const std::uint64_t now = wall_clock_ns();
  std::uint64_t prev = state != nullptr ? state->last_sequence : 0;
  for (std::size_t i = 0; i < events.size(); ++i) {
    const EventData& event = events[i];
    const Metadata metadata{.prev = prev, .event_id = event.event_id, .correlation_id = event.correlation_id,
                            .causation_id = event.causation_id};
    const std::size_t used = encode_metadata(metadata, metadata_[i]);
    records_.push_back({.stream_id = stream_id, .stream_version = batch.first_version + i, .type = type_ids_[i],
                        .timestamp_ns = event.timestamp_ns != 0 ? event.timestamp_ns : now,
                        .prefix = std::span(metadata_[i]).first(used), .payload = event.payload});
    prev = batch.first_event + i;
  }
  for (journal::RecordInput& record : records_) {
    if (record.timestamp_ns == 0) record.timestamp_ns = now;  // the ring carries the same stamp
    batch.bytes += journal::padded_record_bytes(record.payload_bytes() + seal_overhead(options_));
  }
  return batch;
}

// Finds or allocates each event's type id into type_ids_; names new to the catalog go to new_types_.
Status EngineImpl::resolve_types(std::span<const EventData> events) {
  type_ids_.clear();
  new_types_.clear();
  for (std::size_t i = 0; i < events.size(); ++i) {
    const EventData& event = events[i];
    // A batch's events are often of one type: comparing the name costs less than hashing it.
    if (i > 0 && event.type == events[i - 1].type) {
      type_ids_.push_back(type_ids_.back());
      continue;
    }
    if (const auto id = catalog_.find_type(event.type)) {
      type_ids_.push_back(*id);
      continue;
    }
    const auto fresh = std::find(new_types_.begin(), new_types_.end(), event.type);
    if (fresh == new_types_.end() &&
        catalog_.next_type_id() + new_types_.size() > UINT16_MAX) {
      return Status(ErrorCode::invalid_argument, "no room for event type \"" + std::string(event.type) +
                                                     "\": all " + std::to_string(Catalog::kTypesMax) + " are named");
    }
    if (fresh == new_types_.end()) new_types_.push_back(event.type);
    const auto index = static_cast<std::size_t>(std::find(new_types_.begin(), new_types_.end(), event.type) - new_types_.begin());
    type_ids_.push_back(static_cast<std::uint16_t>(catalog_.next_type_id() + index));
  }
  return {};
}

AppendResult EngineImpl::repeat_of(const IdempotencyWindow::Entry& original, std::uint64_t stream,
                                   std::span<const EventData> events) const {
  // A repeat as far as the window can tell: the same stream and number of events, and every event
  // that has an id has the id that had this place in that append. Events without ids are not compared.
  const Receipt& receipt = original.receipt;
  // A stream erased since: its name was forgotten, so a retry of the append names a new stream.
  // The ids alone say it is the same append; it stays erased (the duplicate's receipt is the
  // original's), and nothing of it comes back.
  const bool same_stream = receipt.stream_id == stream || (cipher_ && cipher_->erased(receipt.stream_id));
  bool same = same_stream && receipt.last_sequence - receipt.first_sequence + 1 == events.size();
  for (std::size_t i = 0; same && i < events.size(); ++i) {
    if (events[i].event_id.empty()) continue;
    const auto* entry = window_.find(events[i].event_id);
    same = entry != nullptr && entry->receipt.first_sequence == receipt.first_sequence && entry->index == i;
  }
  if (!same) {
    return Status(ErrorCode::invalid_argument,
                  "event ids of this append were used before, in the append at sequences " +
                      std::to_string(receipt.first_sequence) + "-" + std::to_string(receipt.last_sequence) +
                      " to stream " + std::to_string(receipt.stream_id) +
                      "; a retry must repeat that append exactly, and new events need new ids");
  }
  Receipt repeated = receipt;
  repeated.duplicate = true;
  return repeated;
}

Result<std::vector<Event>> EngineImpl::read_stream(const StreamRef& stream, const ReadStreamOptions& options,
                                                   Clock::time_point deadline) {
  const auto id = resolve(stream);
  const auto state = id ? index_.find(*id) : std::nullopt;
  if (!state || options.max_count == 0) return std::vector<Event>();
  // The versions to return, [low, high].
  const std::uint64_t last = state->last_version;
  std::uint64_t low = 0, high = 0;
  if (options.direction == Direction::forwards) {
    if (options.from_version > last) return std::vector<Event>();
    low = options.from_version;
    high = low + std::min<std::uint64_t>(options.max_count - 1, last - low);
  } else {
    high = std::min(options.from_version, last);
    low = high - std::min<std::uint64_t>(options.max_count - 1, high);
  }
  // Only durable events are shown, and the walk starts at the stream's last one.
  if (Status durable = journal_->wait_durable(state->last_sequence, deadline); !durable.ok()) return durable;
  auto reader = journal_->reader(state->last_sequence, kStreamReadChunkBytes);
  if (!reader.ok()) return reader.status();
  std::vector<Event> out;
  out.reserve(static_cast<std::size_t>(high - low + 1));
  std::uint64_t sequence = state->last_sequence;
  for (std::uint64_t version = last;; --version) {
    reader.value()->seek(sequence);
    const auto record = reader.value()->next();
    if (!record.ok()) return record.status();
    const auto where = "stream " + std::to_string(*id) + " version " + std::to_string(version);
    if (!record.value() || record.value()->header.stream_id != *id || record.value()->header.stream_version != version) {
      return Status(ErrorCode::corruption, where + " should be at sequence " + std::to_string(sequence) + ", but is not");
    }
    const auto view = view_record(*record.value(), catalog_);
    if (!view.ok()) return view.status();
    if (version <= high) out.push_back(to_event(*view.value()));
    if (version == low) break;
    sequence = decode_event(record.value()->payload, sequence, record.value()->erased).value().metadata.prev;
    if (sequence == 0) return Status(ErrorCode::corruption, where + " has no previous event");
  }
  if (options.direction == Direction::forwards) std::reverse(out.begin(), out.end());
  return out;
}

void EngineImpl::snapshot_state_loop() {
  for (;;) {
    {
      std::unique_lock lock(state_mutex_);
      state_wanted_.wait(lock, [&] { return state_due_ || state_stopping_; });
      if (state_stopping_) return;
      state_due_ = false;
    }
    if (Status written = snapshot_state(); !written.ok()) {
      // Not fatal: the next open reads more of the journal.
      std::fprintf(stderr, "annal: engine state snapshot not written: %s\n", written.to_string().c_str());
    }
  }
}

Status EngineImpl::refuse_if_read_only(std::string_view what) const {
  if (!read_only_) return {};
  return Status(ErrorCode::invalid_argument, std::string(what) + ": the engine in " + directory_ + " is open read-only");
}

// A system record's change to the catalog: a name, or an erased stream's name forgotten.
// `again`: the record may have been taken already. Read-only engines take the records the writer
// adds after open as their readers pass them (names come before the first event that uses them,
// so every event's names are known); several readers may pass the same record.
Status EngineImpl::take_system_record(const journal::RecordView& record, bool again) {
  const journal::RecordHeader& header = record.header;
  if (header.type == kTypeStreamErased) {
    const auto id = decode_erasure(record.payload, header.sequence);
    if (!id.ok()) return id.status();
    if (!catalog_.knows_stream(id.value())) {
      return Status(ErrorCode::corruption, "journal record " + std::to_string(header.sequence) + ": erasure of stream " +
                                               std::to_string(id.value()) + ", which has no name");
    }
    catalog_.forget_stream(id.value());
    return {};
  }
  const auto name = decode_name(header.type, record.payload, header.sequence, record.erased);
  if (!name.ok()) return name.status();
  if (header.type == kTypeStreamNamed) {
    if (again && catalog_.knows_stream(name.value().id)) return {};
    return catalog_.add_stream(name.value().id, name.value().name);
  }
  const auto type = static_cast<std::uint16_t>(name.value().id);
  if (again && !catalog_.type_name(type).empty()) return {};
  return catalog_.add_type(type, name.value().name);
}

// The erasure record first, then the key: the record is the point of no return (an open finishes
// an erasure whose key a crash spared), and a key destroyed without its record would leave the
// log without the account of why the stream's events cannot be read. All under the sequencing
// lock: no event of the stream can be sequenced between its last one and the key's end.
Result<std::uint64_t> EngineImpl::erase_stream(const StreamRef& stream) {
  auto erased = erase_under_locks(stream);
  if (!erased.ok()) return erased.status();
  rebuild_after_erasure();
  return erased.value().sequence;
}

namespace {

void tell_projection(const std::string& name, Projection& projection, std::uint64_t stream_id, std::uint64_t erased_at) {
  const Status told = call_user_code([&] { projection.stream_erased(stream_id, erased_at); },
                                     [&] { return "stream_erased() of projection " + name; });
  if (!told.ok()) std::fprintf(stderr, "annal: %s\n", told.to_string().c_str());
}

}  // namespace

// Every projection is told (Projection::stream_erased) once the erasure is certain (its record
// durable) and before anything of it is done: the stream's name and key still there, an event of
// it that a projection reads meanwhile has both, and an exporter told drops it (one read after
// would come without its name, and be taken for an unnamed stream's). Under the sequencing lock:
// the callee must not block or call the engine.
void EngineImpl::tell_of_erasure(const Erasure& erasure) {
  std::vector<std::pair<std::string, std::shared_ptr<Projection>>> told;
  {
    std::lock_guard lock(erasures_mutex_);
    erasures_.push_back(erasure);
    told = listeners_;
  }
  for (const auto& [name, projection] : told) tell_projection(name, *projection, erasure.stream_id, erasure.sequence);
}

// From before the projection's runner reads its first event: told of the erasures made so far
// here, and of every later one by the erasure itself.
void EngineImpl::listen_for_erasures(const std::string& name, const std::shared_ptr<Projection>& projection) {
  std::vector<Erasure> made;
  {
    std::lock_guard lock(erasures_mutex_);
    listeners_.emplace_back(name, projection);
    made = erasures_;
  }
  for (const Erasure& erasure : made) tell_projection(name, *projection, erasure.stream_id, erasure.sequence);
}

std::shared_ptr<Projection> EngineImpl::stop_listening(const Projection* projection) {
  std::lock_guard lock(erasures_mutex_);
  const auto at = std::find_if(listeners_.begin(), listeners_.end(),
                               [&](const auto& listener) { return listener.second.get() == projection; });
  if (at == listeners_.end()) return nullptr;
  std::shared_ptr<Projection> gone = std::move(at->second);
  listeners_.erase(at);
  return gone;
}


// The projections that asked to be (ProjectionOptions::rebuild_after_erasure), each from a fresh
// instance replayed from the start of the log, put in the old one's place. Outside the engine's
// locks: a replay subscribes, and the factory is user code. A projection that cannot be rebuilt
// keeps running as it was, said on stderr: the erasure itself is done.
void EngineImpl::rebuild_after_erasure() {
  std::vector<std::pair<std::string, ProjectionOptions>> wanted;
  {
    std::lock_guard lock(projections_mutex_);
    for (const auto& [name, runner] : projections_) {
      if (runner->options().rebuild_after_erasure) wanted.emplace_back(name, runner->options());
    }
  }
  for (const auto& [name, options] : wanted) {
    std::shared_ptr<Projection> fresh;
    const Status made = call_user_code([&] { fresh = options.rebuild_after_erasure(); },
                                       [&] { return "rebuild_after_erasure() of projection " + name; });
    if (made.ok() && fresh != nullptr) listen_for_erasures(name, fresh);
    const Projection* listening = fresh.get();
    auto runner = !made.ok() ? Result<std::unique_ptr<ProjectionRunner>>(made)
                  : fresh == nullptr
                      ? Result<std::unique_ptr<ProjectionRunner>>(
                            Status(ErrorCode::invalid_argument, "rebuild_after_erasure() gave no projection"))
                      : make_runner(name, std::move(fresh), options);
    if (!runner.ok()) {
      (void)stop_listening(listening);  // the runner's making already let go of it: not the last
      std::fprintf(stderr, "annal: projection %s not rebuilt after the erasure (it keeps running as it was): %s\n",
                   name.c_str(), runner.status().to_string().c_str());
      continue;
    }
    std::shared_ptr<Projection> unlistened;  // dropped last, outside the lock (the runner holds it too)
    std::lock_guard lock(projections_mutex_);
    if (closed_.load(std::memory_order_acquire)) {
      unlistened = stop_listening(listening);
      return;  // the new runner stops as it is destroyed
    }
    const auto at = projections_.find(name);
    if (at == projections_.end()) {
      unlistened = stop_listening(listening);
      continue;
    }
    at->second->request_stop();
    // The one it replaces hears of no more erasures.
    unlistened = stop_listening(&at->second->projection());
    retired_.push_back(std::move(at->second));
    at->second = std::move(runner).value();
  }
}

Result<EngineImpl::Erasure> EngineImpl::erase_under_locks(const StreamRef& stream) {
  if (Status writable = refuse_if_read_only("erase_stream"); !writable.ok()) return writable;
  if (!cipher_) {
    return Status(ErrorCode::invalid_argument,
                  "erase_stream " + describe(stream) + ": the store in " + directory_ +
                      " is not encrypted: its events are on disk in clear, and there is no key to destroy "
                      "(open it with Options::encryption from the start to be able to erase streams)");
  }
  // Snapshots taken before the erasure become unreadable (the snapshot key's epoch ends), so the
  // projections that had them rebuild from the start of the log: on a log retention has cut, no
  // projection may have one. The files are read before the locks (appends would wait for it);
  // the projections running, which may write more, are asked under them.
  const bool trimmed = !journal_->locate(journal::kFirstSequence).ok();
  if (trimmed) {
    if (Status kept = refuse_lost_snapshots(); !kept.ok()) {
      return Status(kept.code(), "erase_stream " + describe(stream) + ": " + kept.message());
    }
  }
  std::lock_guard writing(state_writes_mutex_);  // before the append lock, as snapshot_state takes them
  std::lock_guard lock(append_mutex_);
  if (closed_.load(std::memory_order_acquire)) return Status(ErrorCode::failed, "the engine is closed");
  if (!failed_.ok()) return failed_;
  const std::optional<std::uint64_t> id = resolve(stream);
  if (!id || index_.find_as_writer(*id) == nullptr || cipher_->erased(*id)) {
    return Status(ErrorCode::not_found, "erase_stream " + describe(stream) +
                                            ": no such stream (never written, or erased already: its name is forgotten)");
  }
  // (Asked of what is durable: the stream's last events may not be yet.)
  if (Status durable = journal_->wait_durable(journal_->last_sequence(), Clock::now() + kStateDurableWait);
      !durable.ok()) {
    return durable;
  }
  if (trimmed || !journal_->locate(journal::kFirstSequence).ok()) {
    std::lock_guard projections(projections_mutex_);
    for (const auto& [name, runner] : projections_) {
      if (runner->projection().schema() == 0) continue;  // never snapshotted
      return Status(ErrorCode::invalid_argument,
                    "erase_stream " + describe(stream) + ": " + trimmed_log_refusal(name, "keeps its state by snapshots"));
    }
  }
  // What could refuse the key's end is asked before the point of no return.
  if (Status erasable = cipher_->check_erasable(*id); !erasable.ok()) {
    return Status(erasable.code(), "erase_stream " + describe(stream) + ": " + erasable.message());
  }
  std::array<std::byte, kErasureBytes> prefix{};
  encode_erasure(*id, prefix);
  records_.clear();
  records_.push_back({.stream_id = kSystemStream, .stream_version = 0, .type = kTypeStreamErased,
                      .timestamp_ns = wall_clock_ns(), .prefix = prefix, .payload = {}});
  const auto appended = journal_->append(records_);
  if (!appended.ok()) {
    failed_ = appended.status();
    return failed_;
  }
  const std::uint64_t sequence = appended.value().last;
  (void)ring_->publish(appended.value().first, records_);  // the ring takes every sequence
  // From here the erasure must finish, or the engine stop: reopening finishes it.
  const auto stop = [&](const Status& why) {
    failed_ = Status(ErrorCode::failed, "erase_stream " + describe(stream) + ": " + why.to_string() +
                                            "; the engine stopped: reopen it, and the erasure completes at open");
    return failed_;
  };
  if (Status durable = journal_->wait_durable(sequence, Clock::now() + kStateDurableWait); !durable.ok()) {
    return stop(durable);
  }
  tell_of_erasure(Erasure{.stream_id = *id, .sequence = sequence});
  erased_below_.store(sequence, std::memory_order_release);  // the ring's copies below it: ask (ReadContext)
  if ((*id & kNamedStreamBit) != 0) catalog_.forget_stream(*id);
  if (Status erased = cipher_->erase(*id); !erased.ok()) return stop(erased);
  if (Status rotated = rotate_snapshot_epoch(); !rotated.ok()) return stop(rotated);
  return Erasure{.stream_id = *id, .sequence = sequence};
}

std::string EngineImpl::trimmed_log_refusal(const std::string& projection, const std::string& why) const {
  return "the journal of " + directory_ + " no longer starts at sequence 1 (trim_journal), and projection " +
         projection + " " + why + ", which an erasure makes unreadable (their key's epoch ends): it could not be "
         "rebuilt from the log. Nothing was changed";
}

// On a journal retention has cut: invalid_argument naming a projection with a snapshot file an
// erasure would make unreadable. Passed over: the engine's own (the erasure snapshots it anew),
// and snapshots unreadable already (not_found: an epoch an erasure ended, or a master key version
// the provider lacks). One that cannot be read for another reason (damage, I/O) refuses too: it
// may be readable tomorrow. Projections that keep their own state (resume_after) have none.
Status EngineImpl::refuse_lost_snapshots() {
  auto reports = inspect_snapshots(true);
  if (!reports.ok()) return reports.status();
  for (const auto& report : reports.value()) {
    if (report.header.name == kEngineStateName || report.status.code() == ErrorCode::not_found) continue;
    return Status(ErrorCode::invalid_argument,
                  trimmed_log_refusal(report.header.name, "has a snapshot (" + report.file + ")") +
                      (report.status.ok() ? "" : " (it does not read back now: " + report.status.to_string() + ")"));
  }
  return {};
}

// The engine's state snapshotted under the next snapshot key epoch (it no longer holds an erased
// stream's name), then the epochs below destroyed, durably: every snapshot taken before, in any
// copy, is unreadable from then on. Under the state writes and append locks, or at open.
Status EngineImpl::rotate_snapshot_epoch() {
  cipher_->advance_sealing_epoch(cipher_->snapshot_epoch() + 1);
  const std::uint64_t sequence = journal_->last_sequence();
  const std::vector<std::byte> state = encode_engine_state(catalog_, index_, window_);
  if (Status durable = journal_->wait_durable(sequence, Clock::now() + kStateDurableWait); !durable.ok()) return durable;
  if (Status written = state_store_.write(kEngineStateName, kEngineStateSchema, sequence, state); !written.ok()) {
    return written;
  }
  state_snapshot_at_ = sequence;
  return cipher_->retire_snapshot_epochs();
}

// Snapshots past the recovered end of the log hold events it no longer has: a crash took them back
// (an eager projection's, never acknowledged), or the operator accepted the loss of acknowledged
// ones (the journal's data_loss), and then they are kept aside as evidence. The sequences will be
// given to other events.
Status EngineImpl::discard_snapshots_past_log() {
  const std::uint64_t last = journal_->last_sequence();
  const bool lost = !journal_->recovery().data_loss.empty();
  const std::string aside = lost ? ".lost-after-" + std::to_string(last) : std::string();
  const auto discarded = state_store_.discard_after(last, aside);
  if (!discarded.ok()) {
    return Status(discarded.code(), "cannot take the snapshots past the end of the recovered log out of use (" +
                                        discarded.status().to_string() + "); move them away by hand or fix the directory");
  }
  for (const std::string& file : discarded.value()) {
    std::fprintf(stderr, "annal: snapshot %s %s: it is past the end of the recovered log (%llu)\n", file.c_str(),
                 lost ? ("renamed to " + file + aside).c_str() : "removed", static_cast<unsigned long long>(last));
  }
  return {};
}

// Encodes the state under the sequencing lock (the only pause appends see), writes it outside once
// the log holds it durably (a snapshot ahead of the log would be discarded at the next open).
Status EngineImpl::snapshot_state() {
  // From its encoding to its file, no erasure may change the snapshot key's epoch: a state taken
  // before one (with the erased stream's name) must not be sealed under the epoch after it.
  std::lock_guard writing(state_writes_mutex_);
  const Clock::time_point started = Clock::now();
  std::vector<std::byte> state;
  std::uint64_t sequence = 0;
  {
    std::lock_guard lock(append_mutex_);
    if (!failed_.ok()) return {};
    sequence = journal_->last_sequence();  // a batch boundary: no append is half-way
    if (sequence == state_snapshot_at_) return {};
    state = encode_engine_state(catalog_, index_, window_);
    state_snapshot_at_ = sequence;
  }
  if (journal_->durable_sequence() < sequence) {
    if (Status durable = journal_->wait_durable(sequence, Clock::now() + kStateDurableWait); !durable.ok()) return durable;
  }
  if (Status written = state_store_.write(kEngineStateName, kEngineStateSchema, sequence, state); !written.ok()) return written;
  state_snapshot_ns_.observe(static_cast<std::uint64_t>(std::chrono::nanoseconds(Clock::now() - started).count()));
  return {};
}

Status EngineImpl::add_projection(std::string_view name, std::shared_ptr<Projection> projection,
                                  const ProjectionOptions& options) {
  if (!snapshots::valid_projection_name(name) || name.front() == '_') {
    return Status(ErrorCode::invalid_argument, "projection name \"" + std::string(name) +
                                                   "\": 1 to 64 of A-Z a-z 0-9 _ . not starting with _ (the engine's)");
  }
  if (Status writable = refuse_if_read_only("add_projection"); !writable.ok()) return writable;
  if (projection == nullptr || options.snapshots_kept == 0) {
    return Status(ErrorCode::invalid_argument, "projection " + std::string(name) + ": no projection, or snapshots_kept 0");
  }
  // The name is reserved while the projection is made: restore() is user code, run outside the
  // lock, since it may call the engine (which takes it) or block (and close() takes it too).
  {
    std::lock_guard lock(projections_mutex_);
    if (closed_.load(std::memory_order_acquire)) return Status(ErrorCode::failed, "the engine is closed");
    if (projections_.contains(name) || adding_.contains(name)) {
      return Status(ErrorCode::invalid_argument, "projection " + std::string(name) + " exists already");
    }
    adding_.emplace(name);
  }
  const Projection* listening = projection.get();
  listen_for_erasures(std::string(name), projection);
  auto runner = make_runner(name, std::move(projection), options);
  // Dropped last, outside the lock: on a failure it may be the projection's last reference, and
  // a destructor may wait (an exporter's, for its broker).
  std::shared_ptr<Projection> unlistened;
  std::lock_guard lock(projections_mutex_);
  adding_.erase(adding_.find(name));
  if (!runner.ok() || closed_.load(std::memory_order_acquire)) unlistened = stop_listening(listening);
  if (!runner.ok()) return runner.status();
  if (closed_.load(std::memory_order_acquire)) return Status(ErrorCode::failed, "the engine closed meanwhile");
  projections_.emplace(std::string(name), std::move(runner).value());
  return {};
}

// A projection restored from its newest usable snapshot, or resumed where its own store says,
// subscribed from there.
Result<std::unique_ptr<ProjectionRunner>> EngineImpl::make_runner(std::string_view name,
                                                                  std::shared_ptr<Projection> projection,
                                                                  const ProjectionOptions& options) {
  // Sealed under the snapshot key epoch of now: an erasure ends it (erase_stream).
  auto store = std::make_unique<snapshots::SnapshotStore>(directory_, io_, options.snapshots_kept,
                                                          cipher_ ? cipher_->projection_states() : nullptr);
  std::uint64_t restored = 0;
  Result<std::optional<std::uint64_t>> resume = std::optional<std::uint64_t>{};
  const Status asked = call_user_code([&] { resume = projection->resume_after(); },
                                      [&] { return "resume_after() of projection " + std::string(name); });
  if (!asked.ok()) return asked;
  if (!resume.ok()) return resume.status();
  if (resume.value()) {
    // Its store cannot be rolled back to the durable point after a crash, as snapshots are.
    if (options.gating != Gating::durable) {
      return Status(ErrorCode::invalid_argument, "projection " + std::string(name) +
                                                     " keeps its own state (resume_after), so it sees durable events only: "
                                                     "eager gating could write events a crash takes back");
    }
    restored = *resume.value();
    if (const std::uint64_t durable = journal_->durable_sequence(); restored > durable) {
      return Status(ErrorCode::invalid_argument,
                    "projection " + std::string(name) + " holds events up to sequence " + std::to_string(restored) +
                        " but this store's log ends at " + std::to_string(durable) +
                        ": its state belongs to another store, or to a newer copy of this one (restored from a "
                        "backup? an exporter: export this store under a new source name)");
    }
    std::uint64_t required = 0;
    if (Status asked_required = call_user_code([&] { required = projection->resume_requires(); },
                                               [&] { return "resume_requires() of projection " + std::string(name); });
        !asked_required.ok()) {
      return asked_required;
    }
    if (const std::uint64_t durable = journal_->durable_sequence(); required > durable) {
      return Status(ErrorCode::invalid_argument,
                    "projection " + std::string(name) + " needs this store's log to hold sequence " +
                        std::to_string(required) + " (the last event it exported, which it checks against the store's) "
                        "but the log ends at " + std::to_string(durable) +
                        ": the store is not the one it exported, or an older copy of it (restored from a backup? "
                        "export this store under a new source name)");
    }
  } else if (const std::uint32_t schema = projection->schema(); schema != 0) {
    auto newest = newest_snapshot(*store, name, schema, journal_->durable_sequence());
    if (!newest.ok()) return newest.status();
    if (newest.value()) {
      Status restored_ok;
      const Status called = call_user_code([&] { restored_ok = projection->restore(newest.value()->state); },
                                           [&] { return "restore() of projection " + std::string(name); });
      if (!called.ok()) restored_ok = called;
      if (restored_ok.ok()) {
        restored = newest.value()->header.sequence;
      } else {
        std::fprintf(stderr, "annal: projection %s: restoring the snapshot at %llu failed (%s); replaying all\n",
                     std::string(name).c_str(), static_cast<unsigned long long>(newest.value()->header.sequence),
                     restored_ok.to_string().c_str());
      }
    }
  }
  auto subscription = subscribe(restored + 1, options.gating);
  if (!subscription.ok()) return subscription.status();
  return std::make_unique<ProjectionRunner>(std::string(name), std::move(projection), options,
                                            std::move(subscription.value()), std::move(store), restored, *journal_,
                                            options_.idempotency_window);
}

Result<std::uint64_t> EngineImpl::build_as_of(std::string_view snapshots_of, Projection& into, AsOf at) {
  const std::uint64_t durable = journal_->durable_sequence();
  std::uint64_t target = at.value;
  if (at.is_time) {
    const auto found = sequence_at_time(at.value, durable);
    if (!found.ok()) return found.status();
    target = found.value();
  } else if (target > durable) {
    return Status(ErrorCode::invalid_argument, "cannot build a state as of sequence " + std::to_string(target) +
                                                   ": the durable log ends at " + std::to_string(durable));
  }
  std::uint64_t restored = 0;
  if (const std::uint32_t schema = into.schema(); schema != 0 && snapshots::valid_projection_name(snapshots_of)) {
    snapshots::SnapshotStore store(directory_, io_, 1, state_cipher());
    auto newest = newest_snapshot(store, snapshots_of, schema, target);
    if (!newest.ok()) return newest.status();
    if (newest.value() && into.restore(newest.value()->state).ok()) restored = newest.value()->header.sequence;
  }
  if (Status replayed = replay_into(into, restored + 1, target); !replayed.ok()) return replayed;
  return target;
}

Result<ConsistencyReport> EngineImpl::check_projection(std::string_view name, Projection& fresh,
                                                       Clock::duration timeout) {
  ProjectionRunner* runner = find_projection(name);
  if (runner == nullptr) return Status(ErrorCode::not_found, "no projection " + std::string(name));
  const auto deadline = Clock::now() + timeout;
  std::optional<std::uint64_t> live;
  const auto at = runner->query(0, [&](const Projection& projection) { live = projection.digest(); }, deadline);
  if (!at.ok()) return at.status();
  if (!live) return Status(ErrorCode::invalid_argument, "projection " + std::string(name) + " has no digest (schema 0)");
  // An eager projection may stand past the durable log; the rebuild reads only durable events.
  if (Status durable = journal_->wait_durable(at.value(), deadline); !durable.ok()) return durable;
  if (Status replayed = replay_into(fresh, 1, at.value()); !replayed.ok()) return replayed;
  std::optional<std::uint64_t> rebuilt;
  if (Status called = call_user_code([&] { rebuilt = fresh.digest(); },
                                     [] { return "digest() of the rebuilt projection"; });
      !called.ok()) {
    return called;
  }
  if (!rebuilt) return Status(ErrorCode::invalid_argument, "the rebuilt projection has no digest (schema 0)");
  return ConsistencyReport{.sequence = at.value(), .live_digest = *live, .rebuilt_digest = *rebuilt};
}

// Applies the events in [from, to] to `into`, then ends the batch.
Status EngineImpl::replay_into(Projection& into, std::uint64_t from, std::uint64_t to) {
  if (from > to) return {};
  auto reader = journal_->reader(from);
  if (!reader.ok()) return reader.status();
  for (;;) {
    const auto record = reader.value()->next();
    if (!record.ok()) return record.status();
    if (!record.value() || record.value()->header.sequence > to) break;
    const auto view = view_record(*record.value(), catalog_, learn_);
    if (!view.ok()) return view.status();
    if (!view.value()) continue;
    const std::uint64_t sequence = record.value()->header.sequence;
    if (Status applied = call_user_code([&] { into.apply(*view.value()); },
                                        [&] { return "the projection at sequence " + std::to_string(sequence); });
        !applied.ok()) {
      return applied;
    }
  }
  return call_user_code([&] { into.end_of_batch(to); }, [] { return "the projection's end_of_batch"; });
}

// The last sequence in [1, durable] stamped at or before `unix_ns` (0: none), by binary search.
Result<std::uint64_t> EngineImpl::sequence_at_time(std::uint64_t unix_ns, std::uint64_t durable) {
  auto reader = journal_->reader(1, kStreamReadChunkBytes);
  if (!reader.ok()) return reader.status();
  const auto stamp = [&](std::uint64_t sequence) -> Result<std::uint64_t> {
    reader.value()->seek(sequence);
    const auto record = reader.value()->next();
    if (!record.ok()) return record.status();
    if (!record.value()) return Status(ErrorCode::corruption, "no record at sequence " + std::to_string(sequence));
    return record.value()->header.timestamp_ns;
  };
  std::uint64_t low = 0, high = durable;  // stamp(low) <= unix_ns (or low = 0), stamp(high + 1) > unix_ns
  while (low < high) {
    const std::uint64_t middle = low + (high - low + 1) / 2;
    const auto at = stamp(middle);
    if (!at.ok()) return at.status();
    if (at.value() <= unix_ns) {
      low = middle;
    } else {
      high = middle - 1;
    }
  }
  return low;
}

Result<std::uint64_t> EngineImpl::trim_journal() {
  if (Status writable = refuse_if_read_only("trim_journal"); !writable.ok()) return writable;
  snapshots::SnapshotStore store(directory_, io_, 1, state_cipher());
  auto every = store.all();
  if (!every.ok()) return every.status();
  // The cut: below the oldest snapshot any recovery may restore (0 while one would replay all).
  std::uint64_t cut = UINT64_MAX;
  std::lock_guard lock(projections_mutex_);  // no projection added meanwhile
  for (const auto& [name, runner] : projections_) {
    // Only its own schema's snapshots count: it would rebuild from the start past any other.
    const auto oldest = store.oldest(name, runner->projection().schema());
    if (!oldest.ok()) return oldest.status();
    cut = std::min(cut, oldest.value().value_or(0));
  }
  for (const auto& [name, sequences] : every.value()) {
    if (!projections_.contains(name)) cut = std::min(cut, sequences.front());
  }
  if (!every.value().contains(kEngineStateName)) cut = 0;  // open() reads the whole log
  if (cut == 0 || cut == UINT64_MAX) return std::uint64_t{1};
  if (Status removed = journal_->remove_segments_before(cut + 1); !removed.ok()) return removed;
  return cut + 1;
}

// Loads the newest intact state snapshot at or below the recovered end of the log, if any. One
// that fails to decode (its checksums held, so a bug or a format this build does not know) may
// have left half of itself behind: the objects are made anew and the whole journal is read.
Status EngineImpl::restore_state() {
  // The durable end: a read-only journal beside a writer may hold more than it will serve.
  auto newest = newest_snapshot(state_store_, kEngineStateName, kEngineStateSchema, journal_->durable_sequence());
  if (!newest.ok()) return newest.status();
  if (!newest.value()) return {};
  const auto decoded = decode_engine_state(newest.value()->state, catalog_, index_, window_);
  std::string why_not;
  if (!decoded.ok()) {
    why_not = decoded.status().to_string();
  } else if (!decoded.value().complete_for(options_.idempotency_window) && journal_->locate(journal::kFirstSequence).ok()) {
    // The snapshot's window was full at a smaller capacity: the ids this open would keep beyond it
    // are only in the journal. (Once retention removed its start, the window is what is left.)
    why_not = "engine state snapshot " + std::to_string(newest.value()->header.sequence) +
              ": its idempotency window was kept at " + std::to_string(*decoded.value().capacity) +
              " ids, this open keeps " + std::to_string(options_.idempotency_window);
  }
  if (!why_not.empty()) {
    std::fprintf(stderr, "annal: %s; reading the whole journal instead\n", why_not.c_str());
    // Nothing else has seen them yet: open() has not returned, no thread of the engine runs.
    renew(catalog_);
    renew(index_);
    renew(window_, options_.idempotency_window);
    return {};
  }
  open_report_.state_snapshot = newest.value()->header.sequence;
  state_snapshot_at_ = open_report_.state_snapshot;
  return {};
}

Status EngineImpl::recover() {
  if (Status restored = restore_state(); !restored.ok()) return restored;
  auto reader = journal_->reader(open_report_.state_snapshot + 1);
  if (!reader.ok()) return reader.status();
  auto streams = index_.exclusive();  // nobody reads it before open() returns
  // The batch being read: its first event's sequence and version, and its ids with their places.
  std::uint64_t batch_first = 0, batch_version = 0;
  std::vector<std::pair<Id128, std::uint32_t>> batch_ids;
  for (;;) {
    const auto record = reader.value()->next();
    if (!record.ok()) return record.status();
    if (!record.value()) break;
    const journal::RecordHeader& header = record.value()->header;
    const auto stored = record.value()->payload;
    ++open_report_.records_replayed;
    if (header.stream_id == kSystemStream) {
      if (Status taken = take_system_record(*record.value(), /*again=*/false); !taken.ok()) return taken;
      if (header.type == kTypeStreamErased) {
        if (!cipher_) {
          return Status(ErrorCode::corruption, "journal record " + std::to_string(header.sequence) +
                                                   ": an erasure, in a store opened without its keys");
        }
        erased_in_log_.push_back(decode_erasure(stored, header.sequence).value());
      }
    } else {
      const auto metadata = recover_event(header, stored, record.value()->erased, streams);
      if (!metadata.ok()) return metadata.status();
      if (batch_first == 0) {
        batch_first = header.sequence;
        batch_version = header.stream_version;
      }
      const Id128 id = metadata.value().event_id;
      if (!id.empty()) batch_ids.emplace_back(id, static_cast<std::uint32_t>(header.sequence - batch_first));
    }
    if ((header.flags & journal::kFlagBatchEnd) != 0 && batch_first != 0) {
      const Receipt receipt{.first_sequence = batch_first, .last_sequence = header.sequence,
                            .stream_id = header.stream_id, .first_version = batch_version,
                            .last_version = header.stream_version};
      for (const auto& [id, index] : batch_ids) window_.remember(id, receipt, index);
      batch_first = 0;
      batch_ids.clear();
    }
  }
  return {};
}

// Checks one recovered event against the names and what came before it in its stream, indexes
// it, and returns its metadata.
Result<Metadata> EngineImpl::recover_event(const journal::RecordHeader& header, std::span<const std::byte> stored,
                                           bool erased, StreamIndex::Exclusive& streams) {
  const auto decoded = decode_event(stored, header.sequence, erased);
  if (!decoded.ok()) return decoded.status();
  const auto corrupt = [&](const std::string& what) {
    return Status(ErrorCode::corruption, "journal record " + std::to_string(header.sequence) + ": " + what);
  };
  // Names take ids in order, so an id has one exactly when it is below the count of names: cheaper
  // than looking a name up for every record.
  if (header.type < kFirstUserType || std::size_t{header.type} - kFirstUserType >= catalog_.type_names()) {
    return corrupt("event type " + std::to_string(header.type) + " has no name");
  }
  if ((header.stream_id & kNamedStreamBit) != 0 && (header.stream_id & ~kNamedStreamBit) >= catalog_.stream_names()) {
    return corrupt("stream " + std::to_string(header.stream_id) + " has no name");
  }
  StreamState* state = streams.find(header.stream_id);
  const std::uint64_t version = state != nullptr ? state->last_version + 1 : 0;
  const std::uint64_t prev = state != nullptr ? state->last_sequence : 0;
  const std::uint64_t points_to = decoded.value().metadata.prev;
  if (header.stream_version != version || points_to != prev) {
    return corrupt("stream " + std::to_string(header.stream_id) + " version " + std::to_string(header.stream_version) +
                   " pointing to " + std::to_string(points_to) + " does not follow version " +
                   (state ? std::to_string(state->last_version) : "none") + " at " + std::to_string(prev));
  }
  if (state != nullptr) {
    *state = {header.stream_version, header.sequence};
  } else {
    streams.add(header.stream_id, {header.stream_version, header.sequence});
  }
  return decoded.value().metadata;
}

}  // namespace

std::string ExpectedVersion::to_string() const {
  switch (kind_) {
    case Kind::any: return "any version";
    case Kind::no_stream: return "no stream";
    case Kind::exactly: return "version " + std::to_string(version_);
  }
  return "?";
}

Result<std::unique_ptr<Engine>> Engine::open(const std::string& directory, const Options& options) {
  return open(directory, options, nullptr);
}

Result<std::unique_ptr<Engine>> Engine::open(const std::string& directory, const Options& options,
                                             std::shared_ptr<journal::IoBackend> io) {
  if (Status valid = check_options(options); !valid.ok()) return valid;
  if (!io) {
    if (Status made = journal::create_directories(directory, options.journal.file_mode); !made.ok()) {
      return Status(made.code(), "cannot create the engine's directory: " + made.message());
    }
  }
  std::shared_ptr<journal::IoBackend> files = io ? io : journal::make_posix_backend(options.journal.file_mode);
  auto cipher = store_cipher(directory, options, files);
  if (!cipher.ok()) return cipher.status();
  journal::Options opening = journal_options(options, directory, files, cipher.value());
  if (cipher.value()) {
    // An encrypted store's chain is tagged: rewriting it takes the master key too.
    auto chain_key = cipher.value()->chain_key();
    if (!chain_key.ok()) return chain_key.status();
    opening.chain_key = std::move(chain_key).value();
    // Encrypted from this open on (KEYS made now): the chain written in clear has no tags yet.
    opening.tag_untagged_chain = cipher.value()->made_at_this_open();
  }
  auto journal = io ? journal::Journal::open(directory, opening, io) : journal::Journal::open(directory, opening);
  if (!journal.ok()) return journal.status();
  auto engine = std::make_unique<EngineImpl>(directory, options, std::move(journal.value()), std::move(files), false,
                                             std::move(cipher).value());
  if (Status started = engine->start(); !started.ok()) return started;
  return std::unique_ptr<Engine>(std::move(engine));
}

Result<std::unique_ptr<Engine>> Engine::open_read_only(const std::string& directory, const Options& options) {
  if (Status valid = check_options(options); !valid.ok()) return valid;
  if (!std::filesystem::is_directory(directory)) {
    return Status(ErrorCode::not_found, directory + " is not a directory (nothing to read)");
  }
  const auto files = journal::make_posix_backend();
  auto cipher = store_cipher(directory, options, files);
  if (!cipher.ok()) return cipher.status();
  auto journal = journal::Journal::open_read_only(directory, journal_options(options, directory, files, cipher.value()));
  if (!journal.ok()) return journal.status();
  Options reading = options;
  reading.live_subscriptions_max = 0;      // nothing is published into the ring: subscriptions tail the files
  // so the ring is the smallest the options allow (the default's 65,536 slots cost every tool's
  // open some milliseconds for nothing)
  reading.ring_capacity = std::bit_ceil(2 * options.events_per_append_max + 1);
  reading.subscriber_lag_max = 0;
  reading.state_snapshot_every_events = 0;  // and nothing is written
  reading.sequencing = Sequencing::caller_lock;
  auto engine = std::make_unique<EngineImpl>(directory, reading, std::move(journal.value()),
                                             journal::make_posix_backend(), true, std::move(cipher).value());
  if (Status started = engine->start(); !started.ok()) return started;
  return std::unique_ptr<Engine>(std::move(engine));
}

Result<std::vector<Event>> Engine::read_stream(const StreamRef& stream, const ReadStreamOptions& options) {
  return read_stream(stream, options, Clock::now() + kReadDurableWait);
}

}  // namespace annal::engine
