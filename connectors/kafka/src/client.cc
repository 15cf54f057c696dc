#include "client.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>

#include "annal/kafka/kafka_export.h"

namespace annal::kafka {
namespace {

// What the exactly-once argument (docs/kafka.md) rests on: the export sets these, never the user.
// Aliases count: librdkafka takes "metadata.broker.list" for bootstrap.servers, and a topic
// setting with the prefix "topic." as well as without.
constexpr std::array<std::string_view, 16> kGuarded = {
    "enable.idempotence", "enable.gapless.guarantee", "message.timeout.ms", "delivery.timeout.ms", "partitioner",
    "acks", "request.required.acks", "transactional.id", "bootstrap.servers", "metadata.broker.list", "retries",
    "message.send.max.retries", "isolation.level", "auto.offset.reset", "max.in.flight.requests.per.connection",
    "max.in.flight"};

bool guarded(std::string_view name) {
  if (name.starts_with("topic.")) name.remove_prefix(6);
  return std::find(kGuarded.begin(), kGuarded.end(), name) != kGuarded.end();
}

// Records read back per step, per partition, looking for the source's last one.
constexpr std::int64_t kTailChunk = 1000;
// How long one of the read-back's requests may wait for its answer (socket.timeout.ms, unless the
// user set it): a slow broker's request fails sooner than librdkafka's minute and is asked again.
constexpr const char* kSocketTimeout = "socket.timeout.ms";
constexpr int kTailSocketTimeoutMs = 5'000;
constexpr const char* kFetchWait = "fetch.wait.max.ms";
constexpr int kTailFetchWaitMs = 5;

int milliseconds_until(std::chrono::steady_clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  return static_cast<int>(std::clamp<std::chrono::milliseconds::rep>(left.count(), 0, 1'000'000));
}

// A read-back ended by a stop (the exporter's stop_requested).
Status stopped(const KafkaExportOptions& options) {
  return Status(ErrorCode::timed_out, "Kafka at " + options.brokers + ": reading back topic " + options.topic + ": stopped");
}

Status kafka_error(const KafkaExportOptions& options, const std::string& what, rd_kafka_resp_err_t error) {
  return Status(ErrorCode::io_error, "Kafka at " + options.brokers + ", topic " + options.topic + ": " + what + ": " +
                                         rd_kafka_err2str(error));
}

}  // namespace

Result<Owned<rd_kafka_conf_t>> configuration(const std::string& brokers, const std::map<std::string, std::string>& settings,
                                             const std::map<std::string, std::string>& fixed) {
  Owned<rd_kafka_conf_t> conf(rd_kafka_conf_new());
  char error[512];
  const auto set = [&](const std::string& name, const std::string& value) -> Status {
    if (rd_kafka_conf_set(conf.get(), name.c_str(), value.c_str(), error, sizeof(error)) == RD_KAFKA_CONF_OK) return {};
    // librdkafka's message names the setting, not its value (which may be a password).
    return Status(ErrorCode::invalid_argument, std::string("Kafka setting ") + name + ": " + error);
  };
  for (const auto& [name, value] : settings) {
    if (fixed.contains(name) || guarded(name)) {
      return Status(ErrorCode::invalid_argument, "Kafka setting " + name +
                                                     ": the export sets it itself (its exactly-once guarantee rests on it)");
    }
    if (Status done = set(name, value); !done.ok()) return done;
  }
  // Last, so that nothing the user set under another name stands.
  if (Status done = set("bootstrap.servers", brokers); !done.ok()) return done;
  for (const auto& [name, value] : fixed) {
    if (Status done = set(name, value); !done.ok()) return done;
  }
  return conf;
}

Status check_named(std::string_view user, const std::string& brokers, const std::string& topic) {
  if (brokers.empty()) {
    return Status(ErrorCode::invalid_argument, std::string(user) + ": no brokers given (Kafka's bootstrap servers, host:port,...)");
  }
  if (topic.empty()) return Status(ErrorCode::invalid_argument, std::string(user) + ": no topic given");
  return {};
}

Result<Owned<rd_kafka_t>> make_client(rd_kafka_type_t type, Owned<rd_kafka_conf_t> conf) {
  char error[512];
  Owned<rd_kafka_t> client(rd_kafka_new(type, conf.get(), error, sizeof(error)));
  if (!client) return Status(ErrorCode::invalid_argument, std::string("Kafka: ") + error);
  (void)conf.release();  // rd_kafka_new took it
  return client;
}

Result<std::int32_t> partition_count(rd_kafka_t* kafka, const std::string& topic, std::chrono::milliseconds timeout,
                                     const std::function<bool()>& stopping) {
  const Owned<rd_kafka_topic_t> handle(rd_kafka_topic_new(kafka, topic.c_str(), nullptr));
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  // Asked in short waits, so that a stop is heard while no broker answers; asked again while the
  // topic's answer is a retriable error (LEADER_NOT_AVAILABLE: a topic just created, whose
  // partitions have no leader yet, or a controller moving), not a missing topic.
  for (;;) {
    const rd_kafka_metadata_t* metadata = nullptr;
    const rd_kafka_resp_err_t error =
        rd_kafka_metadata(kafka, 0, handle.get(), &metadata, std::min(milliseconds_until(deadline), 500));
    rd_kafka_resp_err_t topic_error = error;
    if (error == RD_KAFKA_RESP_ERR_NO_ERROR) {
      const Owned<const rd_kafka_metadata_t> owned(metadata);
      topic_error = metadata->topic_cnt == 1 ? metadata->topics[0].err : RD_KAFKA_RESP_ERR_UNKNOWN;
      if (topic_error == RD_KAFKA_RESP_ERR_NO_ERROR && metadata->topics[0].partition_cnt > 0) {
        return metadata->topics[0].partition_cnt;
      }
      if (topic_error == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || topic_error == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC) {
        return Status(ErrorCode::not_found, "Kafka: topic " + topic + " does not exist (" + rd_kafka_err2str(topic_error) +
                                                "): create it first, with the partitions it will always have");
      }
      if (topic_error != RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE) {  // access refused, an invalid name, ...
        return Status(ErrorCode::io_error, "Kafka: topic " + topic + ": " +
                                               (topic_error == RD_KAFKA_RESP_ERR_NO_ERROR ? "no partitions"
                                                                                          : rd_kafka_err2str(topic_error)));
      }
    }
    if (stopping && stopping()) return Status(ErrorCode::timed_out, "Kafka: asking for topic " + topic + ": stopped");
    if (std::chrono::steady_clock::now() >= deadline) {
      return Status(ErrorCode::io_error, "Kafka: no metadata for topic " + topic + " within " +
                                             std::to_string(timeout.count()) + " ms: " + rd_kafka_err2str(topic_error));
    }
    // A topic's error comes back at once: asked again a little later, not in a busy loop.
    if (error == RD_KAFKA_RESP_ERR_NO_ERROR) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

Result<std::string> cluster_id(rd_kafka_t* kafka, std::chrono::milliseconds timeout,
                               const std::function<bool()>& stopping) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (char* id = rd_kafka_clusterid(kafka, std::min(milliseconds_until(deadline), 500)); id != nullptr) {
      std::string out(id);
      rd_kafka_mem_free(kafka, id);
      return out;
    }
    if (stopping && stopping()) return Status(ErrorCode::timed_out, "Kafka: asking for the cluster's id: stopped");
    if (std::chrono::steady_clock::now() >= deadline) {
      return Status(ErrorCode::io_error, "Kafka: the cluster did not give its id within " + std::to_string(timeout.count()) +
                                             " ms");
    }
  }
}

namespace {

// A record of the source read back.
struct Found {
  std::uint64_t sequence = 0;
  std::uint64_t delivered = 0;
  std::uint64_t fingerprint = 0;
};

// The read-back's consumer: librdkafka's simple consumer (a partition fetched into one queue from a
// given offset, rd_kafka_consume_start_queue), not a group's member. A group's consumer fetches
// nothing until the group's coordinator is found, and leaves a group on the cluster; nothing is
// ever committed here. The topic's metadata is asked first: a partition started before its leader
// is known is asked again only after librdkafka's half-second backoff, at every start.
class TailConsumer {
 public:
  TailConsumer(Owned<rd_kafka_t> consumer, std::int32_t partitions, const std::string& topic)
      : consumer_(std::move(consumer)),
        topic_(rd_kafka_topic_new(consumer_.get(), topic.c_str(), nullptr)),
        queue_(rd_kafka_queue_new(consumer_.get())),
        main_(rd_kafka_queue_get_main(consumer_.get())),
        fetching_(static_cast<std::size_t>(partitions), false),
        restarts_(static_cast<std::size_t>(partitions), Restart{}) {
    // The client's own errors (a broker down, a request refused) come with the records.
    rd_kafka_queue_forward(main_.get(), queue_.get());
  }
  TailConsumer(const TailConsumer&) = delete;
  TailConsumer& operator=(const TailConsumer&) = delete;
  ~TailConsumer() {
    for (std::size_t p = 0; p < fetching_.size(); ++p) stop(static_cast<std::int32_t>(p));
    rd_kafka_queue_forward(main_.get(), nullptr);
  }

