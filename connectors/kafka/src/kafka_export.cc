#include "annal/kafka/kafka_export.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "client.h"

namespace annal::kafka {

// A record's ticket travels as librdkafka's per-message pointer.
static_assert(sizeof(void*) >= sizeof(std::uint64_t), "tickets would be cut short");

// How long closing waits for the requests already sent to be answered.
constexpr int kInFlightWaitMs = 10'000;

// An event's record fields as text, made once for the comparison with the topic and the record.
struct RecordText {
  explicit RecordText(const engine::EventHeader& h)
      : key(h.stream_name.empty() ? std::to_string(h.stream_id) : std::string(h.stream_name)),
        version(std::to_string(h.version)),
        timestamp(std::to_string(h.timestamp_ns)),
        id(h.event_id.empty() ? std::string() : engine::format_id(h.event_id)) {}

  std::uint64_t fingerprint(const engine::EventView& event) const {
    return record_fingerprint(key, {reinterpret_cast<const char*>(event.payload.data()), event.payload.size()}, version,
                              event.header.type, timestamp, id);
  }

  std::string key;
  std::string version;
  std::string timestamp;
  std::string id;
};

// The run's producer: librdkafka's handle with its delivery reports and errors served on
// librdkafka's background thread (so they arrive whether or not events do), and the topic.
class Producer {
 public:
  static Result<std::unique_ptr<Producer>> open(const KafkaExportOptions& options, KafkaExport* exporter,
                                                 const std::function<bool()>& stopping) {
    // Idempotent, and gapless: a record Kafka refuses for good stops the run rather than leave a
    // hole that later records would hide. No message timeout: while Kafka is down records wait.
    // One produce request in flight per broker: with more, librdkafka 2.0's idempotent producer
    // can write a batch twice when a partition's leader moves (librdkafka issue 4953: a request
    // failed NOT_LEADER_FOR_PARTITION and the next one, failed for the skipped sequence, recovered
    // out of order; BrokerFailuresMidExportAreRetriedWithoutGapsOrDuplicates saw 3 events twice in
    // 2 runs of 11 with 5 in flight, none in 42 with 1). Its cost: docs/kafka.md.
    auto conf = configuration(options.brokers, options.settings, {{"enable.idempotence", "true"},
                                        {"enable.gapless.guarantee", "true"},
                                        {"message.timeout.ms", "0"},
                                        {"max.in.flight.requests.per.connection", "1"},
                                        // A misspelt topic is an error, not a new topic of default size.
                                        {"allow.auto.create.topics", "false"},
                                        {"client.id", "annal-export-" + options.source}});
    if (!conf.ok()) return conf.status();
    rd_kafka_conf_set_opaque(conf.value().get(), exporter);
    rd_kafka_conf_set_events(conf.value().get(), RD_KAFKA_EVENT_DR | RD_KAFKA_EVENT_ERROR);
    rd_kafka_conf_set_background_event_cb(conf.value().get(), &Producer::on_event);
    auto kafka = make_client(RD_KAFKA_PRODUCER, std::move(conf).value());
    if (!kafka.ok()) return kafka.status();
    std::unique_ptr<Producer> producer(new Producer(std::move(kafka).value()));
    // Delivery reports and errors go to the main queue: forwarded, they reach on_event.
    rd_kafka_t* handle = producer->kafka_.get();
    const Owned<rd_kafka_queue_t> main(rd_kafka_queue_get_main(handle));
    rd_kafka_queue_forward(main.get(), producer->background_.get());
    auto partitions = partition_count(handle, options.topic, options.start_timeout, stopping);
    if (!partitions.ok()) return partitions.status();
    producer->partitions_ = partitions.value();
    producer->partitions_text_ = std::to_string(partitions.value());
    producer->topic_.reset(rd_kafka_topic_new(handle, options.topic.c_str(), nullptr));
    return producer;
  }

