#include "annal/kafka/kafka_projection_runner.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <optional>
#include <span>
#include <string_view>
#include <utility>

#include "annal/base/little_endian.h"
#include "annal/base/user_code.h"
#include "annal/journal/io_backend.h"
#include "annal/snapshots/snapshot_store.h"
#include "client.h"

namespace annal::kafka {
namespace {

// The runner's own part of a snapshot, before the projection's state:
//
//   u32 format | u16 topic size | topic | u16 cluster id size | cluster id (format 2 on)
//   | u32 partitions | i64 next offset x partitions
//   | u32 sources | (u16 name size | name | u64 last sequence x partitions) x sources
//   | projection's state (the rest)
//
// Little-endian; the snapshot store around it checks it with a CRC.
constexpr std::uint32_t kSnapshotFormat = 2;  // 1: no cluster id (taken as this cluster's)
// Records applied between two end_of_batch() calls at most.
constexpr int kBatchMax = 1000;
constexpr int kPollMs = 100;
// The longest a waiting query holds the runner back at once, before it reads on (the query may
// wait for an event it has not read yet).
constexpr std::chrono::milliseconds kQuerySlice{20};
// A topic deleted under the runner: librdkafka stops fetching its partitions, saying so once, and
// caught_up stays true for ever. The topic's metadata is asked for this often (each ask waiting
// at most kTopicAskWait), and a TopicWatch says when it is gone.
constexpr std::chrono::seconds kTopicCheckEvery{5};
constexpr std::chrono::milliseconds kTopicAskWait{1'000};
// The longest stop() waits for librdkafka's close: no group to leave here, nothing to commit.
constexpr std::chrono::seconds kCloseWait{30};
// A limit on what a shared topic's records can make the runner keep: a source past the count (or
// with a name past kSourceNameMax) is not an export of annal's (a bug or a hostile producer).
constexpr std::size_t kSourcesMax = 4096;

// Whether the topic was deleted, from answers to its metadata (partition_count) asked every
// kTopicCheckEvery. One "does not exist" may come from a broker whose metadata lags (a rolling
// restart, a controller moving), and a deletion is for good, so there is no hurry: the topic is taken for deleted once
// such answers have come for kMissingFor, kMissingAnswers of them at least, none saying it is
// there in between (no answer, brokers away, counts for neither).
class TopicWatch {
 public:
  static constexpr std::chrono::seconds kMissingFor{30};
  static constexpr int kMissingAnswers = 5;
  enum class Seen { there, no_answer, missing, deleted };
  Seen take(const Result<std::int32_t>& answer);
  // "N answers over S s", for the error once deleted.
  [[nodiscard]] std::string how_long() const;

 private:
  std::optional<std::chrono::steady_clock::time_point> since_;  // the first "does not exist" of the run
  int answers_ = 0;
};

TopicWatch::Seen TopicWatch::take(const Result<std::int32_t>& answer) {
  if (answer.ok()) {
    since_.reset();
    answers_ = 0;
    return Seen::there;
  }
  if (answer.status().code() != ErrorCode::not_found) return Seen::no_answer;
  const auto now = std::chrono::steady_clock::now();
  if (!since_) since_ = now;
  ++answers_;
  return answers_ >= kMissingAnswers && now - *since_ >= kMissingFor ? Seen::deleted : Seen::missing;
}

std::string TopicWatch::how_long() const {
  const auto seconds = since_ ? std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - *since_)
                              : std::chrono::seconds(0);
  return std::to_string(answers_) + " answers over " + std::to_string(seconds.count()) + " s";
}

class ByteWriter {
 public:
  template <class T>
  void number(T value) {
    const std::size_t at = bytes_.size();
    bytes_.resize(at + sizeof(T));
    store_le(std::span(bytes_), at, value);
  }
  void text(std::string_view text) {
    ANNAL_ASSERT(text.size() <= std::numeric_limits<std::uint16_t>::max());
    number(static_cast<std::uint16_t>(text.size()));
    const auto* data = reinterpret_cast<const std::byte*>(text.data());
    bytes_.insert(bytes_.end(), data, data + text.size());
  }
  void append(std::span<const std::byte> more) { bytes_.insert(bytes_.end(), more.begin(), more.end()); }
  std::vector<std::byte> take() { return std::move(bytes_); }

 private:
  std::vector<std::byte> bytes_;
};

// Reads what ByteWriter wrote; every read checks the size left, so a short snapshot is an error, not
// a read past its end.
class ByteReader {
 public:
  explicit ByteReader(std::span<const std::byte> bytes) : bytes_(bytes) {}
  template <class T>
  bool number(T& value) {
    if (bytes_.size() - at_ < sizeof(T)) return false;
    value = load_le<T>(bytes_, at_);
    at_ += sizeof(T);
    return true;
  }
  bool text(std::string& value) {
    std::uint16_t size = 0;
    if (!number(size) || bytes_.size() - at_ < size) return false;
    value.assign(reinterpret_cast<const char*>(bytes_.data() + at_), size);
    at_ += size;
    return true;
  }
  [[nodiscard]] std::span<const std::byte> rest() const { return bytes_.subspan(at_); }

