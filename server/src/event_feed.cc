#include "event_feed.h"

#include <cassert>

#include "annal/server/event_json.h"

namespace annal::server {
namespace {

using Clock = std::chrono::steady_clock;

// A chunk is written once this much is gathered, or when no event is ready at once.
constexpr std::size_t kChunkBytes = 64u << 10;

// The head of the answer, status line to blank line.
std::string feed_head() {
  // No length and no chunked coding: an event stream ends when the connection does (RFC 9112 6.3).
  // X-Accel-Buffering tells a proxy in front (nginx) not to hold the events back.
  return "HTTP/1.1 200 OK\r\nServer: annal\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
         "X-Accel-Buffering: no\r\nConnection: close\r\n\r\n";
}

}  // namespace

bool FeedPool::start(std::shared_ptr<FeedSource> source, FeedWrite write) {
  assert(source && source->subscription);
  std::lock_guard lock(mutex_);
  reap();
  if (stopped_ || feeds_.size() >= feeds_max_) return false;
  auto feed = std::make_unique<Feed>();
  feed->source = std::move(source);
  Feed& running = *feed;
  feed->thread = std::thread([this, &running, write = std::move(write)] {
    run(running, write);
    running.done.store(true, std::memory_order_release);
  });
  feeds_.push_back(std::move(feed));
  return true;
}

void FeedPool::stop() {
  std::list<std::unique_ptr<Feed>> feeds;
  {
    std::lock_guard lock(mutex_);
    stopped_ = true;
    feeds.swap(feeds_);
  }
  for (const auto& feed : feeds) {
    feed->stop.store(true, std::memory_order_release);
    feed->source->subscription->wake();
  }
  for (const auto& feed : feeds) feed->thread.join();
}

std::size_t FeedPool::running() {
  std::lock_guard lock(mutex_);
  reap();
  return feeds_.size();
}

void FeedPool::reap() {
  std::erase_if(feeds_, [](const std::unique_ptr<Feed>& feed) {
    if (!feed->done.load(std::memory_order_acquire)) return false;
    feed->thread.join();  // it has returned from run(): at most a moment
    return true;
  });
}

void FeedPool::run(Feed& feed, const FeedWrite& write) const {
  engine::Subscription& subscription = *feed.source->subscription;
  const std::optional<std::string>& only = feed.source->stream;
  if (!write(feed_head())) return;
  std::string chunk;
  Clock::time_point last_write = Clock::now();
  while (!feed.stop.load(std::memory_order_acquire)) {
    // While events come at once they are gathered into one write; otherwise wait for the next,
    // up to the heartbeat.
    auto event = subscription.next(chunk.empty() ? last_write + heartbeat_ : Clock::now());
    std::optional<Status> ended;
    if (event.ok()) {
      const engine::EventView& view = event.value();
      if (!only || view.header.stream_name == *only) {
        chunk += "id: " + std::to_string(view.header.sequence) + "\ndata: " + format_event(view, true) + "\n\n";
      }
      const bool heartbeat_due = Clock::now() >= last_write + heartbeat_;
      if (chunk.size() < kChunkBytes && (!chunk.empty() || !heartbeat_due)) continue;
    } else if (event.code() != ErrorCode::timed_out) {
      ended = event.status();
    }
    if (chunk.empty() && !ended) {
      if (Clock::now() < last_write + heartbeat_) continue;  // woken early: by stop(), or nothing
      chunk = ": heartbeat\n\n";
    }
    if (ended) {
      // The engine closed, failed, or the position was removed: the client is told, and may
      // reconnect with its Last-Event-ID.
      chunk += "event: error\ndata: {\"error\":\"feed_ended\",\"detail\":" + json_string(ended->to_string()) + "}\n\n";
    }
    if (!write(std::move(chunk))) return;  // the client is gone, or stopped reading
    chunk.clear();
    last_write = Clock::now();
    if (ended) return;
  }
}

}  // namespace annal::server
