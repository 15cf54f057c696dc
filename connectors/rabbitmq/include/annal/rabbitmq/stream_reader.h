// A RabbitMQ stream read back into any projection, from an offset: the other half of RabbitExport.
//
//   auto reader = annal::rabbitmq::RabbitStreamReader::open({.url = "amqp://rabbit-1", .stream = "orders",
//                                                            .from_offset = saved + 1});
//   Orders orders;                                   // any annal::engine::Projection
//   while (running) auto applied = reader.value()->poll(orders, std::chrono::seconds(1));
//   saved = reader.value()->last_offset().value_or(saved);
//
// Each message RabbitExport wrote becomes an EventView again: its header from the annal.*
// headers (sequence, version, type, timestamp, id, and annal.stream as stream_name; stream_id and
// type_id are not exported and read 0), its payload the body. Messages of a (source, sequence)
// already applied are skipped, so a stream holding something twice (an export run under two
// names, a copy) still builds each event once per source. Messages that are not events (another
// application's, the exporter's start markers) are passed over.
//
// One thread uses a reader (rabbitmq-c's connections are not thread-safe); poll() blocks up to
// its wait. Acknowledgements follow each batch; streams keep messages whatever is acknowledged,
// so the position to resume from is last_offset(), kept by the caller.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "annal/base/status.h"
#include "annal/engine/projection.h"

namespace annal::rabbitmq {

class Connection;

struct StreamReaderOptions {
  std::string url;     // amqp://user:password@host:port/vhost
  std::string stream;  // an existing stream queue
  std::uint64_t from_offset = 0;  // the first message's offset (0: the stream's first)
  // Per source, the last sequence the projection already holds: messages at or below it are
  // skipped (a resumed reader passes applied() of the run before).
  std::map<std::string, std::uint64_t> applied{};
  std::uint16_t prefetch = 1000;  // unacknowledged deliveries at most, and a batch's size
  std::chrono::milliseconds connect_timeout{30'000};
  // AMQP heartbeats, sent only from inside poll(): a reader not polled for about two of them has
  // its connection closed by RabbitMQ, and the next poll connects again. At least 1 s.
  std::chrono::seconds heartbeat{10};
};

class RabbitStreamReader {
 public:
  static Result<std::unique_ptr<RabbitStreamReader>> open(StreamReaderOptions options);
  ~RabbitStreamReader();
  RabbitStreamReader(const RabbitStreamReader&) = delete;
  RabbitStreamReader& operator=(const RabbitStreamReader&) = delete;

  // Applies the messages that arrive within `wait` (at most `prefetch`), then end_of_batch if any
  // was applied: how many were applied. A connection RabbitMQ closed (missed heartbeats while the
  // caller did not poll, a server restart) ends the batch there; the next poll connects again and
  // reads on from last_offset() (an error if it cannot, and the poll after tries again). An error
  // when a message of annal lacks a header, the stream is deleted, the projection throws (naming
  // the offset), or retention removed messages from where the reader resumes (an offset given or
  // reached) before it read them; the reader is then done.
  Result<std::size_t> poll(engine::Projection& projection, std::chrono::milliseconds wait);

  // The offset of the last message of the last whole batch (its end_of_batch returned; messages
  // applied or skipped); nullopt before the first. After a failure it still names the batch
  // before: resuming after it reads the failed batch again, whose events before the failure a
  // projection kept in memory then sees twice (resume into a state of that batch's start).
  [[nodiscard]] std::optional<std::uint64_t> last_offset() const { return last_offset_; }
  // Per source, the last sequence applied.
  [[nodiscard]] const std::map<std::string, std::uint64_t>& applied() const { return options_.applied; }
  [[nodiscard]] std::uint64_t duplicates() const { return duplicates_; }  // skipped as applied before
  [[nodiscard]] std::uint64_t foreign() const { return foreign_; }        // not events, passed over

 private:
  explicit RabbitStreamReader(StreamReaderOptions options);
  // A new connection, consuming from after last_offset() (from_offset before the first batch).
  Status connect();
  StreamReaderOptions options_;
  // Where the stream begins now, if retention removed messages from `from` on, which the first
  // delivery of a connection resumed at `from` (resumed_at_) came after; nullopt if none.
  Result<std::optional<std::uint64_t>> removed_before(std::uint64_t from, std::uint64_t delivered);
  std::unique_ptr<Connection> connection_;
  std::optional<std::uint64_t> resumed_at_;  // the connection's offset past 0, until its first delivery
  std::optional<std::uint64_t> last_offset_;
  std::uint64_t duplicates_ = 0;
  std::uint64_t foreign_ = 0;
  Status failed_;
};

}  // namespace annal::rabbitmq
