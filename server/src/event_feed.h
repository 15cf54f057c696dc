// GET /subscribe: a live feed of durable events as Server-Sent Events, one thread per feed.
//
// Each feed reads an engine Subscription on a thread of its own and hands the connection one chunk
// at a time, waiting until it is written. A client that reads slowly holds only its own thread:
// its subscription holds no ring slot between calls, so appends that would wait for it evict it
// from the ring, and it goes on from the journal (subscription.h). Appends never wait for a client.
//
// On the wire, one event is
//   id: <global sequence>
//   data: <the event as JSON, one line: format_event>
//   <blank line>
// and a quiet feed sends a comment line (": heartbeat") now and then, so that a client gone away
// is noticed. A browser's EventSource sends the last id it saw as Last-Event-ID when it
// reconnects, and the feed resumes after it: no gap, no repeat.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "annal/engine/subscription.h"

namespace annal::server {

// What the route hands the transport: an open subscription and which events of it to send.
struct FeedSource {
  std::unique_ptr<engine::Subscription> subscription;
  std::optional<std::string> stream;  // only this stream's events, if given
};

// Writes one chunk to the client (the first is the answer's head), returning once it is written (true) or cannot be (false: the
// connection is gone or the write timed out). Called on the feed's thread.
using FeedWrite = std::function<bool(std::string)>;

// The running feeds, at most `feeds_max`. Thread-safe.
class FeedPool {
 public:
  FeedPool(std::size_t feeds_max, std::chrono::milliseconds heartbeat) : feeds_max_(feeds_max), heartbeat_(heartbeat) {}
  ~FeedPool() { stop(); }
  FeedPool(const FeedPool&) = delete;
  FeedPool& operator=(const FeedPool&) = delete;

  // Starts a feed writing through `write`; false if `feeds_max` run already, or after stop().
  [[nodiscard]] bool start(std::shared_ptr<FeedSource> source, FeedWrite write);
  // Ends every feed and joins its thread. A feed waiting for a write is released only when that
  // write fails, so the caller closes the connections first (or alongside).
  void stop();
  // Feeds running now.
  [[nodiscard]] std::size_t running();

 private:
  struct Feed {
    std::shared_ptr<FeedSource> source;
    std::atomic<bool> stop{false};
    std::atomic<bool> done{false};
    std::thread thread;
  };
  void run(Feed& feed, const FeedWrite& write) const;
  void reap();  // under mutex_: joins the feeds that ended

  const std::size_t feeds_max_;
  const std::chrono::milliseconds heartbeat_;
  std::mutex mutex_;
  std::list<std::unique_ptr<Feed>> feeds_;  // under mutex_
  bool stopped_ = false;                    // under mutex_
};

}  // namespace annal::server