  ~Producer() {
    // What was never sent is produced by the next run (resume_after reads where the topic stands).
    // What is in flight is waited for, a while: Kafka may append it yet, and a next run that read
    // the topic back before it became visible would produce it twice (docs/kafka.md).
    (void)rd_kafka_purge(kafka_.get(), RD_KAFKA_PURGE_F_QUEUE);
    (void)rd_kafka_flush(kafka_.get(), kInFlightWaitMs);
    topic_.reset();
    background_.reset();
    kafka_.reset();
  }

  [[nodiscard]] std::int32_t partitions() const { return partitions_; }

  // The engine closes: nothing more is sent, not even what is queued or comes back to be sent
  // again (every partition paused), and produce() queues nothing more. The object may outlive the
  // close (an application holding its KafkaExport), and a later run, of this store opened again
  // elsewhere, reads the topic back meanwhile: what this one sent after that would be there twice.
  // What is in flight is waited for when the producer goes (the destructor).
  void stop_sending() {
    std::lock_guard lock(sending_);
    if (stopped_) return;
    stopped_ = true;
    const Owned<rd_kafka_topic_partition_list_t> all(rd_kafka_topic_partition_list_new(partitions_));
    for (std::int32_t partition = 0; partition < partitions_; ++partition) {
      rd_kafka_topic_partition_list_add(all.get(), rd_kafka_topic_name(topic_.get()), partition);
    }
    (void)rd_kafka_pause_partitions(kafka_.get(), all.get());
  }

  // A record's headers but annal.delivered, which produce() adds: built before the export's lock
  // is taken, since the delivery reports wait for it (eight allocations a record).
  [[nodiscard]] Owned<rd_kafka_headers_t> make_headers(const engine::EventView& event, const RecordText& text,
                                                       const std::string& source) const {
    Owned<rd_kafka_headers_t> headers(rd_kafka_headers_new(8));
    const auto add = [&](const char* name, std::string_view value) {
      rd_kafka_header_add(headers.get(), name, -1, value.data(), static_cast<ssize_t>(value.size()));
    };
    add(kSequenceHeader, std::to_string(event.header.sequence));
    add(kVersionHeader, text.version);
    add(kTypeHeader, event.header.type);
    add(kTimestampHeader, text.timestamp);
    if (!text.id.empty()) add(kIdHeader, text.id);
    add(kSourceHeader, source);
    add(kPartitionsHeader, partitions_text_);
    return headers;
  }

  // Queues one record with `headers` (taken on success) and annal.delivered = `delivered`;
  // RD_KAFKA_RESP_ERR__QUEUE_FULL when the producer holds its maximum, RD_KAFKA_RESP_ERR__STATE
  // once stop_sending() was called. `ticket` comes back with its delivery report.
  rd_kafka_resp_err_t produce(std::int32_t partition, const engine::EventView& event, const RecordText& text,
                              Owned<rd_kafka_headers_t>& headers, std::uint64_t delivered, std::uint64_t ticket) {
    // Held while the record is queued: a partition stop_sending() did not pause (none of its
    // records produced yet) gets none after it.
    std::lock_guard lock(sending_);
    if (stopped_) return RD_KAFKA_RESP_ERR__STATE;
    // Again at each attempt (the producer full, room waited for): the newer, the shorter the next
    // start's read-back. An older one is still true of the topic.
    (void)rd_kafka_header_remove(headers.get(), kDeliveredHeader);
    const std::string acknowledged = std::to_string(delivered);
    rd_kafka_header_add(headers.get(), kDeliveredHeader, -1, acknowledged.data(), static_cast<ssize_t>(acknowledged.size()));
    // rd_kafka_produceva: the same as producev, without its macros' C casts.
    rd_kafka_vu_t fields[7] = {};
    fields[0].vtype = RD_KAFKA_VTYPE_RKT;
    fields[0].u.rkt = topic_.get();
    fields[1].vtype = RD_KAFKA_VTYPE_PARTITION;
    fields[1].u.i32 = partition;
    fields[2].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
    fields[2].u.i = RD_KAFKA_MSG_F_COPY;
    fields[3].vtype = RD_KAFKA_VTYPE_KEY;
    fields[3].u.mem = {const_cast<char*>(text.key.data()), text.key.size()};
    fields[4].vtype = RD_KAFKA_VTYPE_VALUE;
    fields[4].u.mem = {const_cast<std::byte*>(event.payload.data()), event.payload.size()};
    fields[5].vtype = RD_KAFKA_VTYPE_HEADERS;
    fields[5].u.headers = headers.get();
    fields[6].vtype = RD_KAFKA_VTYPE_OPAQUE;
    fields[6].u.ptr = reinterpret_cast<void*>(static_cast<std::uintptr_t>(ticket));
    rd_kafka_error_t* error = rd_kafka_produceva(kafka_.get(), fields, 7);
    const rd_kafka_resp_err_t queued = error != nullptr ? rd_kafka_error_code(error) : RD_KAFKA_RESP_ERR_NO_ERROR;
    if (error != nullptr) {
      rd_kafka_error_destroy(error);
    } else {
      (void)headers.release();  // the record's now
    }
    return queued;
  }