 private:
  std::span<const std::byte> bytes_;
  std::size_t at_ = 0;
};

}  // namespace

// The consumer: every partition of the topic assigned (no group membership: each read model reads
// the whole topic), its own offsets from the snapshot, nothing committed to Kafka.
struct KafkaProjectionRunner::Reader {
  Owned<rd_kafka_t> consumer;
  std::int32_t partitions = 0;
  std::string cluster;       // the cluster's id: a snapshot of another cluster's topic is refused
  std::vector<bool> at_end;  // per partition: read to its end (and nothing since)
  // Per partition, after a fetch answered OFFSET_OUT_OF_RANGE: the offset fetched, while the
  // partition is read from its start to tell retention (the start past it) from an answer that is
  // none (a replica whose log starts elsewhere, a passing error). -1: not checking.
  std::vector<std::int64_t> checking;
  std::vector<int> resets;  // per partition: such answers in a row (the next check waits a little)
  // Per partition: when it is fetched again (from next_offset_, or its start where checking).
  // max: not due.
  std::vector<std::chrono::steady_clock::time_point> restart_at;
  // A partition due to be fetched anew is not at its end, whatever it reached before.
  void schedule_restart(std::size_t partition, std::chrono::steady_clock::time_point at) {
    restart_at[partition] = at;
    at_end[partition] = false;
  }
  std::chrono::steady_clock::time_point topic_checked_at;  // check_topic()'s last ask
  TopicWatch topic;  // check_topic()'s answers
  std::shared_ptr<journal::IoBackend> io;
  std::optional<journal::FileId> lock;  // the snapshot directory's, held until stop()
  std::unique_ptr<snapshots::SnapshotStore> snapshots;
};

KafkaProjectionRunner::KafkaProjectionRunner(std::shared_ptr<engine::Projection> projection,
                                             KafkaProjectionOptions options)
    : projection_(std::move(projection)), options_(std::move(options)) {}

KafkaProjectionRunner::~KafkaProjectionRunner() { (void)stop(); }

Result<std::unique_ptr<KafkaProjectionRunner>> KafkaProjectionRunner::start(std::shared_ptr<engine::Projection> projection,
                                                                           KafkaProjectionOptions options) {
  ANNAL_ASSERT(projection != nullptr);
  if (options.name.empty()) {
    return Status(ErrorCode::invalid_argument, "Kafka read model: a name is needed (KafkaProjectionOptions::name)");
  }
  if (Status named = check_named("Kafka read model " + options.name, options.brokers, options.topic); !named.ok()) {
    return named;
  }
  std::optional<Result<std::optional<std::uint64_t>>> own_state;
  if (Status asked = call_user_code([&] { own_state.emplace(projection->resume_after()); },
                                    [&] { return "resume_after() of Kafka read model " + options.name; });
      !asked.ok()) {
    return asked;
  }
  if (!own_state->ok()) return own_state->status();
  if (own_state->value().has_value()) {
    return Status(ErrorCode::invalid_argument, "Kafka read model " + options.name +
                                                   ": the projection keeps its own state (resume_after answers a sequence), "
                                                   "which cannot say where several instances' exports stand; run it in the engine");
  }
  std::unique_ptr<KafkaProjectionRunner> runner(new KafkaProjectionRunner(std::move(projection), std::move(options)));
  const KafkaProjectionOptions& o = runner->options_;
  runner->reader_ = std::make_unique<Reader>();
  Reader& reader = *runner->reader_;

  // read_committed (the default): another producer's aborted records are none of the model's.
  // auto.offset.reset=error: offsets from a snapshot that retention has passed are an error, not
  // a silent jump that would leave events out of the state.
  auto conf = configuration(o.brokers, o.settings, {{"group.id", "annal-read-model." + o.name},
                                                    {"enable.auto.commit", "false"},
                                                    {"enable.auto.offset.store", "false"},
                                                    {"enable.partition.eof", "true"},
                                                    {"auto.offset.reset", "error"},
                                                    {"client.id", "annal-read-model-" + o.name}});
  if (!conf.ok()) return conf.status();
  auto consumer = make_client(RD_KAFKA_CONSUMER, std::move(conf).value());
  if (!consumer.ok()) return consumer.status();
  reader.consumer = std::move(consumer).value();
  rd_kafka_poll_set_consumer(reader.consumer.get());
  auto partitions = partition_count(reader.consumer.get(), o.topic, o.start_timeout, o.stopping);
  if (!partitions.ok()) return partitions.status();
  auto cluster = cluster_id(reader.consumer.get(), o.start_timeout, o.stopping);
  if (!cluster.ok()) return cluster.status();
  reader.cluster = std::move(cluster).value();
  reader.partitions = partitions.value();
  reader.at_end.assign(static_cast<std::size_t>(reader.partitions), false);
  reader.checking.assign(static_cast<std::size_t>(reader.partitions), -1);
  reader.resets.assign(static_cast<std::size_t>(reader.partitions), 0);
  reader.restart_at.assign(static_cast<std::size_t>(reader.partitions), Clock::time_point::max());
  runner->next_offset_.assign(static_cast<std::size_t>(reader.partitions), RD_KAFKA_OFFSET_BEGINNING);

  if (runner->projection_->schema() != 0 && !o.directory.empty()) {
    if (Status opened = runner->open_snapshots(); !opened.ok()) return opened;
  }

  if (Status assigned = runner->assign(); !assigned.ok()) return assigned;
  runner->snapshotted_at_ = Clock::now();
  reader.topic_checked_at = runner->snapshotted_at_;  // there: partition_count() said so
  runner->thread_ = std::thread([r = runner.get()] { r->run(); });
  return runner;
}

Status KafkaProjectionRunner::open_snapshots() {
  const KafkaProjectionOptions& o = options_;
  Reader& reader = *reader_;
  if (!snapshots::valid_projection_name(o.name)) {
    return Status(ErrorCode::invalid_argument, "Kafka read model " + o.name +
                                                   ": not a name its snapshot files can carry (letters, digits and _)");
  }
  if (Status made = journal::create_directories(o.directory, journal::kPrivateFileMode); !made.ok()) {
    return Status(made.code(), "Kafka read model " + o.name + ": " + made.message());
  }
  reader.io = o.io != nullptr ? o.io : journal::make_posix_backend();
  // One writer of the directory's snapshots: a second runner (or an engine) there gets `locked`.
  auto lock = reader.io->lock_directory(o.directory);
  if (!lock.ok()) {
    return Status(lock.status().code(), "Kafka read model " + o.name + ": " + lock.status().message() +
                                            " (each read model needs a directory of its own)");
  }
  reader.lock = lock.value();
  reader.snapshots = std::make_unique<snapshots::SnapshotStore>(o.directory, reader.io, std::max<std::size_t>(1, o.snapshots_kept));
  std::vector<snapshots::SnapshotStore::Skipped> skipped;
  auto newest = reader.snapshots->newest(o.name, projection_->schema(), std::numeric_limits<std::uint64_t>::max(), &skipped);
  if (!newest.ok()) return newest.status();
  if (!skipped.empty()) {
    progress_.restore_skipped = Status(skipped.back().why.code(), skipped.back().file + ": " + skipped.back().why.message());
  }
  // Rebuilt from the topic's start, as the engine does, after a snapshot passed over: from offset
  // 0, not BEGINNING, so that retention having removed records the snapshot held stops the runner
  // (auto.offset.reset=error) rather than rebuild a state without them.
  const auto rebuild_from_zero = [&] { std::fill(next_offset_.begin(), next_offset_.end(), 0); };
  if (!newest.value().has_value()) {
    if (!skipped.empty()) {
      // Numbered on from the newest passed over (another schema, damaged), as below: counted from
      // 0, the next snapshots would be older than those, and pruned as soon as written.
      total_ = skipped.front().sequence;
      snapshotted_ = total_;
      rebuild_from_zero();
    }
    return {};
  }
  const std::uint64_t sequence = newest.value()->header.sequence;
  bool elsewhere = false;
  const Status restored = restore(sequence, newest.value()->state, elsewhere);
  if (elsewhere) return restored;  // another topic: the user's to settle
  if (!restored.ok()) {
    // Numbered on from the snapshot refused, so that the next ones are newer than it.
    progress_.restore_skipped = restored;
    total_ = sequence;
    snapshotted_ = sequence;
    rebuild_from_zero();
  }
  return {};
}

Status KafkaProjectionRunner::restore(std::uint64_t total, std::span<const std::byte> state, bool& elsewhere) {
  const std::string where = "Kafka read model " + options_.name + ": snapshot at " + std::to_string(total) + " in " +
                            options_.directory;
  const auto partitions = static_cast<std::uint32_t>(next_offset_.size());
  ByteReader in(state);
  std::uint32_t format = 0;
  std::string topic;
  std::uint32_t count = 0;
  std::string cluster;
  if (!in.number(format) || (format != 1 && format != kSnapshotFormat) || !in.text(topic) ||
      (format >= 2 && !in.text(cluster)) || !in.number(count)) {
    return Status(ErrorCode::corruption, where + ": not a read model's snapshot (format " + std::to_string(format) + ")");
  }
  // Offsets mean nothing in another cluster's topic of the same name (a migration, a mirror,
  // staging): resumed from, they would skip its records below them.
  elsewhere = (format >= 2 && cluster != reader_->cluster) || topic != options_.topic || count != partitions;
  if (format >= 2 && cluster != reader_->cluster) {
    return Status(ErrorCode::invalid_argument, where + " was read from topic " + topic + " of Kafka cluster " + cluster +
                                                   ", not of cluster " + reader_->cluster + " at " + options_.brokers +
                                                   ": remove its snapshots to rebuild it from this cluster's topic");
  }
  if (topic != options_.topic || count != partitions) {
    return Status(ErrorCode::invalid_argument, where + " was read from topic " + topic + " of " + std::to_string(count) +
                                                   " partitions, not " + options_.topic + " of " +
                                                   std::to_string(partitions) +
                                                   ": remove its snapshots to rebuild it from the topic");
  }
  std::vector<std::int64_t> offsets(count);
  for (std::int64_t& offset : offsets) {
    if (!in.number(offset)) return Status(ErrorCode::corruption, where + ": cut short in its offsets");
  }
  std::uint32_t sources = 0;
  if (!in.number(sources) || sources > kSourcesMax) return Status(ErrorCode::corruption, where + ": cut short");
  std::map<std::string, std::vector<std::uint64_t>, std::less<>> last;
  for (std::uint32_t i = 0; i < sources; ++i) {
    std::string name;
    std::vector<std::uint64_t> sequences(count);
    if (!in.text(name)) return Status(ErrorCode::corruption, where + ": cut short in its sources");
    for (std::uint64_t& sequence : sequences) {
      if (!in.number(sequence)) return Status(ErrorCode::corruption, where + ": cut short in its sources");
    }
    last.emplace(std::move(name), std::move(sequences));
  }
  Status refused;
  if (Status called = call_user_code([&] { refused = projection_->restore(in.rest()); },
                                     [&] { return "restore() of Kafka read model " + options_.name; });
      !called.ok()) {
    return called;
  }
  if (!refused.ok()) return Status(refused.code(), where + ": the projection refused it: " + refused.message());
  next_offset_ = std::move(offsets);
  last_ = std::move(last);
  total_ = total;
  snapshotted_ = total;
  progress_.restored = total;
  return {};
}

Status KafkaProjectionRunner::stop() {
  const bool inside = called_from_inside();
  if (!stopping_.exchange(true)) {
    // First, without the lock: an apply() holding it may be waiting for exactly this.
    (void)call_user_code([&] { projection_->stop_requested(); }, [] { return "stop_requested()"; });
    if (inside) {
      changed_.notify_all();  // the projection's call that stops it holds the lock
    } else {
      // Under the lock, so that a query between its check and its wait cannot miss the news.
      std::lock_guard lock(mutex_);
      changed_.notify_all();
    }
  }
  // The projection's own code (apply(), end_of_batch(), snapshot()) cannot wait for the runner it
  // runs in: the loop ends once that call returns, and a stop() from outside (or the destructor)
  // joins it and writes the last snapshot.
  if (inside) return progress().error;
  std::lock_guard one_at_a_time(stop_mutex_);
  stopper_.store(std::this_thread::get_id(), std::memory_order_relaxed);
  if (thread_.joinable()) thread_.join();
  if (reader_) {
    if (progress().error.ok() && total_ != snapshotted_) write_snapshot();
    // Bounded: ADeletedTopicStopsTheReadModelAndItsStopReturns.
    (void)close_consumer(std::move(reader_->consumer), kCloseWait);
    if (reader_->lock) (void)reader_->io->close(*reader_->lock);
    reader_.reset();
  }
  stopper_.store(std::thread::id(), std::memory_order_relaxed);
  return progress().error;
}

bool KafkaProjectionRunner::called_from_inside() const {
  const std::thread::id caller = std::this_thread::get_id();
  return caller == applier_.load(std::memory_order_relaxed) || caller == stopper_.load(std::memory_order_relaxed);
}

Status KafkaProjectionRunner::query(const Written& written, const std::function<void(const engine::Projection&)>& fn,
                                    Clock::duration timeout) {
  if (called_from_inside()) {
    return Status(ErrorCode::invalid_argument,
                  "Kafka read model " + options_.name +
                      ": query() from the projection's own apply(), end_of_batch(), snapshot() or stop_requested() "
                      "would wait for itself; its state is at hand there");
  }
  std::unique_lock lock(mutex_);
  waiting_.push_back(&written);
  queries_waiting_.fetch_add(1, std::memory_order_acq_rel);
  // Run once the event is applied and its batch has ended (end_of_batch), as an engine projection's
  // queries do: a projection that folds its batch in there shows the event only then.
  const bool ready = changed_.wait_until(lock, Clock::now() + timeout, [&] {
    return (!batch_open_ && applied_locked(written)) || !progress_.error.ok() || stopping_.load();
  });
  waiting_.erase(std::find(waiting_.begin(), waiting_.end(), &written));
  queries_waiting_.fetch_sub(1, std::memory_order_acq_rel);
  changed_.notify_all();  // the runner may be holding its next batch back for this query
  if (!progress_.error.ok()) return progress_.error;
  // Applied but in a batch not ended when the time ran out: not shown yet either.
  if (!applied_locked(written) || !ready) {
    const std::string what = "Kafka read model " + options_.name + ": event " + std::to_string(written.sequence) +
                             " of " + written.source + " (stream " + written.stream + ") not applied";
    if (!ready) return Status(ErrorCode::timed_out, what + " (its batch ended) in time");
    return Status(ErrorCode::failed, what + ": the runner stopped");
  }
  return call_user_code([&] { fn(*projection_); }, [&] { return "a query on Kafka read model " + options_.name; });
}

KafkaProjectionRunner::Progress KafkaProjectionRunner::progress() const {
  std::lock_guard lock(progress_mutex_);
  return progress_;
}

bool KafkaProjectionRunner::servable() const {
  std::lock_guard lock(mutex_);
  return servable_locked();
}

bool KafkaProjectionRunner::servable_locked() const {
  return std::any_of(waiting_.begin(), waiting_.end(), [&](const Written* written) { return applied_locked(*written); });
}

bool KafkaProjectionRunner::applied_locked(const Written& written) const {
  if (written.source.empty()) return true;
  const auto source = last_.find(written.source);
  if (source == last_.end()) return false;
  const std::int32_t partition = partition_of(written.stream, static_cast<std::int32_t>(next_offset_.size()));
  return source->second[static_cast<std::size_t>(partition)] >= written.sequence;
}

Status KafkaProjectionRunner::assign() {
  Reader& reader = *reader_;
  const Owned<rd_kafka_topic_partition_list_t> assignment(rd_kafka_topic_partition_list_new(reader.partitions));
  for (std::int32_t partition = 0; partition < reader.partitions; ++partition) {
    rd_kafka_topic_partition_list_add(assignment.get(), options_.topic.c_str(), partition)->offset =
        next_offset_[static_cast<std::size_t>(partition)];
  }
  if (const rd_kafka_resp_err_t assigned = rd_kafka_assign(reader.consumer.get(), assignment.get()); assigned) {
    return Status(ErrorCode::io_error, "Kafka at " + options_.brokers + ": reading topic " + options_.topic + ": " +
                                           rd_kafka_err2str(assigned));
  }
  return {};
}

// One partition out of the assignment and in again, not the whole assignment: librdkafka 2.0.2
// asks a partition's fetcher to stop at each removal while it is started, and a second removal
// before the first stop's answer was taken sends a second stop, whose answer aborts the process
// (rdkafka_assignment.c: "Assertion rktp->rktp_started failed"; librdkafka issue 5573, fixed in
// 2.15). Assigning every partition again at each partition's OFFSET_OUT_OF_RANGE did that when two
// partitions had one in a row. A partition is restarted only after an answer of its own fetching
// since its last restart (its error, or its first record or end when checked), which librdkafka
// gives only once that restart's stop was taken.
Status KafkaProjectionRunner::restart(std::int32_t partition) {
  Reader& reader = *reader_;
  const auto p = static_cast<std::size_t>(partition);
  const auto change = [&](rd_kafka_error_t* (*how)(rd_kafka_t*, const rd_kafka_topic_partition_list_t*),
                          std::int64_t offset) -> Status {
    const Owned<rd_kafka_topic_partition_list_t> one(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(one.get(), options_.topic.c_str(), partition)->offset = offset;
    const Owned<rd_kafka_error_t> error(how(reader.consumer.get(), one.get()));
    if (!error) return {};
    return Status(ErrorCode::io_error, "Kafka at " + options_.brokers + ": reading topic " + options_.topic +
                                           " partition " + std::to_string(partition) + ": " +
                                           rd_kafka_error_string(error.get()));
  };
  if (Status out = change(rd_kafka_incremental_unassign, RD_KAFKA_OFFSET_INVALID); !out.ok()) return out;
  return change(rd_kafka_incremental_assign, reader.checking[p] >= 0 ? RD_KAFKA_OFFSET_BEGINNING : next_offset_[p]);
}

void KafkaProjectionRunner::run() {
  applier_.store(std::this_thread::get_id(), std::memory_order_relaxed);
  rd_kafka_t* consumer = reader_->consumer.get();
  int in_batch = 0;              // events applied since the last end_of_batch()
  std::uint64_t batch_last = 0;  // the last one's sequence
  // Records taken since the loop last went past a batch's end: foreign records and duplicates,
  // which apply nothing, bound a batch too, or a stretch of them held the batch open and the lag
  // and snapshots by time still, however long it lasted.
  int records = 0;
  // Before a snapshot or the end: what the projection buffered is in its state.
  const auto end_batch = [&]() -> Status {
    if (in_batch == 0) return {};
    in_batch = 0;
    std::lock_guard lock(mutex_);
    const Status ended = call_user_code([&] { projection_->end_of_batch(batch_last); },
                                        [&] { return "end_of_batch() of Kafka read model " + options_.name; });
    batch_open_ = false;
    changed_.notify_all();
    return ended;
  };
  while (!stopping_.load()) {
    // Queries waiting for events applied already: the batch ends, and they run before the next
    // one begins (a short slice at most, should one not take its turn). A query waiting for an
    // event not read yet holds nothing back.
    if (queries_waiting_.load(std::memory_order_acquire) > 0 && servable()) {
      if (Status ended = end_batch(); !ended.ok()) return fail(std::move(ended));
      std::unique_lock lock(mutex_);
      changed_.wait_for(lock, kQuerySlice, [&] { return !servable_locked() || stopping_.load(); });
    }
    for (std::int32_t partition = 0; partition < reader_->partitions; ++partition) {
      auto& at = reader_->restart_at[static_cast<std::size_t>(partition)];
      if (Clock::now() < at) continue;
      at = Clock::time_point::max();
      if (Status restarted = restart(partition); !restarted.ok()) return fail(std::move(restarted));
    }
    const Owned<rd_kafka_message_t> message(rd_kafka_consumer_poll(consumer, in_batch > 0 ? 0 : kPollMs));
    if (message) {
      if (Status taken = take(*message, in_batch, batch_last); !taken.ok()) return fail(std::move(taken));
      if (in_batch < kBatchMax && ++records < kBatchMax) continue;
    }
    records = 0;
    if (Status ended = end_batch(); !ended.ok()) return fail(std::move(ended));
    update_lag();
    const std::uint64_t since = total_ - snapshotted_;
    const bool by_count = options_.snapshot_every_events != 0 && since >= options_.snapshot_every_events;
    const bool by_time = options_.snapshot_every.count() != 0 && Clock::now() - snapshotted_at_ >= options_.snapshot_every;
    if (since != 0 && (by_count || by_time)) write_snapshot();
    if (Status there = check_topic(); !there.ok()) return fail(std::move(there));
  }
  // Stopping mid-batch: stop() snapshots next, and the state must hold what the offsets say.
  if (Status ended = end_batch(); !ended.ok()) fail(std::move(ended));
}

Status KafkaProjectionRunner::check_topic() {
  Reader& reader = *reader_;
  const auto now = Clock::now();
  if (now - reader.topic_checked_at < kTopicCheckEvery) return {};
  const auto partitions =
      partition_count(reader.consumer.get(), options_.topic, kTopicAskWait, [&] { return stopping_.load(); });
  reader.topic_checked_at = Clock::now();
  if (partitions.ok() && partitions.value() != reader.partitions) {
    // Made again with another count (within TopicWatch's window), or grown: the records' keys now
    // map to other partitions, and the new ones are not read.
    return Status(ErrorCode::invalid_argument, "Kafka read model " + options_.name + ": topic " + options_.topic +
                                                   " now has " + std::to_string(partitions.value()) + " partitions, not " +
                                                   std::to_string(reader.partitions) +
                                                   ": remove its snapshots to rebuild it from the topic");
  }
  const std::string why = "Kafka read model " + options_.name + ": " + partitions.status().message();
  switch (reader.topic.take(partitions)) {
    case TopicWatch::Seen::there: {
      // There after all (librdkafka fetches its assigned partitions again by itself): what this
      // said is taken back (the consumer's own errors stay, cleared by its next record or
      // partition end).
      std::lock_guard lock(mutex_);
      update_progress([](Progress& p) {
        if (p.retrying.code() == ErrorCode::not_found) p.retrying = Status();
      });
      return {};
    }
    case TopicWatch::Seen::no_answer:  // the consumer's errors say why
      return {};
    case TopicWatch::Seen::missing: {
      std::lock_guard lock(mutex_);
      update_progress([&](Progress& p) { p.retrying = Status(ErrorCode::not_found, why); });
      return {};
    }
    case TopicWatch::Seen::deleted:
      break;
  }
  return Status(ErrorCode::not_found,
                why + " (" + reader.topic.how_long() +
                    "). Its partitions are no longer read. If it was deleted and made again, its offsets are not "
                    "the snapshot's: remove the read model's snapshots to rebuild it from the topic, knowing that a "
                    "rebuild lacks whatever retention has removed from it");
}

void KafkaProjectionRunner::update_lag() {
  std::uint64_t lag = 0;
  for (std::int32_t partition = 0; partition < reader_->partitions; ++partition) {
    // Not read yet (BEGINNING): counted from the partition's start.
    const std::int64_t next = next_offset_[static_cast<std::size_t>(partition)];
    lag += unread(reader_->consumer.get(), options_.topic, partition, next >= 0 ? std::optional(next) : std::nullopt);
  }
  std::lock_guard lock(mutex_);
  update_progress([&](Progress& p) { p.lag = lag; });
}

Status KafkaProjectionRunner::take(const rd_kafka_message_t& message, int& in_batch, std::uint64_t& batch_last) {
  // Named in errors only: every record passes here.
  const auto where = [&] {
    return "Kafka read model " + options_.name + ", topic " + options_.topic + " partition " +
           std::to_string(message.partition) + " offset " + std::to_string(message.offset);
  };
  // A partition waiting for its restart: what it still has queued is read again after it (or a
  // record from its start, queued behind the first answer, was taken for that answer).
  if (message.partition >= 0 && message.partition < reader_->partitions &&
      reader_->restart_at[static_cast<std::size_t>(message.partition)] != Clock::time_point::max()) {
    return {};
  }
  // Reading a partition from its start after an OFFSET_OUT_OF_RANGE: its first answer (a record,
  // or its end when it is empty) says where it starts. At or below the offset fetched, nothing
  // was removed: read on from there. Past it, retention removed records the state never had.
  if (message.partition >= 0 && message.partition < reader_->partitions &&
      reader_->checking[static_cast<std::size_t>(message.partition)] >= 0 &&
      (message.err == RD_KAFKA_RESP_ERR_NO_ERROR || message.err == RD_KAFKA_RESP_ERR__PARTITION_EOF)) {
    const auto partition = static_cast<std::size_t>(message.partition);
    const std::int64_t fetched = reader_->checking[partition];
    reader_->checking[partition] = -1;
    if (message.offset > fetched) {
      return Status(ErrorCode::io_error, where() + ": offset " + std::to_string(fetched) +
                                             " is no longer in the partition (its start is " +
                                             std::to_string(message.offset) +
                                             "): retention removed records this read model has not read");
    }
    // Its end below the offset fetched: those offsets now hold other records, or none (the topic
    // deleted and made again, or an unclean leader election). Read on from there, the runner
    // asked again every 200 ms, then passed over the new records below it. A partition end's
    // offset is the end; a record's, the high watermark of the fetch that brought it (written
    // before its records are queued; -1 after an error answer: not known).
    const std::int64_t end = partition_end(reader_->consumer.get(), options_.topic, message);
    if (end < 0) {  // not known now: read from its start again
      reader_->checking[partition] = fetched;
      reader_->schedule_restart(partition, Clock::now() + std::chrono::milliseconds(200));
      return {};
    }
    if (end < fetched) {
      return Status(ErrorCode::io_error, where() + ": offset " + std::to_string(fetched) + " is past the partition's end (" +
                                             std::to_string(end) + "): the topic was deleted and made again, or a "
                                             "leader election lost records this read model has read. Remove its "
                                             "snapshots to rebuild it from the topic");
    }
    reader_->schedule_restart(partition, Clock::now());
    return {};
  }
  if (message.err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET && message.partition >= 0 &&
      message.partition < reader_->partitions) {
    // auto.offset.reset=error: the fetch was answered OFFSET_OUT_OF_RANGE and the partition's
    // fetching stopped. Retention, or an answer that is none: the partition's start tells. Not
    // read yet (next offset BEGINNING), it is read from its start whatever it is.
    const auto partition = static_cast<std::size_t>(message.partition);
    if (next_offset_[partition] >= 0) reader_->checking[partition] = next_offset_[partition];
    const int resets = reader_->resets[partition]++;
    reader_->schedule_restart(partition, Clock::now() + (resets > 0 ? std::chrono::milliseconds(200) : std::chrono::milliseconds(0)));
    std::lock_guard lock(mutex_);
    update_progress([&](Progress& p) { p.retrying = Status(ErrorCode::io_error, where() + ": " + rd_kafka_err2str(message.err)); });
    return {};
  }
  if (message.err != RD_KAFKA_RESP_ERR_NO_ERROR && message.err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
    // The consumer's errors are reports: it goes on fetching (brokers down, a leader moved, a
    // request failed, credentials rotating), and so does the runner. Except where it cannot go
    // on: offsets retention has passed (auto.offset.reset=error), access refused, a fatal error.
    const Status error(ErrorCode::io_error, where() + ": " + rd_kafka_err2str(message.err));
    switch (message.err) {
      case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
      case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
      case RD_KAFKA_RESP_ERR__FATAL:
        return error;
      default:
        break;
    }
    std::lock_guard lock(mutex_);
    update_progress([&](Progress& p) { p.retrying = error; });
    return {};
  }
  ANNAL_ASSERT(message.partition >= 0 && message.partition < reader_->partitions);
  const auto partition = static_cast<std::size_t>(message.partition);
  if (message.err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
    reader_->at_end[partition] = true;
    std::lock_guard lock(mutex_);
    // The end's offset, not BEGINNING, is where a snapshot resumes: records that come and go to
    // retention meanwhile are an error then, not a silent gap.
    next_offset_[partition] = message.offset;
    update_progress([&](Progress& p) {
      p.retrying = Status();
      p.caught_up = std::all_of(reader_->at_end.begin(), reader_->at_end.end(), [](bool end) { return end; });
    });
    changed_.notify_all();
    return {};
  }
  // Fetched again after the partition was restarted (checked from its start): taken already.
  if (next_offset_[partition] >= 0 && message.offset < next_offset_[partition]) return {};
  reader_->at_end[partition] = false;
  reader_->resets[partition] = 0;
  // An annal export's record carries its source and sequence; anything else is foreign.
  rd_kafka_headers_t* headers = nullptr;
  std::string_view source;
  std::uint64_t sequence = 0;
  if (rd_kafka_message_headers(&message, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    source = text_header(headers, kSourceHeader).value_or(std::string_view());
    sequence = number_header(headers, kSequenceHeader).value_or(0);
  }
  std::lock_guard lock(mutex_);
  update_progress([](Progress& p) {
    p.caught_up = false;
    p.retrying = Status();
  });
  next_offset_[partition] = message.offset + 1;
  if (source.empty() || source.size() > kSourceNameMax || sequence == 0) {
    update_progress([](Progress& p) { ++p.foreign; });
    return {};
  }
  // Written under another partition count: its stream's earlier events may sit in another
  // partition, and the order and duplicate checks would not hold.
  if (number_header(headers, kPartitionsHeader) != std::optional<std::uint64_t>(next_offset_.size())) {
    return Status(ErrorCode::invalid_argument, where() + ": a record of " + std::string(source) + " written when the topic had " +
                                                   std::string(text_header(headers, kPartitionsHeader).value_or("?")) +
                                                   " partitions, not " + std::to_string(next_offset_.size()));
  }
  auto last = last_.find(source);
  if (last == last_.end()) {
    if (last_.size() >= kSourcesMax) {
      return Status(ErrorCode::invalid_argument, where() + ": more than " + std::to_string(kSourcesMax) + " sources in the topic");
    }
    last = last_.emplace(std::string(source), std::vector<std::uint64_t>(next_offset_.size(), 0)).first;
  }
  // A source's records rise in sequence within a partition: one not above the last is a record a
  // killed exporter left in flight and its next run produced again.
  if (sequence <= last->second[partition]) {
    update_progress([](Progress& p) { ++p.duplicates; });
    return {};
  }
  // Every record of annal's export has them: one without is damaged or forged, and applied with
  // made-up values it would mislead the projection.
  const auto type = text_header(headers, kTypeHeader);
  const auto version = number_header(headers, kVersionHeader);
  const auto timestamp = number_header(headers, kTimestampHeader);
  const auto id = text_header(headers, kIdHeader);
  const auto parsed_id = id ? engine::parse_id(*id) : std::optional(engine::Id128{});
  if (!type || type->empty() || !version || !timestamp || !parsed_id) {
    return Status(ErrorCode::corruption, where() + ": a record of " + std::string(source) +
                                             " without a usable annal.type, annal.version, annal.timestamp_ns or annal.id");
  }
  engine::EventView event;
  event.header.sequence = sequence;
  event.header.version = *version;
  event.header.timestamp_ns = *timestamp;
  event.header.type = *type;  // the record's bytes, alive while it is applied
  event.header.stream_name = std::string_view(static_cast<const char*>(message.key), message.key_len);
  event.header.event_id = *parsed_id;
  event.payload = std::span(static_cast<const std::byte*>(message.payload), message.len);
  const auto applying = [&] { return where() + ": applying event " + std::to_string(sequence) + " of " + std::string(source); };
  if (Status applied = call_user_code([&] { projection_->apply(event); }, applying); !applied.ok()) {
    return applied;
  }
  last->second[partition] = sequence;
  batch_open_ = true;
  ++total_;
  update_progress([](Progress& p) { ++p.applied; });
  ++in_batch;
  batch_last = sequence;
  changed_.notify_all();
  return {};
}

void KafkaProjectionRunner::fail(Status why) {
  std::lock_guard lock(mutex_);
  update_progress([&](Progress& p) {
    if (p.error.ok()) p.error = std::move(why);
  });
  changed_.notify_all();
}

void KafkaProjectionRunner::write_snapshot() {
  const std::uint32_t schema = projection_->schema();
  if (!reader_->snapshots || schema == 0) return;
  std::vector<std::byte> bytes;
  std::uint64_t total = 0;
  Status written;
  {
    std::lock_guard lock(mutex_);  // no query while snapshot() runs
    ByteWriter out;
    out.number(kSnapshotFormat);
    out.text(options_.topic);
    out.text(reader_->cluster);
    out.number(static_cast<std::uint32_t>(next_offset_.size()));
    for (const std::int64_t offset : next_offset_) out.number(offset);
    out.number(static_cast<std::uint32_t>(last_.size()));
    for (const auto& [source, sequences] : last_) {
      out.text(source);
      for (const std::uint64_t sequence : sequences) out.number(sequence);
    }
    written = call_user_code([&] { out.append(projection_->snapshot()); },
                             [&] { return "snapshot() of Kafka read model " + options_.name; });
    bytes = out.take();
    total = total_;
  }
  // Written outside the lock: queries go on while the file is synced.
  if (written.ok()) written = reader_->snapshots->write(options_.name, schema, total, bytes);
  snapshotted_at_ = Clock::now();
  std::lock_guard lock(mutex_);
  // Not fatal: the snapshots before it are untouched, and a restart replays from the newest.
  if (!written.ok()) {
    update_progress([&](Progress& p) {
      ++p.snapshots_failed;
      p.snapshot_error = written;
    });
    return;
  }
  snapshotted_ = total;
  update_progress([](Progress& p) { ++p.snapshots_written; });
}

}  // namespace annal::kafka
