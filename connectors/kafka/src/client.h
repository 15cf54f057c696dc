// librdkafka's handles owned, configurations built from options, the record headers, and what the
// exporter asks of Kafka (a topic's partitions, its tail read back), shared with the import and
// the read model.
#pragma once

#include <librdkafka/rdkafka.h>

#include <chrono>
#include <functional>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "annal/base/fingerprint.h"
#include "annal/base/status.h"
#include "annal/engine/types.h"

namespace annal::kafka {

struct KafkaExportOptions;

// The record headers, one place for the exporter and the tail reader.
inline constexpr const char* kSequenceHeader = "annal.sequence";
inline constexpr const char* kDeliveredHeader = "annal.delivered";
inline constexpr const char* kSourceHeader = "annal.source";
inline constexpr const char* kPartitionsHeader = "annal.partitions";
inline constexpr const char* kTypeHeader = "annal.type";
inline constexpr const char* kIdHeader = "annal.id";
inline constexpr const char* kVersionHeader = "annal.version";
inline constexpr const char* kTimestampHeader = "annal.timestamp_ns";
// The longest annal.source: an export refuses a longer name, and a read model takes a record with
// one for another application's.
inline constexpr std::size_t kSourceNameMax = 255;

struct KafkaDeleter {
  void operator()(rd_kafka_t* kafka) const { rd_kafka_destroy(kafka); }
  void operator()(rd_kafka_topic_t* topic) const { rd_kafka_topic_destroy(topic); }
  void operator()(rd_kafka_queue_t* queue) const { rd_kafka_queue_destroy(queue); }
  void operator()(rd_kafka_conf_t* conf) const { rd_kafka_conf_destroy(conf); }
  void operator()(rd_kafka_topic_partition_list_t* list) const { rd_kafka_topic_partition_list_destroy(list); }
  void operator()(rd_kafka_message_t* message) const { rd_kafka_message_destroy(message); }
  void operator()(const rd_kafka_metadata_t* metadata) const { rd_kafka_metadata_destroy(metadata); }
  void operator()(rd_kafka_error_t* error) const { rd_kafka_error_destroy(error); }
  void operator()(rd_kafka_headers_t* headers) const { rd_kafka_headers_destroy(headers); }
};
template <class T>
using Owned = std::unique_ptr<T, KafkaDeleter>;

// bootstrap.servers and the user's settings, then `fixed` (which the user may not set).
Result<Owned<rd_kafka_conf_t>> configuration(const std::string& brokers, const std::map<std::string, std::string>& settings,
                                             const std::map<std::string, std::string>& fixed);

// `brokers` and `topic` given (neither empty), or an error that says which is missing, for `user`
// ("Kafka export", ...).
Status check_named(std::string_view user, const std::string& brokers, const std::string& topic);

// A producer or consumer made with `conf` (which it takes, made or not).
Result<Owned<rd_kafka_t>> make_client(rd_kafka_type_t type, Owned<rd_kafka_conf_t> conf);

// Closes a group consumer and destroys it, neither without bound: false if either ran out of time.
// The close (leaving the group) takes `close_wait` at most; it calls none of the consumer's
// callbacks (it gives up the partitions the group takes back itself), so that no callback runs
// on an owner half gone. Each librdkafka call that can wait without a limit (giving the partitions
// up, the destroy) runs on a thread of its own, waited for 10 s: librdkafka 2.0.2 (Debian 12's)
// never returns from destroying a consumer that had a partition of a topic deleted under it (a
// reference cycle between a stopped partition and the fetches queued for it: librdkafka issue
// 4187, fixed in 2.1.0), and its rd_kafka_assign then once waited for ever too. Past the wait,
// the call goes on alone and the handle is never destroyed: its threads and memory stay until the
// process ends, rather than the caller's stop() hanging.
bool close_consumer(Owned<rd_kafka_t> consumer, std::chrono::milliseconds close_wait);

// Messages of `partition` from `next` (nullopt: its start; never below its low mark) to its high
// watermark, from what the last fetch brought (no request); 0 for a partition not fetched yet.
std::uint64_t unread(rd_kafka_t* kafka, const std::string& topic, std::int32_t partition,
                     std::optional<std::int64_t> next);

// Where `message`'s partition ends, as its consumer last heard: a partition end's own offset, or
// for a record the high watermark of the fetch that brought it (librdkafka writes it before it
// queues the records). -1 when not known (an error answer leaves -1).
std::int64_t partition_end(rd_kafka_t* consumer, const std::string& topic, const rd_kafka_message_t& message);

// The topic's partition count, from the cluster's metadata, asked until `timeout`; `stopping`, if
// given, is asked between tries and ends it early.
Result<std::int32_t> partition_count(rd_kafka_t* kafka, const std::string& topic, std::chrono::milliseconds timeout,
                                     const std::function<bool()>& stopping = {});

// The cluster's id (rd_kafka_clusterid), known once its metadata came: two clusters' topics of
// one name are not one topic. Asked in short waits until `timeout`; `stopping`, if given, ends it.
Result<std::string> cluster_id(rd_kafka_t* kafka, std::chrono::milliseconds timeout,
                               const std::function<bool()>& stopping = {});

// A record of the source, as read back: its partition, and its fingerprint (below).
struct Exported {
  std::int32_t partition = 0;
  std::uint64_t fingerprint = 0;
};
// Where a source's export stands in a topic: per partition, its last record's sequence (0: none);
// the highest annal.delivered among the records read; and the records above that, which the
// store's events of those sequences must be (a store restored from a backup has others there).
struct Tail {
  std::vector<std::uint64_t> last;
  std::uint64_t delivered = 0;
  // The source's highest record at or below `delivered` (0: none read): the export replays from
  // it, so that the store's event there is checked too (a restored store may end at or below
  // `delivered` with other events than the topic's), and the log must hold it.
  std::uint64_t checked = 0;
  // The records from `checked` on, by sequence.
  std::map<std::uint64_t, Exported> above;
  // Per partition: 0, or the lowest sequence read back there when the partition's start (retention)
  // came before a record at or below `delivered`: below it, what the partition held is unknown.
  std::vector<std::uint64_t> read_from;
};
// Reads each partition back from its end, a chunk at a time, to the source's last record there,
// then further back where needed to a record at or below the highest annal.delivered. What fails
// is asked again until `deadline`; `stopping` (asked between steps) ends it early.
Result<Tail> read_tail(const KafkaExportOptions& options, std::int32_t partitions,
                       std::chrono::steady_clock::time_point deadline, const std::function<bool()>& stopping);

// What an event's record holds (annal/base/fingerprint.h): the same for an event and its record
// (the headers as the decimal text written), another for another event.
inline std::uint64_t record_fingerprint(std::string_view key, std::string_view value, std::string_view version,
                                        std::string_view type, std::string_view timestamp, std::string_view id) {
  return fingerprint({key, version, type, timestamp, id, value});
}

// The partition Kafka's clients pick for `key` among `partitions` (murmur2, Java-compatible).
std::int32_t partition_of(std::string_view key, std::int32_t partitions);

// A header's value as a number; nullopt when absent or not decimal.
std::optional<std::uint64_t> number_header(const rd_kafka_headers_t* headers, const char* name);
// A header's value as text; nullopt when absent.
std::optional<std::string_view> text_header(const rd_kafka_headers_t* headers, const char* name);

}  // namespace annal::kafka