 private:
  explicit Producer(Owned<rd_kafka_t> kafka)
      : kafka_(std::move(kafka)), background_(rd_kafka_queue_get_background(kafka_.get())) {}

  static void on_event(rd_kafka_t*, rd_kafka_event_t* event, void* opaque) {
    auto* exporter = static_cast<KafkaExport*>(opaque);
    switch (rd_kafka_event_type(event)) {
      case RD_KAFKA_EVENT_DR: {
        // A report covers many records: taken under one lock, not one each, so that the
        // projection thread producing the next ones is not made to wait a lock per record.
        thread_local std::vector<std::uint64_t> delivered;
        delivered.clear();
        while (const rd_kafka_message_t* message = rd_kafka_event_message_next(event)) {
          const auto ticket = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(message->_private));
          if (message->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE) {
            // Never sent: a run ending purges its queue (~Producer), and the next produces those.
            continue;
          }
          if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            exporter->on_refused(ticket, rd_kafka_err2str(message->err));
          } else {
            delivered.push_back(ticket);
          }
        }
        exporter->on_delivered(delivered);
        break;
      }
      case RD_KAFKA_EVENT_ERROR:
        exporter->on_error(Status(ErrorCode::io_error, std::string("Kafka: ") + rd_kafka_event_error_string(event)),
                           rd_kafka_event_error_is_fatal(event) != 0);
        break;
      default:
        break;
    }
    rd_kafka_event_destroy(event);
  }

  Owned<rd_kafka_t> kafka_;
  Owned<rd_kafka_queue_t> background_;
  Owned<rd_kafka_topic_t> topic_;
  std::int32_t partitions_ = 0;
  std::string partitions_text_;  // annal.partitions
  std::mutex sending_;           // produce() and stop_sending()
  bool stopped_ = false;         // under sending_
};

KafkaExport::KafkaExport(KafkaExportOptions options) : options_(std::move(options)) {}

KafkaExport::~KafkaExport() { producer_.reset(); }  // first: its callbacks use the members below

std::uint64_t KafkaExport::delivered() const {
  std::lock_guard lock(mutex_);
  return delivered_;
}

bool KafkaExport::wait_delivered(std::uint64_t sequence, std::chrono::steady_clock::time_point deadline) const {
  std::unique_lock lock(mutex_);
  changed_.wait_until(lock, deadline, [&] { return delivered_ >= sequence || stopping_ || !fatal_.ok(); });
  return delivered_ >= sequence;
}

Status KafkaExport::health() const {
  std::lock_guard lock(mutex_);
  return fatal_.ok() ? retrying_ : fatal_;
}

Status KafkaExport::failure() const {
  std::lock_guard lock(mutex_);
  return fatal_;
}