  rd_kafka_t* client() const { return consumer_.get(); }

  rd_kafka_resp_err_t start(std::int32_t partition, std::int64_t offset) {
    if (rd_kafka_consume_start_queue(topic_.get(), partition, offset, queue_.get()) != 0) return rd_kafka_last_error();
    fetching_[static_cast<std::size_t>(partition)] = true;
    return RD_KAFKA_RESP_ERR_NO_ERROR;
  }
  // Records of a stopped partition still queued are dropped by librdkafka (they carry the old
  // fetch's version); the callers check each record's partition and offset all the same.
  void stop(std::int32_t partition) {
    restarts_[static_cast<std::size_t>(partition)] = Restart{};
    if (!fetching_[static_cast<std::size_t>(partition)]) return;
    fetching_[static_cast<std::size_t>(partition)] = false;
    (void)rd_kafka_consume_stop(topic_.get(), partition);
  }
  // A fetch librdkafka gave up on (a lookup it took for permanent: auto.offset.reset=error stops
  // its fetcher, and librdkafka would not ask again): stopped now, and started from `offset` again
  // by the first restart_due() `delay` from now.
  void restart_later(std::int32_t partition, std::int64_t offset, std::chrono::milliseconds delay) {
    stop(partition);
    restarts_[static_cast<std::size_t>(partition)] = {.at = std::chrono::steady_clock::now() + delay, .offset = offset};
  }
  // Starts the fetches whose restart is due: librdkafka's refusal of one, if any.
  rd_kafka_resp_err_t restart_due() {
    const auto now = std::chrono::steady_clock::now();
    for (std::size_t p = 0; p < restarts_.size(); ++p) {
      if (restarts_[p].at > now) continue;
      const std::int64_t offset = restarts_[p].offset;
      restarts_[p] = Restart{};
      if (const rd_kafka_resp_err_t started = start(static_cast<std::int32_t>(p), offset); started) return started;
    }
    return RD_KAFKA_RESP_ERR_NO_ERROR;
  }
  Owned<rd_kafka_message_t> poll(int timeout_ms) {
    return Owned<rd_kafka_message_t>(rd_kafka_consume_queue(queue_.get(), timeout_ms));
  }

