// The journal exported to a RabbitMQ stream, in order and exactly once: a projection that
// publishes every durable event as one message, with publisher confirms.
//
//   auto exporter = std::make_shared<annal::rabbitmq::RabbitExport>(annal::rabbitmq::RabbitExportOptions{
//       .url = "amqp://annal:secret@rabbit-1:5672/%2f", .stream = "orders", .source = "orders-eu-1"});
//   engine->add_projection("export_rabbitmq", exporter, {});
//
// A message: body = the payload; headers (an AMQP table) annal.sequence, annal.version,
// annal.timestamp_ns, annal.delivered (long integers), annal.type, annal.stream (the stream's
// name, or its id in decimal), annal.source, and annal.id when the event has one (text). The
// stream queue is declared (durable, x-queue-type stream) if it does not exist.
//
// The guarantee: every durable event reaches the stream once, none missing, none twice, in the
// journal's order, through any number of crashes and restarts of this process or of the server.
//
// How (docs/rabbitmq.md argues it). One channel publishes in sequence order, so the stream holds
// a prefix of what a connection published, in order. At start and after every reconnection the
// exporter takes an exclusive queue named after its stream and source (so no older connection of
// the same source can still be appending), then reads the stream back from its end to this
// source's last message: the engine replays from the next sequence, and after a reconnection
// only the unconfirmed events after it are published again. The stream itself is the checkpoint.
//
// Threads: the connection belongs to the exporter's own thread, which publishes, reads confirms
// (also while no events come) and reconnects. apply() copies the event into a bounded window
// (unconfirmed_max messages, unconfirmed_bytes_max bytes) and waits for room when it is full;
// the engine's ring then fills and the projection falls behind and catches up from the journal.
//
// RabbitMQ down, a nack, a stream whose node is not up (NOT_FOUND): the exporter reconnects with
// backoff and reads the stream back, health() says why, appends go on. A resource alarm
// (connection.blocked) pauses publishing, health() says so. Fatal (failure() says it, the
// projection stops at its next event, the next start resumes exactly once): a message returned
// unroutable (it is published mandatory: the stream was deleted), a stream gone or holding less
// than RabbitMQ confirmed when the exporter reconnects, a refusal that retrying cannot change (not
// a stream, access refused).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "annal/base/status.h"
#include "annal/engine/erased_streams.h"
#include "annal/engine/projection.h"

