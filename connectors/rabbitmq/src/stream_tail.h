// Where a source's export stands in a stream: the sequence of its last message there, read back
// from the stream's end (docs/rabbitmq.md).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "connection.h"

namespace annal::rabbitmq {

// The sequence of `source`'s last message in `stream` (0: none), as the stream stands once a
// marker this call publishes has been read back by a consumer started before it was published:
// everything appended before the marker is read. Uses channels 2 and up of `connection` and
// closes them; channel 1 is left alone. `deadline` bounds it all; `stopping` is asked between
// polls (200 ms at most apart) and ends it early with an error.
Result<std::uint64_t> read_tail(Connection& connection, const std::string& stream, const std::string& source,
                                std::chrono::steady_clock::time_point deadline, const std::function<bool()>& stopping);

}  // namespace annal::rabbitmq
