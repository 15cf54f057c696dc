#include "stream_tail.h"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <variant>

namespace annal::rabbitmq {
namespace {

// Messages read by the first step back from the end, looking for the source's last one; each
// further step reads twice as many, so that a source idle behind n others' messages is found in
// about log2(n / 1000) steps.
constexpr std::uint64_t kTailChunk = 1000;
// Deliveries in flight to the scan: events may be up to 1 MiB each, so this bounds the memory the
// read-back may take (rabbitmq-c holds them until released) to a few tens of MiB.
constexpr std::uint16_t kTailPrefetch = 32;
constexpr amqp_channel_t kMarkerChannel = 2;
constexpr amqp_channel_t kScanChannel = 3;
// The longest single wait for a delivery, so that the deadline and a stop are looked at.
constexpr std::chrono::milliseconds kPoll{200};

std::string random_marker() {
  std::random_device random;
  char text[33];
  std::snprintf(text, sizeof(text), "%08x%08x%08x%08x", random(), random(), random(), random());
  return text;
}

// What one scan of the stream found.
struct Scan {
  std::optional<std::uint64_t> first_offset;  // the first delivery's offset
  Tail last;                                  // the source's last message seen (sequence 0: none)
};

// Consumes `stream` from `from` on kScanChannel as consumer `tag`, records what `take` admits,
// and stops once `stop` says so; `started` runs once the consumer is set up.
Status scan(Connection& connection, const std::string& stream, const std::string& source,
            const std::variant<std::string, std::uint64_t>& from, const std::string& tag,
            const std::function<bool(std::uint64_t offset)>& take,
            const std::function<bool(const Delivery&, std::uint64_t offset)>& stop, const std::function<Status()>& started,
            Scan& out, std::chrono::steady_clock::time_point deadline, const std::function<bool()>& stopping) {
  if (Status opened = connection.open_channel(kScanChannel); !opened.ok()) return opened;
  if (Status consuming = connection.consume(kScanChannel, stream, from, kTailPrefetch, tag); !consuming.ok()) return consuming;
  if (Status begun = started(); !begun.ok()) return begun;
  std::uint64_t unacked = 0;
  for (;;) {
    if (stopping()) return connection.error(ErrorCode::timed_out, "reading back stream " + stream, "stopped");
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      return connection.error(ErrorCode::timed_out, "reading back stream " + stream, "did not reach its end in time");
    }
    auto next = connection.next_delivery(std::min(kPoll, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now)));
    if (!next.ok()) return next.status();
    const std::unique_ptr<Delivery>& delivery = next.value();
    // A delivery of an earlier scan, read after it was cancelled: passed over.
    if (!delivery || delivery->channel() != kScanChannel || delivery->consumer_tag() != tag) continue;
    const auto offset = delivery->offset();
    if (!offset) {
      return connection.error(ErrorCode::invalid_argument, "reading back " + stream, "a delivery without x-stream-offset: not a stream");
    }
    if (!out.first_offset) out.first_offset = *offset;
    if (take(*offset) && text_header(delivery->headers(), kSourceHeader) == std::optional<std::string_view>(source)) {
      const amqp_table_t& headers = delivery->headers();
      if (const auto sequence = number_header(headers, kSequenceHeader); sequence && *sequence > out.last.sequence) {
        out.last = {.sequence = *sequence,
                    .fingerprint = message_fingerprint(
                        text_header(headers, kStreamHeader).value_or(""), number_header(headers, kVersionHeader).value_or(0),
                        text_header(headers, kTypeHeader).value_or(""), number_header(headers, kTimestampHeader).value_or(0),
                        text_header(headers, kIdHeader).value_or(""), delivery->body())};
      }
    }
    const bool done = stop(*delivery, *offset);
    if (++unacked >= kTailPrefetch / 2 || done) {
      if (Status acked = connection.ack(kScanChannel, delivery->tag()); !acked.ok()) return acked;
      unacked = 0;
    }
    if (done) break;
  }
  return connection.close_channel(kScanChannel);
}

}  // namespace

Result<std::uint64_t> first_delivered(Connection& connection, const std::string& stream,
                                      std::chrono::steady_clock::time_point deadline,
                                      const std::function<bool()>& stopping) {
  Scan first;
  if (Status scanned = scan(
          connection, stream, std::string(), std::string("first"), "annal-first-" + random_marker(),
          [](std::uint64_t) { return false; }, [](const Delivery&, std::uint64_t) { return true; },
          [] { return Status(); }, first, deadline, stopping);
      !scanned.ok()) {
    return scanned;
  }
  return *first.first_offset;  // set by the delivery that ended the scan
}

Result<Tail> read_tail(Connection& connection, const std::string& stream, const std::string& source,
                                std::chrono::steady_clock::time_point deadline, const std::function<bool()>& stopping) {
  // First the last chunk, from a consumer set up before the marker is published, so that the
  // marker lands after where it starts: reading to the marker reads everything the stream held
  // when the marker was appended, whoever else writes to it meanwhile.
  const std::string marker = random_marker();
  Scan last_chunk;
  const auto publish_marker = [&]() -> Status {
    if (Status opened = connection.open_channel(kMarkerChannel); !opened.ok()) return opened;
    Headers headers;
    headers.text(kSourceHeader, source);
    headers.text(kMarkerHeader, marker);
    amqp_table_t table = headers.table();
    if (Status sent = connection.publish(kMarkerChannel, stream, table, {}); !sent.ok()) return sent;
    return connection.close_channel(kMarkerChannel);
  };
  if (Status scanned = scan(
          connection, stream, source, std::string("last"), "annal-tail-" + marker, [](std::uint64_t) { return true; },
          [&](const Delivery& delivery, std::uint64_t) {
            return text_header(delivery.headers(), kMarkerHeader) == std::optional<std::string_view>(marker);
          },
          publish_marker, last_chunk, deadline, stopping);
      !scanned.ok()) {
    return scanned;
  }
  if (last_chunk.last.sequence != 0) return last_chunk.last;
  // Then back a window at a time, each twice the one before, down to the stream's first message:
  // the first window holding messages of the source holds its last one (a source's messages sit
  // in the stream in sequence order). A window's first delivery does not tell where the stream
  // begins: RabbitMQ takes the offset at each segment's start for itself and delivers it to no
  // AMQP consumer, so a window starting there begins one past its start.
  const std::uint64_t end_of_windows = last_chunk.first_offset.value_or(0);
  if (end_of_windows == 0) return Tail{};
  const auto first_message = first_delivered(connection, stream, deadline, stopping);
  if (!first_message.ok()) return first_message.status();
  const std::uint64_t first = first_message.value();
  std::uint64_t size = kTailChunk;
  for (std::uint64_t end = end_of_windows, step = 0; end > first; ++step, size *= 2) {
    const std::uint64_t start = end - std::min(size, end - first);
    Scan window;
    if (Status scanned = scan(
            connection, stream, source, start, "annal-tail-" + marker + "-" + std::to_string(step),
            [&](std::uint64_t offset) { return offset >= start && offset < end; },
            // Offset end - 1 is the last before the window above; retention may have removed
            // messages meanwhile (or it is an offset no consumer is given), so a delivery at or
            // past it ends the window too.
            [&](const Delivery&, std::uint64_t offset) { return offset + 1 >= end; }, [] { return Status(); }, window,
            deadline, stopping);
        !scanned.ok()) {
      return scanned;
    }
    if (window.last.sequence != 0) return window.last;
    end = start;
  }
  return Tail{};
}

}  // namespace annal::rabbitmq
