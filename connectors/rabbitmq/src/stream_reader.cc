#include "annal/rabbitmq/stream_reader.h"

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "annal/base/user_code.h"
#include "connection.h"
#include "stream_tail.h"

namespace annal::rabbitmq {
namespace {

constexpr amqp_channel_t kReadChannel = 1;

}  // namespace

RabbitStreamReader::RabbitStreamReader(StreamReaderOptions options) : options_(std::move(options)) {}

RabbitStreamReader::~RabbitStreamReader() = default;

Result<std::unique_ptr<RabbitStreamReader>> RabbitStreamReader::open(StreamReaderOptions options) {
  if (options.stream.empty()) return Status(ErrorCode::invalid_argument, "RabbitMQ stream reader: a stream name is needed");
  if (options.prefetch == 0) return Status(ErrorCode::invalid_argument, "RabbitMQ stream reader: prefetch must be at least 1");
  if (options.heartbeat.count() <= 0) {
    return Status(ErrorCode::invalid_argument,
                  "RabbitMQ stream reader: heartbeat must be at least 1 s (0 would turn off the detection of a silent server)");
  }
  if (auto address = parse_url(options.url); !address.ok()) return address.status();
  std::unique_ptr<RabbitStreamReader> reader(new RabbitStreamReader(std::move(options)));
  if (Status connected = reader->connect(); !connected.ok()) return connected;
  return reader;
}

Status RabbitStreamReader::connect() {
  connection_.reset();
  auto address = parse_url(options_.url);
  if (!address.ok()) return address.status();
  auto connection = Connection::open(address.value(), "annal stream reader", options_.connect_timeout, options_.heartbeat);
  if (!connection.ok()) return connection.status();
  // From where the last whole batch ended: what came after it is read again, and the skip rule
  // (applied()) passes over anything of it already applied.
  const std::uint64_t from = last_offset_ ? *last_offset_ + 1 : options_.from_offset;
  if (Status consuming = connection.value()->consume(kReadChannel, options_.stream, from, options_.prefetch, "annal-reader");
      !consuming.ok()) {
    return consuming;
  }
  connection_ = std::move(connection).value();
  resumed_at_ = from > 0 ? std::optional(from) : std::nullopt;
  return {};
}

Result<std::optional<std::uint64_t>> RabbitStreamReader::removed_before(std::uint64_t from, std::uint64_t delivered) {
  // One past `from` may be the offset at a segment's start, which no AMQP consumer is given.
  if (delivered <= from + 1) return std::optional<std::uint64_t>();
  // RabbitMQ starts a consumer at an offset retention has removed at the stream's first message,
  // without a word; so do offsets no AMQP consumer is given (a stream protocol client's offset
  // tracking). Where the stream now begins tells them apart: asked on a connection of its own,
  // since this one's deliveries must not be read past.
  auto address = parse_url(options_.url);
  if (!address.ok()) return address.status();
  auto asking = Connection::open(address.value(), "annal stream reader's check", options_.connect_timeout,
                                 options_.heartbeat);
  if (!asking.ok()) return asking.status();
  // Bounded by a heartbeat: meanwhile this poll's own connection answers none.
  const auto first = first_delivered(*asking.value(), options_.stream,
                                     std::chrono::steady_clock::now() + std::min<std::chrono::milliseconds>(
                                                                            options_.connect_timeout, options_.heartbeat),
                                     [] { return false; });
  if (!first.ok()) return first.status();
  return first.value() <= from + 1 ? std::nullopt : std::optional(first.value());
}

Result<std::size_t> RabbitStreamReader::poll(engine::Projection& projection, std::chrono::milliseconds wait) {
  if (!failed_.ok()) return failed_;
  // The connection was lost at an earlier poll (RabbitMQ closed it: missed heartbeats while the
  // caller did not poll, a restart): a new one, from where the last whole batch ended. Failing,
  // nothing is applied, and the next poll tries again.
  if (!connection_) {
    if (Status connected = connect(); !connected.ok()) {
      return Status(connected.code(), connected.message() + " (reading stream " + options_.stream + ")");
    }
  }
  bool lost = false;
  const auto fail = [&](Status error) {
    failed_ = std::move(error);
    return failed_;
  };
  std::size_t applied = 0;
  std::uint64_t last_sequence = 0;
  std::uint64_t last_tag = 0;
  // The position this poll reaches, taken (last_offset(), applied()) only once the batch has
  // ended without an error: after a failure (apply or end_of_batch threw) they still name where
  // the last whole batch ended, so resuming from them reads the failed batch again.
  std::optional<std::uint64_t> reached = last_offset_;
  std::map<std::string, std::uint64_t> applied_now = options_.applied;
  for (std::size_t handled = 0; handled < options_.prefetch; ++handled) {
    auto next = connection_->next_delivery(handled == 0 ? wait : std::chrono::milliseconds(0));
    if (!next.ok()) {
      // The connection is gone: what was applied is a whole batch; the next poll reconnects.
      if (connection_->closed()) {
        lost = true;
        break;
      }
      return fail(Status(next.status().code(), next.status().message() + " (reading stream " + options_.stream + ")"));
    }
    if (!next.value()) break;
    const Delivery& delivery = *next.value();
    if (delivery.channel() != kReadChannel) continue;
    last_tag = delivery.tag();
    const auto offset = delivery.offset();
    if (!offset) return fail(connection_->error(ErrorCode::invalid_argument, "reading " + options_.stream, "not a stream"));
    if (resumed_at_) {
      const std::uint64_t from = *std::exchange(resumed_at_, std::nullopt);
      const auto removed = removed_before(from, *offset);
      if (!removed.ok()) {
        // Not known: nothing of this poll is applied, and the next connects and asks again.
        connection_.reset();
        return Status(removed.status().code(), removed.status().message() + " (reading stream " + options_.stream + ")");
      }
      if (removed.value()) {
        return fail(Status(ErrorCode::io_error,
                           "stream " + options_.stream + ": this reader resumes at offset " + std::to_string(from) +
                               ", and the stream now begins at offset " + std::to_string(*removed.value()) +
                               ": retention (max-age, max-length-bytes) removed messages it had not read. Nothing "
                               "is applied; rebuild the projection from the stream's start (from_offset 0), or keep "
                               "the stream longer"));
      }
    }
    const amqp_table_t& headers = delivery.headers();
    const auto sequence = number_header(headers, kSequenceHeader);
    const auto source = text_header(headers, kSourceHeader);
    // annal.sequence there but no sequence number (text, negative, a float): a damaged or forged
    // message of annal's, not another application's, which has none.
    if (!sequence && has_header(headers, kSequenceHeader)) {
      return fail(connection_->error(ErrorCode::corruption, "stream " + options_.stream + " offset " + std::to_string(*offset),
                                     "its annal.sequence is not a sequence number"));
    }
    if (!sequence || !source) {
      ++foreign_;
      reached = *offset;
      continue;
    }
    const std::string where = "stream " + options_.stream + " offset " + std::to_string(*offset);
    const auto version = number_header(headers, kVersionHeader);
    const auto type = text_header(headers, kTypeHeader);
    const auto stream = text_header(headers, kStreamHeader);
    const auto timestamp = number_header(headers, kTimestampHeader);
    if (!version || !type || !stream || !timestamp) {
      return fail(connection_->error(ErrorCode::corruption, where,
                                     "an event of source " + std::string(*source) +
                                         " without annal.version, annal.type, annal.stream or annal.timestamp_ns"));
    }
    std::uint64_t& seen = applied_now[std::string(*source)];
    if (*sequence <= seen) {
      ++duplicates_;
      reached = *offset;
      continue;
    }
    engine::EventView event;
    event.header.sequence = *sequence;
    event.header.version = *version;
    event.header.timestamp_ns = *timestamp;
    event.header.type = *type;
    event.header.stream_name = *stream;
    if (const auto id = text_header(headers, kIdHeader)) {
      const auto parsed = engine::parse_id(*id);
      if (!parsed) {
        return fail(connection_->error(ErrorCode::corruption, where,
                                       "an event of source " + std::string(*source) + " whose annal.id is not an id"));
      }
      event.header.event_id = *parsed;
    }
    const std::string_view body = delivery.body();
    event.payload = std::as_bytes(std::span(body.data(), body.size()));
    if (Status called = call_user_code([&] { projection.apply(event); }, [&] { return where + ": the projection"; });
        !called.ok()) {
      return fail(std::move(called));
    }
    seen = *sequence;
    reached = *offset;
    last_sequence = *sequence;
    ++applied;
  }
  if (applied > 0) {
    if (Status ended = call_user_code([&] { projection.end_of_batch(last_sequence); },
                                      [&] { return "stream " + options_.stream + ": the projection's end_of_batch"; });
        !ended.ok()) {
      return fail(std::move(ended));
    }
  }
  last_offset_ = reached;
  options_.applied = std::move(applied_now);
  if (!lost && last_tag != 0) {
    if (Status acked = connection_->ack(kReadChannel, last_tag); !acked.ok()) {
      if (!connection_->closed()) return fail(acked);
      lost = true;
    }
  }
  if (lost) connection_.reset();
  return applied;
}

}  // namespace annal::rabbitmq