 private:
  Owned<rd_kafka_t> consumer_;
  Owned<rd_kafka_topic_t> topic_;
  Owned<rd_kafka_queue_t> queue_;
  Owned<rd_kafka_queue_t> main_;
  std::vector<bool> fetching_;
  struct Restart {
    std::chrono::steady_clock::time_point at = std::chrono::steady_clock::time_point::max();  // max: none
    std::int64_t offset = 0;
  };
  std::vector<Restart> restarts_;  // by partition
};

// Reads the records at offsets [start, end) of `partition` and adds the source's to `found`.
// `cut` tells whether retention removed records from `start` on meanwhile (the partition's start
// is then reached). A failure leaves the partition fetching: the consumer is dropped then.
Status read_range(const KafkaExportOptions& options, TailConsumer& consumer, std::int32_t partition,
                  std::int32_t partitions, std::int64_t start, std::int64_t end,
                  std::chrono::steady_clock::time_point deadline, const std::function<bool()>& stopping,
                  std::vector<Found>& found, bool& cut) {
  if (const rd_kafka_resp_err_t started = consumer.start(partition, start); started) {
    return kafka_error(options, "reading partition " + std::to_string(partition), started);
  }
  const std::size_t before = found.size();
  std::string failed;  // the last error librdkafka reported, for the error at the deadline
  int resets = 0;         // OFFSET_OUT_OF_RANGE answers so far
  bool checking = false;  // fetching from the partition's start after one, to tell a cut
  for (std::int64_t next = start; next < end;) {
    // Asked between polls: a leader that went down since the ends were had makes the polls come
    // back empty until the deadline.
    if (stopping()) return stopped(options);
    if (std::chrono::steady_clock::now() >= deadline) {
      return Status(ErrorCode::timed_out, "Kafka at " + options.brokers + ": reading back topic " + options.topic +
                                              " partition " + std::to_string(partition) + " did not finish in time" +
                                              (failed.empty() ? "" : ": " + failed));
    }
    if (const rd_kafka_resp_err_t started = consumer.restart_due(); started) {
      return kafka_error(options, "reading partition " + std::to_string(partition), started);
    }
    const Owned<rd_kafka_message_t> message = consumer.poll(std::min(milliseconds_until(deadline), 200));
    if (!message) continue;
    // The client's own errors (no partition): librdkafka asks again by itself.
    if (message->partition != partition) continue;
    // The fetch at `next` was answered OFFSET_OUT_OF_RANGE (auto.offset.reset=error): retention
    // removed records from `next` on since the start was asked, or an answer that is no cut (a
    // replica whose log starts elsewhere than the leader's, a broker's passing error). Which, the
    // partition's start tells: fetched from there again (a little later, when this comes again:
    // retention passing the new start too, or that start's lookup refused for good).
    if (message->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET) {
      failed = rd_kafka_message_errstr(message.get());
      consumer.restart_later(partition, RD_KAFKA_OFFSET_BEGINNING,
                             resets > 0 ? std::chrono::milliseconds(200) : std::chrono::milliseconds(0));
      ++resets;
      checking = true;
      continue;
    }
    // The first answer from the partition's start (a record, or its end when it is empty).
    if (checking && (message->err == RD_KAFKA_RESP_ERR_NO_ERROR || message->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)) {
      checking = false;
      if (message->offset <= next) {
        // The start has not passed `next`: nothing was cut. Read on from `next`, with what this
        // chunk found (taken for a cut, the records below would never be read).
        consumer.restart_later(partition, next, std::chrono::milliseconds(0));
        continue;
      }
      // Cut: what is left of the range is read from the new start. What this chunk read below it
      // is gone: kept, it would leave a hole between it and what follows, above the lowest record
      // found (read_from), taken for a store's events that the topic never had.
      cut = true;
      found.resize(before);
    }
    // The end of what the replica fetched from has: the chunk's end, or a replica whose high
    // watermark lags the end asked (a preferred follower, a new leader): its records up to `end`
    // are the topic's all the same, and come once its watermark catches up.
    if (message->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      if (message->offset >= end) break;
      continue;
    }
    // Any other error is one librdkafka fetches again after by itself (an unknown or storage error
    // on the leader; the new start's lookup refused, whose AUTO_OFFSET_RESET above asks again):
    // noted for the deadline's message and waited out, as partition_ends does.
    if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      failed = rd_kafka_message_errstr(message.get());
      continue;
    }
    if (message->offset < next) continue;
    next = message->offset + 1;
    if (message->offset >= end) break;
    rd_kafka_headers_t* headers = nullptr;
    if (rd_kafka_message_headers(message.get(), &headers) != RD_KAFKA_RESP_ERR_NO_ERROR) continue;
    if (text_header(headers, kSourceHeader) != std::optional<std::string_view>(options.source)) continue;
    const auto sequence = number_header(headers, kSequenceHeader);
    const auto delivered = number_header(headers, kDeliveredHeader);
    if (!sequence || !delivered) {
      return Status(ErrorCode::corruption, "Kafka topic " + options.topic + " partition " + std::to_string(partition) +
                                               " offset " + std::to_string(message->offset) + ": a record of source " +
                                               options.source + " without its annal.sequence or annal.delivered");
    }
    // Written when the topic had another partition count: its keys mapped elsewhere, and the
    // skip rule would take events never produced for produced (docs/kafka.md).
    if (number_header(headers, kPartitionsHeader) != std::optional<std::uint64_t>(partitions)) {
      return Status(ErrorCode::invalid_argument,
                    "Kafka topic " + options.topic + " has " + std::to_string(partitions) + " partitions, but source " +
                        options.source + "'s record of sequence " + std::to_string(*sequence) + " in partition " +
                        std::to_string(partition) + " was written when it had " +
                        std::string(text_header(headers, kPartitionsHeader).value_or("?")) +
                        ": the export cannot tell what it produced; export to a new topic");
    }
    const auto text = [&](const char* name) { return text_header(headers, name).value_or(std::string_view()); };
    found.push_back({.sequence = *sequence,
                     .delivered = *delivered,
                     .fingerprint = record_fingerprint(
                         std::string_view(static_cast<const char*>(message->key), message->key_len),
                         std::string_view(static_cast<const char*>(message->payload), message->len),
                         text(kVersionHeader), text(kTypeHeader), text(kTimestampHeader), text(kIdHeader))});
  }
  consumer.stop(partition);
  return {};
}

// The offset at `logical` (RD_KAFKA_OFFSET_BEGINNING: its first record's; _END: the one its next
// record will have) of each partition `asked`, into `offsets`. Not rd_kafka_query_watermark_offsets: while a
// partition's leader is down, librdkafka 2.0.2 does not come back from it, whatever its timeout.
// Here every partition is fetched from `logical` and librdkafka's own threads ask the leaders
// (again, after a failure) and fetch: a partition's first record or its end (an EOF event) gives
// its offset, and this thread keeps to the deadline and to `stopping` meanwhile. A failure leaves
// partitions fetching: the consumer is dropped then.
Status partition_ends(const KafkaExportOptions& options, TailConsumer& consumer, const std::vector<bool>& asked,
                      std::int64_t logical, std::chrono::steady_clock::time_point deadline,
                      const std::function<bool()>& stopping, std::vector<std::int64_t>& offsets) {
  const auto partitions = static_cast<std::int32_t>(asked.size());
  std::vector<bool> known(asked.size(), true);
  std::int32_t left = 0;
  for (std::int32_t partition = 0; partition < partitions; ++partition) {
    if (!asked[static_cast<std::size_t>(partition)]) continue;
    if (const rd_kafka_resp_err_t started = consumer.start(partition, logical); started) {
      return kafka_error(options, "asking the partitions' ends", started);
    }
    known[static_cast<std::size_t>(partition)] = false;
    ++left;
  }
  std::string failed;  // the last failure librdkafka reported, for the error at the deadline
  while (left > 0) {
    if (stopping()) return stopped(options);
    if (const rd_kafka_resp_err_t started = consumer.restart_due(); started) {
      return kafka_error(options, "asking the partitions' ends", started);
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      std::string waiting;
      for (std::int32_t partition = 0; partition < partitions; ++partition) {
        if (!known[static_cast<std::size_t>(partition)]) waiting += (waiting.empty() ? "" : ", ") + std::to_string(partition);
      }
      return Status(ErrorCode::timed_out, "Kafka at " + options.brokers + ": reading back topic " + options.topic +
                                              " did not finish in time: no answer for the " +
                                              (logical == RD_KAFKA_OFFSET_END ? "end" : "start") + " of partition" +
                                              (left > 1 ? "s " : " ") + waiting +
                                              (failed.empty() ? " (its leader may be down)" : ": " + failed));
    }
    const Owned<rd_kafka_message_t> message = consumer.poll(std::min(milliseconds_until(deadline), 200));
    if (!message) continue;
    if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR && message->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      // librdkafka asks again by itself (a leader moving, a request refused): noted, and waited out.
      failed = rd_kafka_message_errstr(message.get());
      // Except where it gave up (a ListOffsets error it takes for permanent,
      // UNKNOWN_TOPIC_OR_PARTITION among them): that partition is asked again, a little later.
      if (message->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET && message->partition >= 0 &&
          message->partition < partitions && !known[static_cast<std::size_t>(message->partition)]) {
        consumer.restart_later(message->partition, logical, std::chrono::milliseconds(200));
      }
      continue;
    }
    if (message->partition < 0 || message->partition >= partitions) continue;
    const auto p = static_cast<std::size_t>(message->partition);
    if (known[p]) continue;
    known[p] = true;
    --left;
    offsets[p] = message->offset;
    // Known: what librdkafka would fetch after it (a whole partition, from its start) is not needed.
    consumer.stop(message->partition);
  }
  return {};
}

}  // namespace