Result<std::optional<std::uint64_t>> KafkaExport::resume_after() {
  if (options_.source.empty()) {
    return Status(ErrorCode::invalid_argument, "Kafka export: a source name is needed (KafkaExportOptions::source)");
  }
  if (options_.source.size() > kSourceNameMax) {
    return Status(ErrorCode::invalid_argument, "Kafka export: source name " + options_.source.substr(0, 32) +
                                                   "... is longer than " + std::to_string(kSourceNameMax) +
                                                   " bytes, which read models pass over as no export of annal's");
  }
  if (Status named = check_named("Kafka export", options_.brokers, options_.topic); !named.ok()) return named;
  // Added again after an engine closed: nothing of that run carries over. (A stop asked from
  // here on ends the start: stop_requested may come from another thread, the tool's on a signal.)
  // The last run's producer is taken under the lock stop_requested reads it under, and destroyed
  // outside it (its last delivery reports take the lock).
  std::unique_ptr<Producer> last_run;
  {
    std::lock_guard lock(mutex_);
    last_run = std::move(producer_);
  }
  last_run.reset();
  halted_ = false;
  {
    std::lock_guard lock(mutex_);
    stopping_ = false;
  }
  const auto deadline = std::chrono::steady_clock::now() + options_.start_timeout;
  const auto stopping = [this] {
    std::lock_guard lock(mutex_);
    return stopping_;
  };
  auto producer = Producer::open(options_, this, stopping);
  if (!producer.ok()) return producer.status();
  auto tail = read_tail(options_, producer.value()->partitions(), deadline, stopping);
  if (!tail.ok()) return tail.status();
  tail_ = std::make_unique<Tail>(std::move(tail).value());
  {
    std::lock_guard lock(mutex_);
    front_ticket_ += pending_.size();  // a ticket of the last run's never names one of this run's
    pending_.clear();
    // Claimed from the resume point only: what is above it counts once the store's events there
    // have been checked against the topic (or produced).
    delivered_ = tail_->checked != 0 ? tail_->checked - 1 : tail_->delivered;
    ended_ = 0;
    retrying_ = Status();
    fatal_ = Status();
    producer_ = std::move(producer).value();
    // Stopped since the read-back ended: nothing is sent.
    if (stopping_) producer_->stop_sending();
  }
  // From the last event read back at or below `delivered`, so that the store's event there is
  // checked against it: the log must hold it (resume_requires).
  return std::optional<std::uint64_t>(delivered());
}

std::uint64_t KafkaExport::resume_requires() const { return tail_ ? tail_->checked : 0; }

