// Read models on other machines: any annal::engine::Projection driven from a topic that annal
// instances export to (KafkaExport), with snapshots, and queries that read their writes.
//
//   auto revenue = std::make_shared<Revenue>();          // the same class an engine would run
//   auto runner = annal::kafka::KafkaProjectionRunner::start(revenue, {
//       .brokers = "kafka-1:9092", .topic = "orders", .name = "revenue",
//       .directory = "/var/lib/revenue"});
//   // A client appended to order-7 on instance orders-eu-1 and got receipt r:
//   auto total = runner.value()->query<Revenue>({"orders-eu-1", "order-7", r.last_sequence},
//       [](const Revenue& r) { return r.total(); }, 2s);
//
// What the projection sees: each exported event once (a record a crashed exporter left twice in
// the topic is passed over: a source's records in a partition rise in sequence), each stream's in
// order, streams of one partition in the topic's order, partitions interleaved as they arrive. The
// header is the exporter's: sequence and version are the source instance's, so those of two
// instances may be equal (header.stream_name and the source tell them apart; the source is not in
// EventView: a projection that needs it keys its state by stream name). stream_id, type_id and
// the correlation and causation ids are not exported (0): every header makes each record, and so
// the export, slower (a tenth for annal.stream_id, measured), and ids are the instance's own.
// end_of_batch(applied) gets the last event's own sequence. Records without annal.source and annal.sequence (another application's, in a shared
// topic) are counted and passed over.
//
// Snapshots (projection schema() != 0, and a directory): the state is written with each
// partition's next offset and every source's last sequence per partition, every
// snapshot_every_events events and/or snapshot_every, and at stop; a start restores the newest
// intact one and reads on from its offsets, so the state holds each event once across restarts.
// Without them every start reads the topic from its beginning. Written on the runner's thread; the
// directory is locked, one read model's alone.
//
// Read your writes: query() waits until the runner has applied the event an instance exported at
// `sequence` to `stream`'s partition (and so every earlier event of that stream).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "annal/base/status.h"
#include "annal/engine/projection.h"
#include "annal/journal/io_backend.h"

struct rd_kafka_message_s;