Result<Tail> read_tail(const KafkaExportOptions& options, std::int32_t partitions,
                       std::chrono::steady_clock::time_point deadline, const std::function<bool()>& stopping) {
  // The consumer that reads records back and asks for the partitions' ends: made first, whether or
  // not there is anything to read, so that a setting it refuses is refused at every start.
  // read_uncommitted: every record there is, past another producer's open transaction too.
  // auto.offset.reset=error: retention moving the start past a chunk must not jump to the end.
  std::map<std::string, std::string> fixed = {{"enable.auto.commit", "false"},
                                              {"enable.auto.offset.store", "false"},
                                              {"enable.partition.eof", "true"},
                                              {"isolation.level", "read_uncommitted"},
                                              {"auto.offset.reset", "error"}};
  // A request to a slow broker waits this long, not librdkafka's minute: librdkafka asks again, and
  // the start keeps to its own deadline.
  if (!options.settings.contains(kSocketTimeout)) fixed.emplace(kSocketTimeout, std::to_string(kTailSocketTimeoutMs));
  // A fetch at a partition's end returns as soon as the broker has nothing more, not after the
  // half second librdkafka lets a broker wait for more: the ends, and each chunk's end, are
  // known by that empty answer (the partition's EOF), at every start.
  if (!options.settings.contains(kFetchWait)) fixed.emplace(kFetchWait, std::to_string(kTailFetchWaitMs));
  auto conf = configuration(options.brokers, options.settings, fixed);
  if (!conf.ok()) return conf.status();
  auto made = make_client(RD_KAFKA_CONSUMER, std::move(conf).value());
  if (!made.ok()) return made.status();
  TailConsumer consumer(std::move(made).value(), partitions, options.topic);
  if (auto known = partition_count(consumer.client(), options.topic, std::chrono::duration_cast<std::chrono::milliseconds>(
                                                                         deadline - std::chrono::steady_clock::now()),
                                   stopping);
      !known.ok()) {
    return known.status();
  }
  const auto count = static_cast<std::size_t>(partitions);
  std::vector<std::vector<Found>> found(count);
  std::vector<std::int64_t> low(count, 0);
  std::vector<std::int64_t> reached(count, 0);  // the offset each partition has been read back to
  // Back a chunk from `reached`: false once the partition's start is reached.
  const auto read_back = [&](std::int32_t partition) -> Result<bool> {
    const auto p = static_cast<std::size_t>(partition);
    if (reached[p] <= low[p]) return false;
    if (stopping()) return stopped(options);
    const std::int64_t start = std::max(low[p], reached[p] - kTailChunk);
    bool cut = false;
    if (Status read = read_range(options, consumer, partition, partitions, start, reached[p], deadline, stopping,
                                 found[p], cut);
        !read.ok()) {
      return read;
    }
    reached[p] = start;
    if (cut) low[p] = start;  // nothing is left below
    return true;
  };
  Tail tail;
  tail.last.assign(count, 0);
  tail.read_from.assign(count, 0);
  // First back to the source's last record in each partition (the first chunk holding records of
  // the source holds its last one: a source's records sit in a partition in sequence order).
  // Each partition's ends, from the consumer's own fetch (partition_ends): a leader that is down
  // delays the answer; it cannot hold the start past its deadline.
  // The starts are asked only of partitions that have ever had a record: each round of asking
  // costs a fetch that waits at the partition's end.
  std::vector<std::int64_t> high(count, 0);
  if (Status ends = partition_ends(options, consumer, std::vector<bool>(count, true), RD_KAFKA_OFFSET_END, deadline,
                                   stopping, high);
      !ends.ok()) {
    return ends;
  }
  std::vector<bool> written(count);
  for (std::size_t p = 0; p < count; ++p) written[p] = high[p] > 0;
  if (Status ends = partition_ends(options, consumer, written, RD_KAFKA_OFFSET_BEGINNING, deadline, stopping, low);
      !ends.ok()) {
    return ends;
  }
  for (std::int32_t partition = 0; partition < partitions; ++partition) {
    const auto p = static_cast<std::size_t>(partition);
    // Retention may have moved the start past the end asked before it (records written and
    // removed meanwhile): those records came after the source's, which were removed with them.
    low[p] = std::min(low[p], high[p]);
    reached[p] = high[p];
    while (found[p].empty()) {
      auto more = read_back(partition);
      if (!more.ok()) return more.status();
      if (!more.value()) break;
    }
    for (const Found& record : found[p]) {
      tail.last[p] = std::max(tail.last[p], record.sequence);
      tail.delivered = std::max(tail.delivered, record.delivered);
    }
  }
  // Then further back, to a record at or below `delivered`: every record from the highest such one
  // on is one the store's event of that sequence must match. Those above `delivered` are the
  // records produced before Kafka had acknowledged the ones before them: a few for a steady export,
  // all of a burst's when the producer batches long (docs/kafka.md).
  const auto lowest = [](const std::vector<Found>& records) {
    std::uint64_t least = UINT64_MAX;
    for (const Found& record : records) least = std::min(least, record.sequence);
    return least;
  };
  for (std::int32_t partition = 0; partition < partitions; ++partition) {
    const auto p = static_cast<std::size_t>(partition);
    if (found[p].empty()) continue;
    while (lowest(found[p]) > tail.delivered) {
      auto more = read_back(partition);
      if (!more.ok()) return more.status();
      if (!more.value()) {
        tail.read_from[p] = lowest(found[p]);
        break;
      }
    }
    for (const Found& record : found[p]) {
      if (record.sequence <= tail.delivered) tail.checked = std::max(tail.checked, record.sequence);
    }
  }
  for (std::int32_t partition = 0; partition < partitions; ++partition) {
    for (const Found& record : found[static_cast<std::size_t>(partition)]) {
      if (record.sequence < tail.checked || (tail.checked == 0 && record.sequence <= tail.delivered)) continue;
      const Exported exported{.partition = partition, .fingerprint = record.fingerprint};
      const auto [at, added] = tail.above.emplace(record.sequence, exported);
      // The same record twice is a late request's copy (docs/kafka.md); two different ones, two
      // stores exporting under one name.
      if (!added && (at->second.partition != partition || at->second.fingerprint != record.fingerprint)) {
        return Status(ErrorCode::corruption, "Kafka topic " + options.topic + " holds two different records of source " +
                                                 options.source + " with sequence " + std::to_string(record.sequence) +
                                                 " (partitions " + std::to_string(at->second.partition) + " and " +
                                                 std::to_string(partition) +
                                                 "): two stores have exported under that source name; export to a new topic");
      }
    }
  }
  return tail;
}