void KafkaExport::apply(const engine::EventView& event) {
  const engine::EventHeader& h = event.header;
  const RecordText text(h);
  // An event of a stream erased while it was read (with its payload, perhaps without its name,
  // forgotten meanwhile) is taken as erased: never produced, and not compared with the topic,
  // where it would look like another store's event.
  bool erased = h.erased;
  if (!erased && erasures_pending_.load(std::memory_order_acquire)) {
    std::lock_guard lock(mutex_);
    erased = erased_.contains(h.stream_id);
  }
  const std::int32_t partition = erased ? 0 : partition_of(text.key, producer_->partitions());
  // In Kafka already (its partition has a later record of this source): done, as delivered. An
  // erased event has nothing left to export (its payload, ids and name went with its key), and
  // nothing to check a record of it against (one exported before the erasure stays in the topic:
  // docs/kafka.md): taken for done, never produced.
  bool exported = erased || h.sequence <= tail_->last[static_cast<std::size_t>(partition)];
  if (erased) {
    check_passed(h.sequence - 1);
    tail_->above.erase(h.sequence);
  } else {
    check_against_topic(event, text, partition, exported);
  }
  Owned<rd_kafka_headers_t> headers = exported ? nullptr : producer_->make_headers(event, text, options_.source);
  std::uint64_t ticket = 0;
  std::uint64_t delivered = 0;     // for annal.delivered: an older one is still true of the topic
  std::uint64_t acknowledged = 0;  // before the produce: an acknowledgement after it ends the wait for room
  {
    std::lock_guard lock(mutex_);
    if (!fatal_.ok()) throw std::runtime_error(fatal_.message());
    // Read before its stream's erasure: never produced, as an event erased.
    exported = exported || erased_.contains(h.stream_id);
    // Not produced (closing): never delivered in this run. The ticket is taken before the record
    // is queued: its report cannot come before it, and one for an earlier ticket finds it pending.
    if (pending_.empty() && exported) {
      delivered_ = h.sequence;
      changed_.notify_all();
    } else {
      ticket = front_ticket_ + pending_.size();
      pending_.emplace_back(h.sequence, exported);
    }
    halted_ = halted_ || stopping_;
    if (exported || halted_) return;
    delivered = delivered_;
    acknowledged = acknowledged_;
  }
  for (;;) {
    // Queued under produce_mutex_, which stream_erased and stop_requested take too: an erasure
    // told before the record is queued is seen here, and one told after finds it in librdkafka,
    // which cannot take one record back (docs/kafka.md). Not under mutex_, which every delivery
    // report takes: they go on meanwhile. (produce() never waits, nor calls back into this object.)
    bool dropped = false;
    rd_kafka_resp_err_t queued = RD_KAFKA_RESP_ERR_NO_ERROR;
    {
      std::lock_guard producing(produce_mutex_);
      dropped = erased_.contains(h.stream_id);
      if (!dropped) queued = producer_->produce(partition, event, text, headers, delivered, ticket);
    }
    if (!dropped && queued == RD_KAFKA_RESP_ERR_NO_ERROR) return;
    std::unique_lock lock(mutex_);
    // Its stream erased before it was queued (while it waited for room, say): never produced,
    // done as if acknowledged.
    if (dropped) {
      acknowledge_locked({&ticket, 1});
      return;
    }
    if (queued == RD_KAFKA_RESP_ERR__STATE) {
      // Closing (stop_requested came after the check above): this event and every later one wait
      // for the next run.
      halted_ = true;
      return;
    }
    if (queued != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      throw std::runtime_error("Kafka export of event " + std::to_string(h.sequence) + ": " + rd_kafka_err2str(queued));
    }
    // Closing with the producer full: this event and every later one wait for the next run,
    // so that no later record of its partition gets ahead of it.
    if (stopping_ || !fatal_.ok()) {
      halted_ = true;
      return;
    }
    // Room comes with acknowledgements (on_delivered notifies); the bound only covers one lost.
    // Waited for without produce_mutex_: an erasure (under the engine's sequencing lock) must not
    // wait for Kafka to make room.
    changed_.wait_for(lock, std::chrono::milliseconds(100), [&] {
      return acknowledged_ != acknowledged || stopping_ || !fatal_.ok() || erased_.contains(h.stream_id);
    });
    delivered = delivered_;
    acknowledged = acknowledged_;
  }
}

void KafkaExport::check_against_topic(const engine::EventView& event, const RecordText& text, std::int32_t partition,
                                      bool exported) {
  const std::uint64_t sequence = event.header.sequence;
  check_passed(sequence - 1);
  const auto record = tail_->above.find(sequence);
  if (record == tail_->above.end()) {
    // Taken for exported, it must be there (below read_from, retention took what was).
    if (exported && sequence >= tail_->read_from[static_cast<std::size_t>(partition)]) {
      diverged(sequence, "the topic has no record of it in partition " + std::to_string(partition) +
                             ", where its later records of this source are");
    }
    return;
  }
  if (record->second.partition != partition || record->second.fingerprint != text.fingerprint(event)) {
    diverged(sequence, "the topic's record of that sequence is another event (stream " + text.key + " version " +
                           text.version + " here)");
  }
  tail_->above.erase(record);
}

void KafkaExport::check_passed(std::uint64_t through) {
  if (!tail_->above.empty() && tail_->above.begin()->first <= through) {
    diverged(tail_->above.begin()->first, "the topic has a record of that sequence, and this store no event there");
  }
}

void KafkaExport::diverged(std::uint64_t sequence, const std::string& why) {
  Status error(ErrorCode::invalid_argument,
               "Kafka topic " + options_.topic + " and this store disagree at sequence " + std::to_string(sequence) +
                   " of source " + options_.source + ": " + why +
                   " (the first sequence checked: the two may part earlier). This store is not the one that exported "
                   "there (restored from a backup, or another store "
                   "exports under the same source): nothing more is exported; export this store to a new topic, or "
                   "under a new source name, knowing that its whole history then follows the old one's there, "
                   "which read models take for a second source's events (docs/kafka.md)");
  {
    std::lock_guard lock(mutex_);
    if (fatal_.ok()) fatal_ = error;
    changed_.notify_all();
  }
  throw std::runtime_error(error.message());
}

