// Where a source's export stands in a stream: the sequence of its last message there, read back
// from the stream's end (docs/rabbitmq.md).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "annal/base/fingerprint.h"

#include "connection.h"

namespace annal::rabbitmq {

// A source's last message in a stream: its sequence (0: none), and its fingerprint (below).
struct Tail {
  std::uint64_t sequence = 0;
  std::uint64_t fingerprint = 0;
};

// What an event's message holds (annal/base/fingerprint.h): the same for an event and its message,
// another for another event.
inline std::uint64_t message_fingerprint(std::string_view stream, std::uint64_t version, std::string_view type,
                                         std::uint64_t timestamp_ns, std::string_view id, std::string_view body) {
  return fingerprint({stream, std::to_string(version), type, std::to_string(timestamp_ns), id, body});
}

// The offset of the first message a consumer at `stream`'s start ("first") is given: where the
// stream begins now that retention removed what came before (or one past it: the offset at a
// segment's start goes to no AMQP consumer). Uses channel 3 of `connection` and closes it. An
// empty stream gives none: an error at `deadline`, or when `stopping` says so.
Result<std::uint64_t> first_delivered(Connection& connection, const std::string& stream,
                                      std::chrono::steady_clock::time_point deadline,
                                      const std::function<bool()>& stopping);

// `source`'s last message in `stream`, as the stream stands once a
// marker this call publishes has been read back by a consumer started before it was published:
// everything appended before the marker is read. Uses channels 2 and up of `connection` and
// closes them; channel 1 is left alone. `deadline` bounds it all; `stopping` is asked between
// polls (200 ms at most apart) and ends it early with an error.
Result<Tail> read_tail(Connection& connection, const std::string& stream, const std::string& source,
                                std::chrono::steady_clock::time_point deadline, const std::function<bool()>& stopping);

}  // namespace annal::rabbitmq