namespace {

// Runs `call` on a thread of its own and waits `wait` for it: false if it had not returned, and then
// it goes on alone, so what it uses must outlive it (a handle it uses is never destroyed then).
// Also false, with `call` never run, when no thread can be made: its callers run in destructors,
// where the exception would end the process.
bool bounded(std::function<void()> call, std::chrono::milliseconds wait) {
  struct Done {
    std::mutex mutex;
    std::condition_variable changed;
    bool done = false;
  };
  const auto done = std::make_shared<Done>();
  std::thread running;
  try {
    running = std::thread([done, call = std::move(call)] {
      call();
      std::lock_guard lock(done->mutex);
      done->done = true;
      done->changed.notify_all();
    });
  } catch (const std::system_error&) {
    return false;
  }
  std::unique_lock lock(done->mutex);
  if (done->changed.wait_for(lock, wait, [&] { return done->done; })) {
    lock.unlock();
    running.join();
    return true;
  }
  running.detach();
  return false;
}

}  // namespace

bool close_consumer(Owned<rd_kafka_t> consumer, std::chrono::milliseconds close_wait) {
  if (!consumer) return true;
  // Far more than a healthy assign or destroy takes, and short enough that a stop() still returns
  // in an operator's patience.
  constexpr std::chrono::seconds kCallWait{10};
  rd_kafka_t* const kafka = consumer.get();
  // Gives up the partitions the group takes back (all of them: nullptr), as the rebalance callback
  // would, with nothing to keep (the caller has made its last commit). rd_kafka_assign waits for
  // the group's answer without a limit, and after the topic was deleted it once waited for ever (1
  // stop in 10): past kCallWait the handle is let go, never destroyed under the call.
  const auto give_up = [&](Owned<rd_kafka_topic_partition_list_t> partitions, bool assign) {
    return bounded(
        [kafka, assign, list = std::shared_ptr<rd_kafka_topic_partition_list_t>(std::move(partitions))] {
          // Asked in here: it waits for the group's answer as the assign does.
          const char* protocol = list ? rd_kafka_rebalance_protocol(kafka) : nullptr;
          if (protocol == nullptr || std::string_view(protocol) != "COOPERATIVE") {
            (void)rd_kafka_assign(kafka, nullptr);
            return;
          }
          const Owned<rd_kafka_error_t> changed(assign ? rd_kafka_incremental_assign(kafka, list.get())
                                                       : rd_kafka_incremental_unassign(kafka, list.get()));
        },
        kCallWait);
  };
  // After a fatal error the close is refused (and librdkafka's destroy skips it by itself).
  bool closed = false;
  {
    const Owned<rd_kafka_queue_t> queue(rd_kafka_queue_new(kafka));
    if (const Owned<rd_kafka_error_t> refused(rd_kafka_consumer_close_queue(kafka, queue.get())); !refused) {
      const auto deadline = std::chrono::steady_clock::now() + close_wait;
      // Served as events, not callbacks: the group's queue, forwarded here, also holds fetched
      // messages, which librdkafka's callback serving asserts on (rdkafka_queue.c:516).
      while (!(closed = rd_kafka_consumer_closed(kafka) != 0) && std::chrono::steady_clock::now() < deadline) {
        rd_kafka_event_t* event = rd_kafka_queue_poll(queue.get(), 100);
        if (event == nullptr) continue;
        bool answered = true;
        if (rd_kafka_event_type(event) == RD_KAFKA_EVENT_REBALANCE) {
          const rd_kafka_topic_partition_list_t* partitions = rd_kafka_event_topic_partition_list(event);
          answered = give_up(Owned<rd_kafka_topic_partition_list_t>(
                                 partitions != nullptr ? rd_kafka_topic_partition_list_copy(partitions) : nullptr),
                             rd_kafka_event_error(event) == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS);
        }
        rd_kafka_event_destroy(event);
        if (!answered) {
          (void)consumer.release();
          return false;
        }
      }
      // Out of time: a group waiting for the partitions to be given up would keep the destroy
      // waiting for ever (its NO_CONSUMER_CLOSE finds the close begun, and does not do it).
      if (!closed && !give_up(nullptr, false)) {
        (void)consumer.release();
        return false;
      }
    }
  }
  const int flags = closed ? 0 : RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE;
  if (!bounded([kafka = consumer.release(), flags] { rd_kafka_destroy_flags(kafka, flags); }, kCallWait)) return false;
  return closed;
}

