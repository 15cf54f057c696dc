#include "annal/kafka/kafka_import.h"

#include <simdjson.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "annal/base/user_code.h"
#include "client.h"

namespace annal::kafka {
namespace {

// The longest wait between two attempts at a commit the group refuses.
constexpr std::chrono::milliseconds kCommitBackoffMax{5'000};
// How long a rebalance waits for the group's offsets of the partitions it gives (rd_kafka_committed).
constexpr int kCommittedWaitMs = 10'000;
// How long each later attempt at a partition's group offset that wait did not bring waits.
constexpr int kCommittedRetryMs = 1'000;
// While Progress::retrying shows an error and nothing comes, how often the topic's metadata is
// asked for (each ask waiting at most kProbeWait): an answer says Kafka answers again.
constexpr std::chrono::seconds kProbeEvery{2};
constexpr std::chrono::milliseconds kProbeWait{1'000};
// How many times in a row a message is fetched again, 100 ms apart, while what checks it (the
// partition's start past a gap, the group's offset) is not known, before that is an error.
constexpr int kAskAgainMax = 50;
// The longest stop() waits for the group to be left: more than the coordinator away takes
// (librdkafka gives up on it after about session.timeout.ms, 45 s by default).
constexpr std::chrono::seconds kCloseWait{60};

// Errors no retry changes, from a commit or a message: access withdrawn, librdkafka's fatal error
// (the member fenced by another of the same group.instance.id, among others).
bool refused_for_good(rd_kafka_resp_err_t error) {
  return error == RD_KAFKA_RESP_ERR__FATAL || error == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
         error == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED;
}

// A message or a commit answered so: the topic deleted, or a broker whose metadata lags. Taken
// for a deletion, loudly: tolerated for a while (as the read model does, TopicWatch), a topic
// deleted and made again meanwhile went on unnoticed, its first messages passing for the old
// one's (below) or read past as read already (review round 28). A false alarm costs a restart of
// the import, and loses nothing.
bool topic_unknown(rd_kafka_resp_err_t error) {
  return error == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || error == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
}

// What to do once the topic is gone. Message ids made up from (cluster, topic, partition, offset)
// repeat in a topic made again under the same name: imported by the same group into the same
// store, its first messages would pass for duplicates of the old topic's.
constexpr const char* kTopicGoneAdvice =
    "; the messages since the last commit are read again at the next start. If the topic is made "
    "again, import it with a new group into a store that has not seen the old one";

// What to do about a batch librdkafka cannot decode (`error`), which stops the import.
std::string undecodable_advice(rd_kafka_resp_err_t error) {
  if (error == RD_KAFKA_RESP_ERR__NOT_IMPLEMENTED) {
    return "librdkafka does not know its format or compression codec (a build without it?): import with one "
           "that does; passing over the batch would lose its messages";
  }
  return std::string("the broker's log is damaged") +
         (error == RD_KAFKA_RESP_ERR__BAD_COMPRESSION
              ? ", or the batch decompresses to more than receive.message.max.bytes allows (raise it and import again)"
              : "") +
         ". To pass over the batch, commit the group's offset past its last message (kafka-consumer-groups "
         "--reset-offsets --to-offset; kafka-dump-log shows the batch), then import again";
}

// An error's text; a fatal error's own reason (the error says only that there is one).
std::string error_text(rd_kafka_t* kafka, rd_kafka_resp_err_t error, const char* given) {
  if (error != RD_KAFKA_RESP_ERR__FATAL) return given;
  char reason[512] = "";
  const rd_kafka_resp_err_t fatal = rd_kafka_fatal_error(kafka, reason, sizeof(reason));
  return std::string("fatal error: ") + rd_kafka_err2str(fatal) + ": " + reason;
}

// A message as an event, or why it cannot be one.
struct Imported {
  std::string stream;
  std::string type;
  engine::Id128 id;
};

// FNV-1a of `text`, never 0: the high half of an id made up for a message.
std::uint64_t name_hash(std::string_view text) {
  std::uint64_t hash = 14695981039346656037ull;
  for (const char c : text) hash = (hash ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return hash | 1;
}

// The id of the message at (cluster, topic, partition, offset): the same message read again is
// the same event, and a message of another cluster's topic of the same name is another event.
engine::Id128 id_of(std::string_view cluster, std::string_view topic, std::int32_t partition, std::int64_t offset) {
  return engine::Id128{.hi = name_hash("kafka:" + std::string(cluster) + "/" + std::string(topic) + "/" +
                                       std::to_string(partition)),
                       .lo = static_cast<std::uint64_t>(offset)};
}

// The id of an annal export's record of (source, sequence) that carries no annal.id: a copy of it
// (a late request's, docs/kafka.md) is then the same event.
engine::Id128 id_of_export(std::string_view source, std::uint64_t sequence) {
  return engine::Id128{.hi = name_hash("annal:" + std::string(source)), .lo = sequence};
}

}  // namespace

// The group's consumer and the offsets handled since the last commit.
struct KafkaImport::Consumer {
  Owned<rd_kafka_t> kafka;
  std::map<std::int32_t, std::int64_t> next;  // partition -> the offset after the last message handled
  engine::Receipt last;                       // the last append since the last commit
  bool appended = false;
  std::size_t handled = 0;                    // messages since the last commit
  std::set<std::int32_t> at_end;              // partitions read to their end, nothing after yet
  // partition -> where its next message must be: the offset after the last message read (or its
  // end's), committed or not; the group's offset when the partition was given and nothing was read
  // yet. For in_sequence, and for the lag.
  std::map<std::int32_t, std::int64_t> read;
  // partition -> how many times in a row in_sequence had the partition fetched again.
  std::map<std::int32_t, int> asked_again;
  // Partitions given whose group offset could not be read then (its coordinator away): asked
  // again before anything of them is taken (in_sequence).
  std::set<std::int32_t> unchecked;
  // partition -> the first offset of an undecodable batch met below where the partition stands
  // and sought past, since the last message taken: met again, the partition stands inside it.
  std::map<std::int32_t, std::int64_t> sought_past;
  simdjson::dom::parser parser;
  std::string cluster;                        // the cluster's id, in the ids made up for messages

  // The group's rebalances, from rd_kafka_consumer_poll on the import's thread. A partition taken
  // away or given (back) is not known to be read to its end any more (another member may have
  // left messages in it meanwhile): Progress::caught_up waits for its end again. Nothing is
  // committed for a partition taken away: its next owner reads from the group's last commit, and
  // the messages' ids make what this member had appended duplicates.
  static void on_rebalance(rd_kafka_t* kafka, rd_kafka_resp_err_t change, rd_kafka_topic_partition_list_t* partitions,
                           void* opaque) {
    auto* import = static_cast<KafkaImport*>(opaque);
    Consumer& c = *import->consumer_;
    const bool given = change == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
    for (int i = 0; i < partitions->cnt; ++i) {
      c.at_end.erase(partitions->elems[i].partition);
      c.read.erase(partitions->elems[i].partition);
      c.asked_again.erase(partitions->elems[i].partition);
      c.unchecked.erase(partitions->elems[i].partition);
      c.sought_past.erase(partitions->elems[i].partition);
      if (!given) c.next.erase(partitions->elems[i].partition);
    }
    // The group's offsets of the partitions given, for in_sequence: auto.offset.reset=earliest (a
    // new group starts at the topic's beginning) also moves an offset that retention has passed to
    // the partition's new start, silently. Not known (the coordinator away): asked again later.
    if (given) {
      const Owned<rd_kafka_topic_partition_list_t> asked(rd_kafka_topic_partition_list_copy(partitions));
      const rd_kafka_resp_err_t read = rd_kafka_committed(kafka, asked.get(), kCommittedWaitMs);
      for (int i = 0; i < asked->cnt; ++i) {
        const rd_kafka_topic_partition_t& at = asked->elems[i];
        if (read != RD_KAFKA_RESP_ERR_NO_ERROR || at.err != RD_KAFKA_RESP_ERR_NO_ERROR) {
          c.unchecked.insert(at.partition);
        } else if (at.offset >= 0) {
          c.read[at.partition] = at.offset;
        }
      }
    }
    {
      std::lock_guard lock(import->mutex_);
      import->progress_.caught_up = false;
    }
    // No protocol (NULL) when the group has none any more: a revoke while closing, after the topic
    // was deleted (ADeletedTopicStopsTheImportAndItsStopReturns, once in a whole suite's run).
    const char* protocol = rd_kafka_rebalance_protocol(kafka);
    if (protocol != nullptr && std::string_view(protocol) == "COOPERATIVE") {
      rd_kafka_error_t* error = given ? rd_kafka_incremental_assign(kafka, partitions)
                                      : rd_kafka_incremental_unassign(kafka, partitions);
      if (error != nullptr) rd_kafka_error_destroy(error);
    } else {
      (void)rd_kafka_assign(kafka, given ? partitions : nullptr);
    }
  }

  // librdkafka's client errors (brokers down, a connection refused), from rd_kafka_consumer_poll on
  // the import's thread: shown in Progress::retrying while librdkafka retries. (Its fatal errors
  // come to a group's consumer as messages instead, rdkafka.c's rd_kafka_set_fatal_error0: run.)
  static void on_error(rd_kafka_t*, int, const char* reason, void* opaque) {
    auto* import = static_cast<KafkaImport*>(opaque);
    const Status status(ErrorCode::io_error, "Kafka import of topic " + import->options_.topic + " from " +
                                                 import->options_.brokers + ": " + reason);
    std::lock_guard lock(import->mutex_);
    import->progress_.retrying = status;
  }
};

Status KafkaImport::check(const KafkaImportOptions& options) {
  if (Status named = check_named("Kafka import", options.brokers, options.topic); !named.ok()) return named;
  if (options.group.empty()) return Status(ErrorCode::invalid_argument, "Kafka import: a consumer group is needed");
  // 0 would pass the window's check below with a window of 0, which remembers no id at all.
  if (options.batch_max == 0) return Status(ErrorCode::invalid_argument, "Kafka import: batch_max must be at least 1");
  return {};
}

Result<std::unique_ptr<KafkaImport>> KafkaImport::start(engine::Engine& engine, KafkaImportOptions options) {
  if (Status checked = check(options); !checked.ok()) return checked;
  // What a crash or a rebalance makes the import read again (up to batch_max messages since the
  // last commit) is taken once only while the engine still remembers those messages' ids: with
  // fewer, each would be appended a second time, and nothing would say so.
  if (options.batch_max > engine.idempotency_window()) {
    return Status(ErrorCode::invalid_argument,
                  "Kafka import: batch_max " + std::to_string(options.batch_max) +
                      " is over the engine's idempotency_window " + std::to_string(engine.idempotency_window()) +
                      ": messages read again after a crash would be appended twice; open the engine with a larger "
                      "window, or import in smaller batches");
  }
  std::unique_ptr<KafkaImport> import(new KafkaImport(engine, std::move(options)));
  const KafkaImportOptions& o = import->options_;
  // Offsets are committed by the import, once what precedes them is durable.
  // A new group starts at the topic's beginning.
  auto conf = configuration(o.brokers, o.settings,
                            {{"group.id", o.group},
                             {"enable.auto.commit", "false"},
                             {"auto.offset.reset", "earliest"},
                             {"enable.partition.eof", "true"}});  // for Progress::caught_up
  if (!conf.ok()) return conf.status();
  rd_kafka_conf_set_opaque(conf.value().get(), import.get());
  rd_kafka_conf_set_error_cb(conf.value().get(), &Consumer::on_error);
  rd_kafka_conf_set_rebalance_cb(conf.value().get(), &Consumer::on_rebalance);
  auto kafka = make_client(RD_KAFKA_CONSUMER, std::move(conf).value());
  if (!kafka.ok()) return kafka.status();
  // The topic's metadata first: brokers unreachable, or no such topic, is an error now, with its
  // reason, not an import that waits for ever.
  if (auto partitions = partition_count(kafka.value().get(), o.topic, o.start_timeout, o.stopping); !partitions.ok()) {
    return Status(partitions.status().code(), "Kafka import from " + o.brokers + ": " + partitions.status().message());
  }
  auto cluster = cluster_id(kafka.value().get(), o.start_timeout, o.stopping);
  if (!cluster.ok()) {
    return Status(cluster.status().code(), "Kafka import from " + o.brokers + ": " + cluster.status().message());
  }
  import->consumer_->cluster = std::move(cluster).value();
  import->consumer_->kafka = std::move(kafka).value();
  rd_kafka_poll_set_consumer(import->consumer_->kafka.get());
  const Owned<rd_kafka_topic_partition_list_t> topics(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(topics.get(), o.topic.c_str(), RD_KAFKA_PARTITION_UA);
  if (const rd_kafka_resp_err_t subscribed = rd_kafka_subscribe(import->consumer_->kafka.get(), topics.get())) {
    return Status(ErrorCode::io_error, "Kafka import of topic " + o.topic + ": " + rd_kafka_err2str(subscribed));
  }
  import->thread_ = std::thread([raw = import.get()] { raw->run(); });
  return import;
}

KafkaImport::KafkaImport(engine::Engine& engine, KafkaImportOptions options)
    : engine_(engine), options_(std::move(options)), consumer_(std::make_unique<Consumer>()) {}

KafkaImport::~KafkaImport() { (void)stop(); }

Status KafkaImport::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_.store(true, std::memory_order_release);
  }
  stop_wake_.notify_all();
  // From on_skipped: the loop ends once it returns, and a stop() from outside (or the destructor)
  // joins it.
  if (std::this_thread::get_id() == importer_.load(std::memory_order_relaxed)) return progress().error;
  std::lock_guard one_at_a_time(stop_mutex_);
  if (thread_.joinable()) thread_.join();
  std::lock_guard lock(mutex_);
  return progress_.error;
}

KafkaImport::Progress KafkaImport::progress() const {
  std::lock_guard lock(mutex_);
  return progress_;
}

bool KafkaImport::wait_unless_stopped(std::chrono::milliseconds wait) {
  std::unique_lock lock(mutex_);
  return stop_wake_.wait_for(lock, wait, [&] { return stopping_.load(std::memory_order_acquire); });
}

void KafkaImport::seek(std::int32_t partition, std::int64_t offset) {
  const Owned<rd_kafka_topic_partition_list_t> to(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(to.get(), options_.topic.c_str(), partition)->offset = offset;
  // Asynchronous; a partition not being fetched (stopped, taken away) refuses it, and nothing of
  // it comes meanwhile.
  if (rd_kafka_error_t* error = rd_kafka_seek_partitions(consumer_->kafka.get(), to.get(), 0)) {
    rd_kafka_error_destroy(error);
  }
}

Result<KafkaImport::Delivery> KafkaImport::in_sequence(const rd_kafka_message_t& message) {
  if (message.err != RD_KAFKA_RESP_ERR_NO_ERROR && message.err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
    return Delivery::take;
  }
  auto read = consumer_->read.find(message.partition);
  if (read == consumer_->read.end() && consumer_->unchecked.contains(message.partition)) {
    const Owned<rd_kafka_topic_partition_list_t> asked(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(asked.get(), options_.topic.c_str(), message.partition);
    rd_kafka_resp_err_t answered = rd_kafka_committed(consumer_->kafka.get(), asked.get(), kCommittedRetryMs);
    if (answered == RD_KAFKA_RESP_ERR_NO_ERROR) answered = asked->elems[0].err;
    if (answered != RD_KAFKA_RESP_ERR_NO_ERROR) {
      const std::string why = "Kafka topic " + options_.topic + " partition " + std::to_string(message.partition) +
                              ": the group's offset could not be read (" + rd_kafka_err2str(answered) + ")";
      int& asked_count = consumer_->asked_again[message.partition];
      if (asked_count < kAskAgainMax) {
        ++asked_count;
        std::lock_guard lock(mutex_);
        progress_.retrying = Status(ErrorCode::io_error, why + "; nothing of the partition is imported until it is, "
                                                               "to tell whether retention removed messages unread");
        return Delivery::ask_again;
      }
      return Status(ErrorCode::io_error, why + " in " + std::to_string(kAskAgainMax) +
                                             " tries: whether retention removed messages this import had not read "
                                             "cannot be told. Nothing of the partition is imported; import again");
    }
    consumer_->asked_again.erase(message.partition);
    consumer_->unchecked.erase(message.partition);
    if (asked->elems[0].offset >= 0) read = consumer_->read.emplace(message.partition, asked->elems[0].offset).first;
  }
  if (read == consumer_->read.end()) return Delivery::take;  // the group had none: from the start
  const std::int64_t from = read->second;
  // Below: librdkafka went back to the partition's start (auto.offset.reset=earliest, at a fetch
  // answered OFFSET_OUT_OF_RANGE that was no retention: a replica behind). Read already; unless
  // the partition now ends below where the import stands: those offsets hold other messages, or
  // none (the topic deleted and made again faster than its metadata said, an unclean leader
  // election), and the new ones below it would be passed over as read.
  if (message.offset < from) {
    const std::int64_t end = partition_end(consumer_->kafka.get(), options_.topic, message);
    if (end >= 0 && end < from) {
      return Status(ErrorCode::not_found, "Kafka topic " + options_.topic + " partition " + std::to_string(message.partition) +
                                              " ends at offset " + std::to_string(end) + ", below offset " +
                                              std::to_string(from) + " where the import stands: the topic was deleted "
                                              "and made again, or a leader election lost messages" + kTopicGoneAdvice);
    }
    return message.err == RD_KAFKA_RESP_ERR__PARTITION_EOF ? Delivery::take : Delivery::read_already;
  }
  if (message.offset == from) return Delivery::take;
  // Not every gap is retention: a transaction's commit marker takes an offset no consumer is
  // given, an aborted transaction's records are not given under read_committed, and compaction
  // removes records. Retention alone moves the partition's start (its low watermark) past them:
  // the start the last fetch of the partition gave (Fetch v5 on; no request made here: asking a
  // broker does not come back while a partition's leader is down, client.cc's note).
  std::int64_t low = RD_KAFKA_OFFSET_INVALID;
  std::int64_t high = RD_KAFKA_OFFSET_INVALID;
  (void)rd_kafka_get_watermark_offsets(consumer_->kafka.get(), options_.topic.c_str(), message.partition, &low, &high);
  int& asked = consumer_->asked_again[message.partition];
  if (low < 0 && asked < kAskAgainMax) {
    // Not known just now: a broker's error answer (one no longer the leader, in a rolling restart)
    // gives -1 and librdkafka keeps it until the next answer. The message is fetched again.
    ++asked;
    return Delivery::ask_again;
  }
  consumer_->asked_again.erase(message.partition);
  if (low >= 0 && low <= from) return Delivery::take;
  const std::string where = "Kafka topic " + options_.topic + " partition " + std::to_string(message.partition) +
                            ": the import of group " + options_.group + " stands at offset " + std::to_string(from);
  if (low < 0) {
    return Status(ErrorCode::io_error, where + ", and the first message given is at " + std::to_string(message.offset) +
                                           "; the partition's start stays unknown (a broker older than Kafka 0.11?), "
                                           "so retention cannot be told from offsets no consumer is given. Nothing "
                                           "after them is imported");
  }
  return Status(ErrorCode::io_error,
                where + ", and the partition now starts at " + std::to_string(low) + ": retention removed offsets " +
                    std::to_string(from) + " to " + std::to_string(low - 1) +
                    ", which this import had not read. Nothing after them is imported; to import what is left, "
                    "commit the group's offset to " + std::to_string(low) +
                    " (kafka-consumer-groups --reset-offsets --to-offset), then import again");
}

void KafkaImport::update_lag() {
  Consumer& c = *consumer_;
  rd_kafka_topic_partition_list_t* assigned = nullptr;
  if (rd_kafka_assignment(c.kafka.get(), &assigned) != RD_KAFKA_RESP_ERR_NO_ERROR) return;
  const Owned<rd_kafka_topic_partition_list_t> owned(assigned);
  std::uint64_t lag = 0;
  for (int i = 0; i < assigned->cnt; ++i) {
    const std::int32_t partition = assigned->elems[i].partition;
    // From the next message to read: the one after the last read, else the group's offset.
    const auto read = c.read.find(partition);
    lag += unread(c.kafka.get(), options_.topic, partition,
                  read != c.read.end() ? std::optional(read->second) : std::nullopt);
  }
  std::lock_guard lock(mutex_);
  progress_.lag = lag;
}

void KafkaImport::run() {
  importer_.store(std::this_thread::get_id(), std::memory_order_relaxed);
  Consumer& c = *consumer_;
  const auto fail = [&](Status error) {
    std::lock_guard lock(mutex_);
    if (progress_.error.ok()) progress_.error = std::move(error);
  };
  // A message the import cannot take: the import stops there (OnBad::stop), or it is counted and
  // passed over. Whether the import goes on.
  const auto refuse = [&](Status why) {
    if (options_.on_bad == KafkaImportOptions::OnBad::stop) {
      fail(std::move(why));
      return false;
    }
    if (options_.on_skipped) {
      // The application's code, on the import's thread: what it throws stops the import, not the process.
      Status called = call_user_code([&] { options_.on_skipped(why); },
                                     [&] { return "Kafka import of topic " + options_.topic + ": on_skipped"; });
      if (!called.ok()) {
        fail(std::move(called));
        return false;
      }
    }
    std::lock_guard lock(mutex_);
    ++progress_.skipped;
    progress_.last_skipped = std::move(why);
    return true;
  };
  // The topic's partition count as its metadata gives it now: not_found when it does not exist.
  const auto ask_topic = [&] {
    return partition_count(c.kafka.get(), options_.topic, kProbeWait, [&] { return stopping_.load(std::memory_order_acquire); });
  };
  // Commits the offsets handled, once the events appended before them are durable.
  const auto commit = [&]() -> bool {
    if (c.next.empty()) return true;
    if (c.appended) {
      if (Status durable = engine_.wait_durable(c.last, engine::Engine::Clock::now() + std::chrono::minutes(10));
          !durable.ok()) {
        fail(durable);
        return false;
      }
    }
    const Owned<rd_kafka_topic_partition_list_t> offsets(rd_kafka_topic_partition_list_new(static_cast<int>(c.next.size())));
    for (const auto& [partition, offset] : c.next) {
      rd_kafka_topic_partition_list_add(offsets.get(), options_.topic.c_str(), partition)->offset = offset;
    }
    // Nothing more is read until the commit is made: whoever reads these partitions next resumes
    // from the last commit, and what comes back must stay within the engine's idempotency window
    // (a batch_max of messages), or it is appended twice. A commit the group refuses because of a
    // rebalance is given up for the partitions it took away: their new owner reads the batch
    // again, and its ids make it duplicates. Those it left this member (the cooperative protocol
    // takes only some) are committed with the next batch, or at the next idle poll.
    rd_kafka_resp_err_t committed = RD_KAFKA_RESP_ERR_NO_ERROR;
    for (auto backoff = std::chrono::milliseconds(100);; backoff = std::min(backoff * 2, kCommitBackoffMax)) {
      committed = rd_kafka_commit(c.kafka.get(), offsets.get(), 0);
      if (refused_for_good(committed)) {
        fail(Status(ErrorCode::io_error, "Kafka import of topic " + options_.topic + ": committing the group's offsets: " +
                                             error_text(c.kafka.get(), committed, rd_kafka_err2str(committed)) +
                                             "; the messages since the last commit are read again at the next start"));
        return false;
      }
      if (committed == RD_KAFKA_RESP_ERR_NO_ERROR || committed == RD_KAFKA_RESP_ERR__NO_OFFSET ||
          committed == RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS || committed == RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION ||
          committed == RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID || committed == RD_KAFKA_RESP_ERR__STATE) {
        break;
      }
      // A coordinator whose metadata lags a topic just made, or the topic deleted: the topic's own
      // metadata tells. Nothing polls meanwhile that would hear of a deletion from a message
      // (ADeletedTopicStopsTheImportEvenWithACommitToMake).
      if (topic_unknown(committed)) {
        if (ask_topic().status().code() == ErrorCode::not_found) {
          fail(Status(ErrorCode::not_found, "Kafka import of topic " + options_.topic + ": committing the group's offsets: " +
                                                rd_kafka_err2str(committed) + ", and its metadata says it does not exist" +
                                                kTopicGoneAdvice));
          return false;
        }
      }
      {
        std::lock_guard lock(mutex_);
        progress_.retrying = Status(ErrorCode::io_error, "Kafka import of topic " + options_.topic +
                                                             ": committing the group's offsets: " + rd_kafka_err2str(committed) +
                                                             "; nothing more is read until they are committed");
      }
      // Stopping: the batch is read again at the next start, within the window all the same.
      if (wait_unless_stopped(backoff)) return true;
    }
    if (committed == RD_KAFKA_RESP_ERR_NO_ERROR) {
      std::lock_guard lock(mutex_);
      progress_.retrying = Status();  // the coordinator answered
    }
    rd_kafka_topic_partition_list_t* assigned = nullptr;
    if (committed == RD_KAFKA_RESP_ERR_NO_ERROR || committed == RD_KAFKA_RESP_ERR__NO_OFFSET ||
        rd_kafka_assignment(c.kafka.get(), &assigned) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      c.next.clear();
    } else {
      const Owned<rd_kafka_topic_partition_list_t> owned(assigned);
      std::erase_if(c.next, [&](const auto& entry) {
        return rd_kafka_topic_partition_list_find(assigned, options_.topic.c_str(), entry.first) == nullptr;
      });
    }
    c.appended = false;
    c.handled = 0;
    return true;
  };
  // The message as an event, or why it cannot be one.
  const auto event_of = [&](const rd_kafka_message_t& message) -> Result<Imported> {
    Imported imported;
    rd_kafka_headers_t* headers = nullptr;
    if (rd_kafka_message_headers(&message, &headers) != RD_KAFKA_RESP_ERR_NO_ERROR) headers = nullptr;
    const std::string_view value(static_cast<const char*>(message.payload), message.len);
    // Parsed only if a field is asked for: a message with its key and an annal.type header needs none.
    simdjson::dom::element json;
    std::optional<bool> parsed_json;
    const auto is_json = [&] {
      if (!parsed_json) parsed_json = c.parser.parse(value.data(), value.size()).get(json) == simdjson::SUCCESS;
      return *parsed_json;
    };
    // A field's text; a number's digits too where `numbers` (an order id may be one, a type not).
    const auto field = [&](const std::string& name, bool numbers) -> std::optional<std::string> {
      if (!is_json()) return std::nullopt;
      simdjson::dom::element found;
      if (json[name].get(found) != simdjson::SUCCESS) return std::nullopt;
      std::string_view text;
      if (found.get(text) == simdjson::SUCCESS) return std::string(text);
      if (numbers && found.is_number()) return simdjson::minify(found);
      return std::nullopt;
    };
    if (options_.stream_field.empty()) {
      imported.stream.assign(static_cast<const char*>(message.key), message.key_len);
      if (imported.stream.empty()) return Status(ErrorCode::invalid_argument, "no key to name its stream");
    } else {
      const auto named = field(options_.stream_field, /*numbers=*/true);
      if (!named) {
        return Status(ErrorCode::invalid_argument, is_json() ? "no field " + options_.stream_field + " to name its stream"
                                                           : "its value is not JSON (the stream is in field " +
                                                                 options_.stream_field + ")");
      }
      imported.stream = options_.stream_prefix + *named;
    }
    if (const auto type = headers != nullptr ? text_header(headers, kTypeHeader) : std::nullopt) {
      imported.type = std::string(*type);
    } else if (const auto typed = field(options_.type_field, /*numbers=*/false)) {
      imported.type = *typed;
    } else {
      return Status(ErrorCode::invalid_argument, is_json() ? "no header annal.type and no text field " + options_.type_field
                                                         : "no header annal.type, and its value is not JSON");
    }
    const auto given = headers != nullptr ? text_header(headers, kIdHeader) : std::nullopt;
    // An all-zero id is the engine's "no id": such a message gets one as if it carried none.
    auto parsed = given ? engine::parse_id(*given) : std::nullopt;
    if (parsed && parsed->empty()) parsed.reset();
    const auto source = headers != nullptr ? text_header(headers, kSourceHeader) : std::nullopt;
    const auto sequence = headers != nullptr ? number_header(headers, kSequenceHeader) : std::nullopt;
    if (parsed) {
      imported.id = *parsed;
    } else if (source && sequence) {
      imported.id = id_of_export(*source, *sequence);
    } else {
      imported.id = id_of(c.cluster, options_.topic, message.partition, message.offset);
    }
    return imported;
  };
  // With nothing to read, librdkafka says nothing when Kafka answers again after an outage (a
  // partition's end is not given twice): while Progress::retrying shows an error, the topic's
  // metadata is asked for now and then, and an answer clears it.
  auto probed = std::chrono::steady_clock::now();
  const auto probe = [&] {
    {
      std::lock_guard lock(mutex_);
      if (progress_.retrying.ok()) return;
    }
    if (std::chrono::steady_clock::now() - probed < kProbeEvery) return;
    const bool answered = ask_topic().ok();
    probed = std::chrono::steady_clock::now();
    if (answered) {
      std::lock_guard lock(mutex_);
      progress_.retrying = Status();
    }
  };
  // A rebalance that takes a partition before its offsets are committed has its new owner read
  // those messages again: their ids make them duplicates.
  while (!stopping_.load(std::memory_order_acquire)) {
    rd_kafka_message_t* polled = rd_kafka_consumer_poll(c.kafka.get(), 100);
    if (polled == nullptr) {
      if (!commit()) break;
      update_lag();
      probe();
      continue;
    }
    const Owned<rd_kafka_message_t> message(polled);
    const Result<Delivery> delivery = in_sequence(*message);
    if (!delivery.ok()) {
      fail(delivery.status());
      break;
    }
    if (delivery.value() == Delivery::read_already) {
      // librdkafka went back to the partition's start: a batch met since is met anew.
      c.sought_past.erase(message->partition);
      continue;
    }
    if (delivery.value() == Delivery::ask_again) {
      if (wait_unless_stopped(std::chrono::milliseconds(100))) break;
      const auto stands = c.read.find(message->partition);
      seek(message->partition, stands != c.read.end() ? stands->second : message->offset);
      continue;
    }
    if (message->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      c.at_end.insert(message->partition);
      c.sought_past.erase(message->partition);  // past any batch it sought past
      // An end past the last message (a transaction's marker after it) is committed too: the
      // group's offset then stands at the end, as any consumer's would, not at the marker.
      if (const auto read = c.read.find(message->partition); read == c.read.end() || read->second < message->offset) {
        c.next[message->partition] = message->offset;
        c.read[message->partition] = message->offset;
      }
      {
        std::lock_guard lock(mutex_);
        progress_.retrying = Status();  // a broker answered
      }
      if (!commit()) break;
      update_lag();
      rd_kafka_topic_partition_list_t* assigned = nullptr;
      if (rd_kafka_assignment(c.kafka.get(), &assigned) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        // Offsets a rebalance refused to commit (kept by the cooperative protocol) are not caught up.
        bool all = assigned->cnt > 0 && c.next.empty();
        for (int i = 0; i < assigned->cnt; ++i) all = all && c.at_end.contains(assigned->elems[i].partition);
        rd_kafka_topic_partition_list_destroy(assigned);
        std::lock_guard lock(mutex_);
        progress_.caught_up = all;
      }
      continue;
    }
    if ((message->err == RD_KAFKA_RESP_ERR__BAD_COMPRESSION || message->err == RD_KAFKA_RESP_ERR__BAD_MSG ||
         message->err == RD_KAFKA_RESP_ERR__NOT_IMPLEMENTED) &&
        message->partition >= 0) {
      // A batch librdkafka cannot decode (decompression, a checksum with check.crcs, an LZ4 frame
      // cut short; a magic byte or codec it does not know, reported once and then passed over),
      // named by its first offset: damage in the broker's log (or a client that cannot read it),
      // not a message the import refuses. The
      // import stops there whatever on_bad, as Kafka's own consumer does: how many messages the
      // batch holds is not known, so where to resume past it is the user's call, made with the
      // group's offset. A batch below where the partition stands (librdkafka went back to the
      // partition's start, or the group's offset was set past it) is sought past once; met again,
      // the partition stands inside it.
      const std::int32_t partition = message->partition;
      const auto stands = c.read.find(partition);
      const auto sought = c.sought_past.find(partition);
      if (stands != c.read.end() && message->offset < stands->second &&
          (sought == c.sought_past.end() || sought->second != message->offset)) {
        c.sought_past[partition] = message->offset;
        seek(partition, stands->second);
        continue;
      }
      {
        std::lock_guard lock(mutex_);
        progress_.caught_up = false;
      }
      std::string stood;
      if (stands != c.read.end()) {
        stood = " (the import stands at offset " + std::to_string(stands->second) +
                (message->offset < stands->second
                     ? ", past the batch's first: if the group's offset is past the whole batch, import again"
                     : "") +
                ")";
      }
      fail(Status(ErrorCode::corruption, "Kafka topic " + options_.topic + " partition " + std::to_string(partition) +
                                             " offset " + std::to_string(message->offset) + ": " +
                                             rd_kafka_message_errstr(message.get()) +
                                             ": the batch of messages there cannot be read" + stood +
                                             ". Nothing from there on is imported, whatever on_bad: " +
                                             undecodable_advice(message->err)));
      break;
    }
    if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      const Status error(ErrorCode::io_error,
                         "Kafka import of topic " + options_.topic + ": " +
                             error_text(c.kafka.get(), message->err, rd_kafka_message_errstr(message.get())));
      if (refused_for_good(message->err)) {
        fail(error);
        break;
      }
      if (topic_unknown(message->err)) {
        fail(Status(ErrorCode::not_found, error.message() + ": the topic is gone (deleted?)" + kTopicGoneAdvice));
        break;
      }
      std::lock_guard lock(mutex_);
      progress_.retrying = error;  // librdkafka retries the rest
      continue;
    }
    c.at_end.erase(message->partition);
    c.sought_past.erase(message->partition);  // past any batch it sought past
    {
      std::lock_guard lock(mutex_);
      progress_.caught_up = false;
      progress_.retrying = Status();
    }
    const std::string where = "Kafka topic " + options_.topic + " partition " + std::to_string(message->partition) +
                              " offset " + std::to_string(message->offset);
    const auto imported = event_of(*message);
    Status refused = imported.ok() ? Status() : Status(ErrorCode::invalid_argument, where + ": " + imported.status().message());
    if (imported.ok()) {
      const engine::EventData event{.type = imported.value().type,
                                    .payload = std::as_bytes(std::span(static_cast<const char*>(message->payload), message->len)),
                                    .event_id = imported.value().id};
      const engine::AppendResult appended = engine_.append(imported.value().stream, engine::ExpectedVersion::any(), {&event, 1});
      if (appended.ok()) {
        // The highest receipt: a repeated message's is its original's, older than what came
        // before it, and the commit waits for what it names.
        if (!c.appended || appended.value().last_sequence > c.last.last_sequence) c.last = appended.value();
        c.appended = true;
        std::lock_guard lock(mutex_);
        ++(appended.value().duplicate ? progress_.duplicates : progress_.imported);
      } else if (appended.code() == ErrorCode::invalid_argument) {
        refused = Status(ErrorCode::invalid_argument, where + ": " + appended.status().message());
      } else {
        fail(appended.status());  // the engine itself: nothing after this can be appended either
        break;
      }
    }
    if (!refused.ok() && !refuse(std::move(refused))) break;
    c.next[message->partition] = message->offset + 1;
    c.read[message->partition] = message->offset + 1;
    if (++c.handled >= options_.batch_max) {
      if (!commit()) break;
      update_lag();
    }
  }
  (void)commit();
  // Closed and destroyed here, on the import's thread, not from the destructor: after a fatal error, librdkafka 2.0.2's destroy from
  // there waited for ever (AFatalErrorStopsTheImport); after the topic was deleted, its destroy
  // never returns (ADeletedTopicStopsTheImportAndItsStopReturns). Both bounded.
  (void)close_consumer(std::move(c.kafka), kCloseWait);
}

}  // namespace annal::kafka
