// The journal exported to a Kafka topic, in order and exactly once: a projection that produces
// every durable event as one record.
//
//   auto exporter = std::make_shared<annal::kafka::KafkaExport>(annal::kafka::KafkaExportOptions{
//       .brokers = "kafka-1:9092,kafka-2:9092", .topic = "orders", .source = "orders-eu-1"});
//   engine->add_projection("export_kafka", exporter, {});
//
// A record: key = the stream's name (so a stream's events share a partition, in order), value = the
// payload, headers (decimal text) annal.sequence, annal.version, annal.type, annal.timestamp_ns,
// annal.id (when the event has one), annal.source, annal.delivered, annal.partitions. The
// partition is murmur2 of the key, as the Java client picks it.
//
// The guarantee: every durable event reaches the topic once, none missing, none twice, each
// stream's in order, through any number of crashes and restarts of this process or of brokers.
//
// How (docs/kafka.md argues it). The producer is idempotent with the gapless guarantee and no
// message timeout: within one run, a partition holds this source's records in sequence order with
// no gap. Each record carries annal.delivered, the sequence up to which Kafka had acknowledged
// every event when it was produced. At start (resume_after) the exporter reads each partition's
// tail back to this source's last record, and on to a record at or below the highest
// annal.delivered: the engine replays from the highest such record (which the log must hold:
// resume_requires), and an event is produced only if its partition's last record of this source is
// older. So the topic itself is the checkpoint; nothing is kept beside the store. Every replayed
// event the topic already holds must be its record there (a fingerprint of key, value and
// headers): a store restored from a backup, whose new events reuse sequences the topic holds for
// others, stops the export with the sequence where the two disagree.
//
// Kafka down: records wait in the producer (bounded by queue.buffering.max.messages, after which
// the exporter falls behind, leaves the ring and catches up from the journal), health() says why,
// appends go on. An error librdkafka calls fatal (the topic deleted, authorisation withdrawn)
// stops this projection with its message; the next start resumes exactly once.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "annal/base/status.h"
#include "annal/engine/erased_streams.h"
#include "annal/engine/projection.h"

namespace annal::kafka {

class Producer;
struct RecordText;
struct Tail;

struct KafkaExportOptions {
  std::string brokers;  // bootstrap.servers: host:port,...
  std::string topic;    // must exist: its partition count is read at start
  // This exporter's name in the records (annal.source), the same across restarts, and no other
  // store's: it tells this store's records from others' in a shared topic.
  std::string source;
  // Further librdkafka settings (security.protocol, sasl.*, linger.ms, compression.type ...).
  // Those the guarantee rests on (enable.idempotence, enable.gapless.guarantee,
  // message.timeout.ms, partitioner, ...) are refused, under their aliases too.
  std::map<std::string, std::string> settings = {};
  // How long start-up (metadata, reading the topic's tail) may take, at add_projection.
  std::chrono::milliseconds start_timeout{60'000};
};

class KafkaExport final : public engine::Projection {
 public:
  explicit KafkaExport(KafkaExportOptions options);
  ~KafkaExport() override;

  // The sequence up to which Kafka has acknowledged every event (0: none yet). Any thread.
  [[nodiscard]] std::uint64_t delivered() const;
  // Waits until delivered() >= sequence; false at the deadline or once stopped. Any thread.
  [[nodiscard]] bool wait_delivered(std::uint64_t sequence, std::chrono::steady_clock::time_point deadline) const;
  // What the producer is retrying now (brokers unreachable), or the fatal error that stops the
  // export at its next event; ok when nothing. Any thread.
  [[nodiscard]] Status health() const override;
  // The fatal error (a record refused for good, the topic gone), ok while none. Any thread.
  [[nodiscard]] Status failure() const;

  void apply(const engine::EventView& event) override;
  void end_of_batch(std::uint64_t applied) override;
  [[nodiscard]] Result<std::optional<std::uint64_t>> resume_after() override;
  [[nodiscard]] std::uint64_t resume_requires() const override;
  void stop_requested() override;
  void stream_erased(std::uint64_t stream_id, std::uint64_t erased_at) override;

 private:
  friend class Producer;
  // From librdkafka's background thread: the records produced with `tickets` delivered, the one
  // with `ticket` refused for good, or the run failed.
  void on_delivered(std::span<const std::uint64_t> tickets);
  void on_refused(std::uint64_t ticket, const char* why);
  void on_error(Status error, bool fatal);
  // Under mutex_: the records of `tickets` done (delivered, or never to be produced).
  void acknowledge_locked(std::span<const std::uint64_t> tickets);
  // The store's event must be the topic's record of its sequence, where the topic has one; and
  // the topic may have none of this source where it is taken for exported. Else fatal (diverged).
  void check_against_topic(const engine::EventView& event, const RecordText& text, std::int32_t partition, bool exported);
  // Every record above the resume point up to `through` was matched by an event.
  void check_passed(std::uint64_t through);
  [[noreturn]] void diverged(std::uint64_t sequence, const std::string& why);

  const KafkaExportOptions options_;
  std::unique_ptr<Producer> producer_;   // the projection thread's (created in resume_after)
  // Where the topic stood at start (client.h); its records above the resume point are taken off
  // as the store's events match them.
  std::unique_ptr<Tail> tail_;
  bool halted_ = false;                  // an event was not produced: produce nothing more this run

  // Held while apply() queues a record, and by whatever changes erased_ or ends the sending
  // (stream_erased, stop_requested, end_of_batch): taken before mutex_, never while holding it.
  // Not mutex_, which every delivery report takes.
  std::mutex produce_mutex_;
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;  // a record acknowledged, stopping_, or fatal_
  // The events after delivered_, in order: produced and not yet acknowledged (false), or done.
  std::deque<std::pair<std::uint64_t, bool>> pending_;  // under mutex_
  std::uint64_t front_ticket_ = 0;       // under mutex_: what pending_.front() was produced with
  std::uint64_t delivered_ = 0;          // under mutex_
  engine::ErasedStreams erased_;         // written under produce_mutex_ and mutex_, read under either
  // Whether erased_ holds any stream (written with it): apply() looks at it under a lock only
  // then, not once per event.
  std::atomic<bool> erasures_pending_{false};
  // The highest sequence a batch ended at with every event up to it queued or done: once none is
  // pending, the engine's own records up to it (after the last event) are delivered too.
  std::uint64_t ended_ = 0;              // under mutex_
  std::uint64_t acknowledged_ = 0;       // under mutex_: records acknowledged, for apply's wait for room
  bool stopping_ = false;                // under mutex_
  Status retrying_;                      // under mutex_
  Status fatal_;                         // under mutex_
};

}  // namespace annal::kafka