std::int64_t partition_end(rd_kafka_t* consumer, const std::string& topic, const rd_kafka_message_t& message) {
  if (message.err == RD_KAFKA_RESP_ERR__PARTITION_EOF) return message.offset;
  std::int64_t low = -1;
  std::int64_t high = -1;
  if (rd_kafka_get_watermark_offsets(consumer, topic.c_str(), message.partition, &low, &high) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return -1;
  }
  return high < 0 ? -1 : high;
}

std::uint64_t unread(rd_kafka_t* kafka, const std::string& topic, std::int32_t partition,
                     std::optional<std::int64_t> next) {
  std::int64_t low = 0;
  std::int64_t high = 0;
  if (rd_kafka_get_watermark_offsets(kafka, topic.c_str(), partition, &low, &high) != RD_KAFKA_RESP_ERR_NO_ERROR ||
      high < 0) {
    return 0;
  }
  // None before the low mark, which is known only with statistics on (0 then).
  const std::int64_t from = std::max<std::int64_t>({next.value_or(0), low, 0});
  return static_cast<std::uint64_t>(std::max<std::int64_t>(0, high - from));
}

std::int32_t partition_of(std::string_view key, std::int32_t partitions) {
  return rd_kafka_msg_partitioner_murmur2(nullptr, key.data(), key.size(), partitions, nullptr, nullptr);
}

std::optional<std::string_view> text_header(const rd_kafka_headers_t* headers, const char* name) {
  const void* value = nullptr;
  std::size_t size = 0;
  if (rd_kafka_header_get_last(headers, name, &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR || value == nullptr) {
    return std::nullopt;
  }
  return std::string_view(static_cast<const char*>(value), size);
}

std::optional<std::uint64_t> number_header(const rd_kafka_headers_t* headers, const char* name) {
  const auto text = text_header(headers, name);
  if (!text) return std::nullopt;
  std::uint64_t number = 0;
  const auto parsed = std::from_chars(text->data(), text->data() + text->size(), number);
  if (parsed.ec != std::errc() || parsed.ptr != text->data() + text->size()) return std::nullopt;
  return number;
}

}  // namespace annal::kafka