namespace annal::kafka {

struct KafkaProjectionOptions {
  std::string brokers;
  std::string topic;
  std::string name;       // the read model's: its snapshot files are named for it
  std::string directory = {};  // where its snapshots are kept; "" for none
  std::map<std::string, std::string> settings = {};  // further librdkafka settings (security.protocol ...)
  std::uint64_t snapshot_every_events = 100'000;  // 0: not by count
  std::chrono::milliseconds snapshot_every{60'000};  // 0: not by time
  std::size_t snapshots_kept = 3;
  std::chrono::milliseconds start_timeout{60'000};  // the topic's metadata, at start()
  // Asked on start()'s thread while it waits for Kafka: true ends the start at once (timed_out,
  // "stopped"), as a program's SIGTERM would. May be empty.
  std::function<bool()> stopping = {};
  // The snapshots' file I/O (tests inject faults through it); null: plain POSIX.
  std::shared_ptr<journal::IoBackend> io = nullptr;
};

// An event an instance wrote: its source name (KafkaExportOptions::source), the stream as its
// records are keyed (its name; for a stream appended to by id alone, the id in decimal), and the
// append's sequence (Receipt::last_sequence).
struct Written {
  std::string source;
  std::string stream;
  std::uint64_t sequence = 0;
};

class KafkaProjectionRunner {
 public:
  using Clock = std::chrono::steady_clock;

  // Restores the newest snapshot (if any) and starts reading on a thread of its own. A projection
  // that keeps its own state (resume_after() answers a sequence) cannot run here: one sequence
  // cannot say where several instances' exports stand.
  static Result<std::unique_ptr<KafkaProjectionRunner>> start(std::shared_ptr<engine::Projection> projection,
                                                             KafkaProjectionOptions options);
  ~KafkaProjectionRunner();
  KafkaProjectionRunner(const KafkaProjectionRunner&) = delete;
  KafkaProjectionRunner& operator=(const KafkaProjectionRunner&) = delete;

  // Stops reading and writes a last snapshot if the state changed. Why it had stopped before, if
  // it had (the projection threw, a snapshot failed, Kafka refused); ok otherwise. Threads may call
  // it at once: each returns once the runner has stopped. From the projection's own apply(),
  // end_of_batch() or snapshot() it asks the runner to stop after that call and returns at once.
  Status stop();

  // Runs fn on the projection once `written` is applied (an empty source: at once), with no event
  // applied meanwhile (fn must not call back into the runner). timed_out after `timeout`; the
  // runner's error if it failed; failed if it was stopped first, or fn threw; invalid_argument
  // from the projection's own code (it would wait for itself).
  Status query(const Written& written, const std::function<void(const engine::Projection&)>& fn,
               Clock::duration timeout);
  template <class P, class F>
  auto query(const Written& written, F&& fn, Clock::duration timeout) -> Result<std::invoke_result_t<F&, const P&>>;

  struct Progress {
    std::uint64_t applied = 0;     // events applied since start
    std::uint64_t duplicates = 0;  // records of an event already applied, passed over
    std::uint64_t foreign = 0;     // records that are no annal export, passed over
    std::uint64_t restored = 0;    // events the restored snapshot held (0: none restored)
    std::uint64_t snapshots_written = 0;
    std::uint64_t snapshots_failed = 0;  // not fatal: the older ones stay, a restart replays more
    Status snapshot_error;         // the last failure
    Status restore_skipped;        // why a snapshot was passed over at start (damaged, refused)
    std::uint64_t lag = 0;         // records in the topic not read yet, as of the last fetch
    bool caught_up = false;        // every partition read to its end
    Status retrying;               // what the consumer retries now (brokers unreachable); ok when nothing
    Status error;                  // why it stopped; ok while it runs
  };
  [[nodiscard]] Progress progress() const;

 private:
  struct Reader;
  KafkaProjectionRunner(std::shared_ptr<engine::Projection> projection, KafkaProjectionOptions options);
  Status open_snapshots();  // at start: the directory locked, the newest snapshot restored
  // `elsewhere`: the snapshot was read from another topic or cluster, which a rebuild from this
  // topic must not silently replace. Any other refusal (damaged, the projection's) is rebuilt from.
  Status restore(std::uint64_t total, std::span<const std::byte> state, bool& elsewhere);
  // Assigns every partition, from next_offset_: once, at start.
  Status assign();
  // Starts fetching `partition` again (from its start where it is checked, else next_offset_).
  Status restart(std::int32_t partition);
  void run();
  void update_lag();
  // Now and then: the topic still exists. An error once it has been missing a few times in a row.
  Status check_topic();
  // One message from the consumer: an event applied, or passed over, or an error that stops.
  Status take(const rd_kafka_message_s& message, int& in_batch, std::uint64_t& batch_last);
  void fail(Status why);
  // Under mutex_: the event `written` names is applied.
  [[nodiscard]] bool applied_locked(const Written& written) const;
  // Whether a waiting query's event is applied (it can run once the batch ends).
  [[nodiscard]] bool servable() const;
  [[nodiscard]] bool servable_locked() const;  // under mutex_
  void write_snapshot();  // on the runner's thread, or after it ended

  const std::shared_ptr<engine::Projection> projection_;
  const KafkaProjectionOptions options_;
  std::unique_ptr<Reader> reader_;
  std::atomic<bool> stopping_{false};

  mutable std::mutex mutex_;             // held while an event is applied or a query runs
  mutable std::condition_variable changed_;
  std::vector<std::int64_t> next_offset_;  // per partition, under mutex_
  // Per source, per partition: the last sequence applied (0: none). Under mutex_.
  std::map<std::string, std::vector<std::uint64_t>, std::less<>> last_;
  // Events applied that end_of_batch() has not followed yet: a query waits for the batch's end
  // (the projection may hold them apart until then). Under mutex_.
  bool batch_open_ = false;
  // What the waiting queries wait for (each query's own, while it waits). The runner ends its
  // batch for those it has applied and lets them run before the next; the others do not hold
  // it back. Under mutex_; the count is read without it, to skip the lock when none waits.
  std::vector<const Written*> waiting_;
  std::atomic<int> queries_waiting_{0};
  // Events the state holds, restored ones too (the snapshots' sequence). Written on the runner's
  // thread only, under mutex_.
  std::uint64_t total_ = 0;
  std::uint64_t snapshotted_ = 0;        // total_ at the last snapshot: the runner's thread's
  Clock::time_point snapshotted_at_;     // the runner's thread's
  // Once running, written holding mutex_ and then progress_mutex_, read holding either: progress()
  // takes only the second, which nothing holds while user code runs, so it answers while an
  // apply() or a query waits on something outside (a database down).
  Progress progress_;
  mutable std::mutex progress_mutex_;
  template <class F>
  void update_progress(F&& change) {  // under mutex_
    std::lock_guard lock(progress_mutex_);
    change(progress_);
  }
  std::mutex stop_mutex_;  // stop()'s callers one at a time
  std::thread thread_;
  // The threads the projection's code runs on: the runner's own, and a stop() writing the last
  // snapshot. Each compared only with the caller's own id, which no other thread can store.
  std::atomic<std::thread::id> applier_;
  std::atomic<std::thread::id> stopper_;
  [[nodiscard]] bool called_from_inside() const;
};

template <class P, class F>
auto KafkaProjectionRunner::query(const Written& written, F&& fn, Clock::duration timeout)
    -> Result<std::invoke_result_t<F&, const P&>> {
  std::optional<std::invoke_result_t<F&, const P&>> out;
  const Status status = query(written, [&](const engine::Projection& projection) {
    const auto* typed = dynamic_cast<const P*>(&projection);
    ANNAL_ASSERT(typed != nullptr);  // the runner's projection is not a P
    out.emplace(fn(*typed));
  }, timeout);
  if (!status.ok()) return status;
  return std::move(*out);
}

}  // namespace annal::kafka