void KafkaExport::end_of_batch(std::uint64_t applied) {
  check_passed(applied);
  std::lock_guard producing(produce_mutex_);  // erased_ is written under both
  std::lock_guard lock(mutex_);
  if (!fatal_.ok()) throw std::runtime_error(fatal_.message());
  erased_.passed(applied);
  erasures_pending_.store(!erased_.empty(), std::memory_order_release);
  // Every event up to `applied` is queued or in Kafka: the sequences after the last event (an
  // erasure, say) are delivered with them, now or once the last acknowledgement comes.
  if (halted_) return;
  ended_ = std::max(ended_, applied);
  if (pending_.empty() && applied > delivered_) {
    delivered_ = applied;
    changed_.notify_all();
  }
}

void KafkaExport::stop_requested() {
  // Both: no record is being queued until the sending has stopped.
  std::lock_guard producing(produce_mutex_);
  std::lock_guard lock(mutex_);
  stopping_ = true;
  // erased_ is kept: an event of an erased stream read before its erasure may still come to
  // apply() as the run closes, and is to be taken as erased then too (a comparison with the
  // topic, which never had it, would read as a divergence). Its ids are this store's streams',
  // never used again, so it also holds for a next run.
  // The engine's close ends the run's sending here, not when this object goes: an application
  // may hold it on while the store is opened again and another run reads the topic back.
  if (producer_) producer_->stop_sending();
  changed_.notify_all();
}

void KafkaExport::stream_erased(std::uint64_t stream_id, std::uint64_t erased_at) {
  std::lock_guard producing(produce_mutex_);  // no record of the stream is being queued meanwhile
  std::lock_guard lock(mutex_);
  erased_.add(stream_id, erased_at);
  erasures_pending_.store(true, std::memory_order_release);
  changed_.notify_all();  // apply() may be waiting for room with one of its events
}

void KafkaExport::on_delivered(std::span<const std::uint64_t> tickets) {
  if (tickets.empty()) return;
  std::lock_guard lock(mutex_);
  acknowledge_locked(tickets);
  retrying_ = Status();  // Kafka answers
}

void KafkaExport::acknowledge_locked(std::span<const std::uint64_t> tickets) {
  for (const std::uint64_t ticket : tickets) {
    // pending_[i] holds ticket front_ticket_ + i: found without a search.
    if (ticket < front_ticket_ || ticket - front_ticket_ >= pending_.size()) continue;  // a purged run's
    pending_[ticket - front_ticket_].second = true;
    ++acknowledged_;
  }
  while (!pending_.empty() && pending_.front().second) {
    delivered_ = pending_.front().first;
    pending_.pop_front();
    ++front_ticket_;
  }
  if (pending_.empty()) delivered_ = std::max(delivered_, ended_);
  changed_.notify_all();  // delivered_ may have moved; the producer has room again
}

void KafkaExport::on_refused(std::uint64_t ticket, const char* why) {
  std::uint64_t sequence = 0;
  {
    std::lock_guard lock(mutex_);
    if (ticket >= front_ticket_ && ticket - front_ticket_ < pending_.size()) sequence = pending_[ticket - front_ticket_].first;
  }
  // Gapless and without a timeout, a record refused is the end of the run.
  on_error(Status(ErrorCode::io_error, "Kafka refused event " + std::to_string(sequence) + ": " + why), true);
}

void KafkaExport::on_error(Status error, bool fatal) {
  std::lock_guard lock(mutex_);
  if (fatal) {
    if (fatal_.ok()) fatal_ = std::move(error);
    changed_.notify_all();
  } else {
    retrying_ = std::move(error);
  }
}

}  // namespace annal::kafka