namespace annal::rabbitmq {

class Connection;
struct Tail;

struct RabbitExportOptions {
  std::string url;     // amqp://user:password@host:port/vhost (the vhost URL-encoded: %2f is "/")
  std::string stream;  // the stream queue's name
  // This exporter's name in the messages (annal.source), the same across restarts, and no other
  // store's: it tells this store's messages from others' in a shared stream.
  std::string source;
  std::size_t unconfirmed_max = 2000;                 // messages published or waiting, unconfirmed
  std::size_t unconfirmed_bytes_max = 64u << 20;      // and their payloads' bytes
  // How long the first connection and the read-back may take, at add_projection; and each
  // read-back after a reconnection.
  std::chrono::milliseconds start_timeout{30'000};
  std::chrono::milliseconds reconnect_delay_max{5'000};  // the backoff's ceiling
  // AMQP heartbeats: how soon a silent peer counts as gone. At least 1 s: 0 (which AMQP reads as
  // "none") is refused, as it would leave a dead server undetected.
  std::chrono::seconds heartbeat{10};
};

// Stopping: stop_requested() never blocks; the destructor (and a resume_after that follows an
// earlier run) waits for the exporter's thread, about 5 s for the confirms of what is published,
// and 5 s more at most before it shuts the socket down under a send RabbitMQ does not take.
class RabbitExport final : public engine::Projection {
 public:
  explicit RabbitExport(RabbitExportOptions options);
  ~RabbitExport() override;
  RabbitExport(const RabbitExport&) = delete;
  RabbitExport& operator=(const RabbitExport&) = delete;

  // The sequence up to which RabbitMQ has confirmed every event (0: none yet). Any thread.
  [[nodiscard]] std::uint64_t delivered() const;
  // Waits until delivered() >= sequence; false at the deadline, once stopped, or on a fatal error.
  [[nodiscard]] bool wait_delivered(std::uint64_t sequence, std::chrono::steady_clock::time_point deadline) const;
  // What the exporter is retrying now (the server unreachable: where, why, the next attempt), or
  // the fatal error; ok when nothing. Any thread, never blocks.
  [[nodiscard]] Status health() const override;
  // The fatal error (a nack, the stream gone, access refused), ok while none. Any thread.
  [[nodiscard]] Status failure() const;
  // Times the exporter connected again after losing its connection, in this run.
  [[nodiscard]] std::uint64_t reconnections() const;

  void apply(const engine::EventView& event) override;
  void end_of_batch(std::uint64_t applied) override;
  [[nodiscard]] Result<std::optional<std::uint64_t>> resume_after() override;
  [[nodiscard]] std::uint64_t resume_requires() const override;
  void stop_requested() override;
  void stream_erased(std::uint64_t stream_id, std::uint64_t erased_at) override;

 private:
  // An event copied for publishing, kept until RabbitMQ confirms it.
  struct Message {
    std::uint64_t sequence = 0;
    std::uint64_t stream_id = 0;
    std::uint64_t version = 0;
    std::uint64_t timestamp_ns = 0;
    std::string type;
    std::string stream;
    std::string id;  // "" when the event has none
    std::string body;
    // Its delivery tag on the current connection (0: not sent on it); a message skipped has the
    // tag of the one sent before it, so that tags never fall through the sent part of the window.
    std::uint64_t tag = 0;
    bool confirmed = false;
    bool erased = false;   // its stream was erased: not published (again) on any connection
    bool skipped = false;  // erased, passed over unpublished on this connection: counted as confirmed
  };
  // The exporter's thread: publishes, reads confirms, reconnects; owns connection_.
  void run();
  void run_connected();
  // Connects, fences older connections of this source, declares the stream (`again`: a
  // reconnection, which only checks that it exists) and reads it back; then the events it already
  // holds count as confirmed and the rest are to be published again. A stream holding less than
  // was confirmed is ErrorCode::corruption.
  Result<Tail> connect(std::chrono::steady_clock::time_point deadline, bool again);
  // The store's first event replayed must be the stream's last message of this source, where
  // there is one: else fatal (the store diverged from what it exported).
  void check_passed(std::uint64_t through);
  [[noreturn]] void diverged(const std::string& why);
  Status publish_some();
  Status read_frames(std::chrono::milliseconds wait);
  Status read_some_frames();
  // connection.blocked / unblocked (a resource alarm): publishing pauses meanwhile, health() says why.
  void set_blocked(bool blocked, const std::string& reason);
  // Stops run() and joins it, within kCloseWait + kStopGrace (then the socket is shut down).
  void stop_and_join();
  void stop_running();
  void stop_running_locked();  // under mutex_
  // The connection.close handshake, then the socket closed and forgotten.
  void drop_connection();
  [[nodiscard]] bool stopping() const;
  // Under mutex_: confirms by RabbitMQ of delivery tag `tag` (and all before it if `multiple`).
  void confirm_locked(std::uint64_t tag, bool multiple);
  // Under mutex_: the confirmed messages at the window's front leave it, as delivered.
  void pop_confirmed_locked();
  void wake();

  const RabbitExportOptions options_;
  std::unique_ptr<Connection> connection_;  // run()'s (resume_after's before run() starts)
  std::thread thread_;
  // The projection thread's: the stream's last message of this source at start, until the store's
  // event of that sequence has matched it (0: nothing left to check).
  std::uint64_t check_sequence_ = 0;
  std::uint64_t check_fingerprint_ = 0;
  std::uint64_t resume_requires_ = 0;  // the stream's last message of this source at start
  const int wake_fd_;                       // an eventfd: new messages or stop, for run()'s poll

  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;  // a confirm, stopping_, fatal_, or a message queued
  std::deque<Message> pending_;  // under mutex_: queued, in sequence order; the first sent_ sent
  std::size_t sent_ = 0;                  // under mutex_
  std::size_t pending_bytes_ = 0;         // under mutex_
  std::uint64_t next_tag_ = 1;            // under mutex_: the channel's next delivery tag
  std::uint64_t delivered_ = 0;           // under mutex_
  // Under mutex_: the highest sequence of a message RabbitMQ confirmed or the read-back found; a
  // read-back below it is a loss in the stream.
  std::uint64_t last_confirmed_ = 0;
  std::uint64_t applied_ = 0;             // under mutex_: the last end_of_batch's sequence
  std::uint64_t reconnections_ = 0;       // under mutex_
  engine::ErasedStreams erased_;          // under mutex_
  // Under mutex_: the stream of the message publish_some is writing (0: none), and since when.
  std::uint64_t writing_stream_ = 0;
  std::chrono::steady_clock::time_point writing_since_{};
  bool halted_ = false;                   // under mutex_: an event was not queued (stopping)
  bool stopping_ = false;                 // under mutex_
  bool idle_ = false;                     // under mutex_: run() is in poll and wants a wake
  bool blocked_ = false;                  // under mutex_: RabbitMQ blocks publishing (an alarm)
  bool running_ = false;                  // under mutex_: run() has not returned
  int socket_fd_ = -1;                    // under mutex_: connection_'s socket, for stop_and_join
  Status retrying_;                       // under mutex_
  Status fatal_;                          // under mutex_
};

}  // namespace annal::rabbitmq
