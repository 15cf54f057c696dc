// A Kafka topic imported into annal streams: each message one event, appended once.
//
//   auto import = annal::kafka::KafkaImport::start(*engine, {.brokers = "kafka-1:9092",
//       .topic = "event-stream", .group = "annal-import",
//       .stream_field = "orderId", .stream_prefix = "order-"});   // the seeds' messages
//   ...
//   annal::Status why = import.value()->stop();
//
// A message becomes an event:
//   stream   its key; or, with stream_field set, stream_prefix + that field of its JSON value
//            (the seeds' {"eventType": "OrderCreated", "orderId": "123456", ...} goes to
//            order-123456)
//   type     its header annal.type, else the type_field of its JSON value ("eventType")
//   payload  its value, as it is
//   id       its header annal.id (a record annal exported), else one made of (topic, partition,
//            offset), so that the same message read twice is the same event
//
// Exactly once: the consumer group's offsets are committed only once the events before them are
// durable, so a crash re-reads at most what was not yet committed; those messages carry the ids
// they had, and the engine answers a repeated id with the first receipt instead of appending
// again (within its idempotency window, 65,536 events by default: the import commits every
// batch_max messages, far below it; start() refuses a batch_max over the engine's window).
//
// A message that cannot be an event (its value not JSON where a field is needed, no type, no
// stream, too large) stops the import, naming its topic, partition and offset, with nothing of it
// appended; or, with on_bad = skip, is counted and passed over.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "annal/base/status.h"
#include "annal/engine/engine.h"

struct rd_kafka_message_s;

namespace annal::kafka {

struct KafkaImportOptions {
  std::string brokers;
  std::string topic;
  std::string group;  // the consumer group, whose committed offsets are where the import resumes
  std::map<std::string, std::string> settings;  // further librdkafka settings (security.protocol ...)
  std::string stream_field;   // "": the message's key names the stream
  std::string stream_prefix;  // before stream_field's value
  std::string type_field = "eventType";
  // A message that cannot be an event (not JSON where a field is needed, no type, no stream).
  // A batch librdkafka cannot decode is damage in the broker's log, and stops the import either way.
  enum class OnBad { stop, skip };
  OnBad on_bad = OnBad::stop;
  // With on_bad = skip: called on the import's thread with each message skipped (where, and why),
  // so that none goes unreported. May be empty.
  std::function<void(const Status& skipped)> on_skipped = {};
  std::size_t batch_max = 1000;  // messages between two offset commits (each waits for durability)
  // How long start() waits for the topic's metadata: brokers unreachable, or no such topic, fail
  // start() after it with the reason.
  std::chrono::milliseconds start_timeout{60'000};
  // Asked on start()'s thread while it waits for Kafka: true ends the start at once (timed_out,
  // "stopped"), as a tool's SIGINT does. May be empty.
  std::function<bool()> stopping = {};
};

class KafkaImport {
 public:
  // Joins the group and starts consuming, on a thread of its own. `engine` must outlive it.
  static Result<std::unique_ptr<KafkaImport>> start(engine::Engine& engine, KafkaImportOptions options);
  // What start() refuses before it asks Kafka anything (no brokers, topic or group), for a caller
  // that would check before it opens a store.
  static Status check(const KafkaImportOptions& options);
  ~KafkaImport();
  KafkaImport(const KafkaImport&) = delete;
  KafkaImport& operator=(const KafkaImport&) = delete;

  // Stops consuming, commits what is durable, leaves the group. Why it had stopped before, if it
  // had (a bad message, the engine failing); ok otherwise. Threads may call it at once (a signal
  // handler's and the owner's): each returns once the import has stopped. From on_skipped it asks
  // the import to stop after that message and returns at once.
  Status stop();

  struct Progress {
    std::uint64_t imported = 0;    // messages appended as events
    std::uint64_t duplicates = 0;  // messages read again whose events the store had
    std::uint64_t skipped = 0;     // bad messages passed over (on_bad = skip)
    Status last_skipped;           // the last of them: where, and why
    Status retrying;               // what Kafka reports while the import retries (brokers down); ok when nothing
    Status error;                  // why the import stopped early; ok while it runs
    // Messages in the partitions assigned to it not read yet, from the high watermarks of the last
    // fetches (0 until a partition was fetched).
    std::uint64_t lag = 0;
    // Every partition assigned to it read to its end, and the offsets of what was read committed
    // (so durable): a one-off import may stop here.
    bool caught_up = false;
  };
  [[nodiscard]] Progress progress() const;

 private:
  struct Consumer;
  KafkaImport(engine::Engine& engine, KafkaImportOptions options);
  void run();
  // What to do with a message (or a partition's end) given where its partition stands
  // (Consumer::read): take it; pass it over, read already (below: librdkafka went back to the
  // partition's start); or fetch it again, past a gap while the partition's start is not known
  // just now. An error for one past a gap with the partition's start past it too: retention
  // removed the messages between, unread, while the import was stopped or behind. A gap retention
  // did not make (a transaction's marker, compaction) is read past.
  enum class Delivery { take, read_already, ask_again };
  Result<Delivery> in_sequence(const rd_kafka_message_s& message);
  // Has librdkafka fetch `partition` from `offset` (asynchronously).
  void seek(std::int32_t partition, std::int64_t offset);
  // Waits `wait`, or less if the import is stopped: whether it was.
  bool wait_unless_stopped(std::chrono::milliseconds wait);
  // Progress::lag now; on the import's thread.
  void update_lag();

  engine::Engine& engine_;
  const KafkaImportOptions options_;
  std::unique_ptr<Consumer> consumer_;
  std::atomic<bool> stopping_{false};  // set under mutex_, so that a wait on stop_wake_ hears it
  mutable std::mutex mutex_;
  std::condition_variable stop_wake_;  // a commit's retry waits on it
  Progress progress_;  // under mutex_
  std::mutex stop_mutex_;  // stop()'s callers one at a time
  std::thread thread_;
  // The import's thread, where on_skipped runs: its stop() cannot join itself. Compared only with
  // the caller's own id, which no other thread can store.
  std::atomic<std::thread::id> importer_;
};

}  // namespace annal::kafka
