#include "annal/rabbitmq/rabbit_export.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <stdexcept>
#include <utility>

#include "connection.h"
#include "stream_tail.h"

namespace annal::rabbitmq {
namespace {

constexpr amqp_channel_t kPublishChannel = 1;
// Messages published in one go before confirms are read again: the server's acks must not wait
// behind a long burst in its socket.
constexpr std::size_t kPublishBurst = 256;
// How long run() sleeps in poll when nothing happens: AMQP heartbeats are sent from inside
// rabbitmq-c's calls, so it must call one well within the heartbeat.
constexpr std::chrono::milliseconds kIdlePoll{1'000};
// One attempt to connect (TCP and login); retried with backoff until start_timeout at start.
constexpr std::chrono::milliseconds kConnectTimeout{5'000};
// How long closing waits for the confirms of what is already published.
constexpr std::chrono::milliseconds kCloseWait{5'000};
constexpr std::chrono::milliseconds kBackoffFirst{100};
// How much longer than kCloseWait stopping lets run() finish before it shuts the socket down: only
// a send rabbitmq-c keeps retrying (a publish blocked by a resource alarm, a server that stopped
// reading) holds run() that long, and shutdown(2) makes that send fail.
constexpr std::chrono::milliseconds kStopGrace{5'000};
// The longest a reconnection's attempt is given, however often attempts ran out of time.
constexpr std::chrono::milliseconds kAttemptTimeMax{std::chrono::hours(24)};
// A send that has waited this long shows in health(): RabbitMQ reads no more of the socket (a
// resource alarm met while the message was larger than the socket's buffers), and its
// connection.blocked cannot be read until the send ends.
constexpr std::chrono::seconds kSendHeldUp{5};
// AMQP's short strings (queue names) hold 255 bytes at most.
constexpr std::size_t kQueueNameMax = 255;

// The fence's queue name: the stream's length first, so that no two (stream, source) pairs give
// the same name ("a.b" + "c" and "a" + "b.c" do not).
std::string fence_name(const std::string& stream, const std::string& source) {
  return "annal.export." + std::to_string(stream.size()) + "." + stream + "." + source;
}

std::chrono::milliseconds until(std::chrono::steady_clock::time_point deadline) {
  return std::max(std::chrono::milliseconds(0),
                  std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()));
}

}  // namespace

RabbitExport::RabbitExport(RabbitExportOptions options)
    : options_(std::move(options)), wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

RabbitExport::~RabbitExport() {
  stop_and_join();
  drop_connection();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void RabbitExport::stop_and_join() {
  if (!thread_.joinable()) return;
  stop_running();
  {
    std::unique_lock lock(mutex_);
    if (!changed_.wait_for(lock, kCloseWait + kStopGrace, [&] { return !running_; }) && socket_fd_ >= 0) {
      // Under mutex_: run() clears socket_fd_ under it before the socket is closed, so this is
      // never another file that took the number.
      (void)::shutdown(socket_fd_, SHUT_RDWR);
    }
  }
  thread_.join();
}

void RabbitExport::drop_connection() {
  if (!connection_) return;
  connection_->close();  // while socket_fd_ is set: stop_and_join can cut a handshake that hangs
  {
    std::lock_guard lock(mutex_);
    socket_fd_ = -1;
  }
  connection_.reset();
}

bool RabbitExport::stopping() const {
  std::lock_guard lock(mutex_);
  return stopping_;
}

std::uint64_t RabbitExport::delivered() const {
  std::lock_guard lock(mutex_);
  return delivered_;
}

bool RabbitExport::wait_delivered(std::uint64_t sequence, std::chrono::steady_clock::time_point deadline) const {
  std::unique_lock lock(mutex_);
  changed_.wait_until(lock, deadline, [&] { return delivered_ >= sequence || stopping_ || !fatal_.ok(); });
  return delivered_ >= sequence;
}

Status RabbitExport::health() const {
  std::lock_guard lock(mutex_);
  if (!fatal_.ok()) return fatal_;
  if (const auto waited = std::chrono::steady_clock::now() - writing_since_;
      writing_stream_ != 0 && waited >= kSendHeldUp) {
    return Status(ErrorCode::io_error,
                  "publishing to stream " + options_.stream + ": a message's send has waited " +
                      std::to_string(std::chrono::duration_cast<std::chrono::seconds>(waited).count()) +
                      " s: RabbitMQ reads no more of it (a resource alarm blocks the connection, or the server is "
                      "overloaded)");
  }
  return retrying_;
}

Status RabbitExport::failure() const {
  std::lock_guard lock(mutex_);
  return fatal_;
}

std::uint64_t RabbitExport::reconnections() const {
  std::lock_guard lock(mutex_);
  return reconnections_;
}

Result<std::optional<std::uint64_t>> RabbitExport::resume_after() {
  if (options_.source.empty() || options_.stream.empty()) {
    return Status(ErrorCode::invalid_argument,
                  "RabbitMQ export: a stream and a source name are needed (RabbitExportOptions::stream, ::source)");
  }
  if (options_.heartbeat.count() <= 0) {
    return Status(ErrorCode::invalid_argument,
                  "RabbitMQ export: heartbeat must be at least 1 s (0 would turn off the detection of a silent server)");
  }
  if (options_.start_timeout.count() <= 0 || options_.reconnect_delay_max.count() <= 0) {
    return Status(ErrorCode::invalid_argument,
                  "RabbitMQ export: start_timeout and reconnect_delay_max must be at least 1 ms (0 would reconnect "
                  "without a pause, or give up before the first attempt)");
  }
  if (options_.unconfirmed_max == 0) {
    return Status(ErrorCode::invalid_argument,
                  "RabbitMQ export: unconfirmed_max must be at least 1 (a window of no messages never has room)");
  }
  if (options_.stream.size() > kQueueNameMax) {
    return Status(ErrorCode::invalid_argument, "RabbitMQ export: the stream name is " + std::to_string(options_.stream.size()) +
                                                   " bytes; RabbitMQ allows " + std::to_string(kQueueNameMax));
  }
  if (const std::string fence = fence_name(options_.stream, options_.source); fence.size() > kQueueNameMax) {
    return Status(ErrorCode::invalid_argument,
                  "RabbitMQ export: the stream and source names are too long together: the fence queue " + fence.substr(0, 40) +
                      "... would be " + std::to_string(fence.size()) + " bytes, RabbitMQ allows " +
                      std::to_string(kQueueNameMax) + " (shorten the source name)");
  }
  if (wake_fd_ < 0) return Status(ErrorCode::io_error, "RabbitMQ export: no eventfd for the exporter's thread");
  // Added again (after an engine closed, or to another engine): the run before is stopped first,
  // and nothing of it carries over.
  stop_and_join();
  drop_connection();
  check_sequence_ = 0;
  resume_requires_ = 0;
  {
    std::lock_guard lock(mutex_);
    pending_.clear();
    sent_ = 0;
    pending_bytes_ = 0;
    delivered_ = 0;
    last_confirmed_ = 0;
    applied_ = 0;
    reconnections_ = 0;
    halted_ = false;
    stopping_ = false;
    blocked_ = false;
    retrying_ = Status();
    fatal_ = Status();
  }
  // The server may be starting or restarting: retried until start_timeout, then its last error.
  const auto deadline = std::chrono::steady_clock::now() + options_.start_timeout;
  Status last;
  for (std::chrono::milliseconds backoff = kBackoffFirst;;) {
    auto resumed = connect(deadline, /*again=*/false);
    if (resumed.ok()) {
      {
        std::lock_guard lock(mutex_);
        running_ = true;
      }
      thread_ = std::thread([this] { run(); });
      // Replayed from the stream's last message of this source, which the store's event of that
      // sequence must be (a store restored from a backup has another there): checked by apply.
      check_sequence_ = resumed.value().sequence;
      check_fingerprint_ = resumed.value().fingerprint;
      resume_requires_ = check_sequence_;
      return std::optional<std::uint64_t>(check_sequence_ == 0 ? 0 : check_sequence_ - 1);
    }
    // An attempt cut short by the deadline says less than the error before it (the fence held,
    // the connection refused): that one is kept.
    if (last.ok() || resumed.status().code() != ErrorCode::timed_out) last = resumed.status();
    if (!is_retryable(last) || until(deadline) <= backoff) break;
    std::unique_lock lock(mutex_);
    if (changed_.wait_for(lock, backoff, [&] { return stopping_; })) break;
    backoff = std::min(backoff * 2, options_.reconnect_delay_max);
  }
  return Status(last.code(), last.message() + " (RabbitMQ export of stream " + options_.stream + " as source " +
                                 options_.source +
                                 (is_retryable(last) ? ", tried for " + std::to_string(options_.start_timeout.count()) + " ms)"
                                                     : ")"));
}

std::uint64_t RabbitExport::resume_requires() const { return resume_requires_; }

Result<Tail> RabbitExport::connect(std::chrono::steady_clock::time_point deadline, bool again) {
  auto address = parse_url(options_.url);
  if (!address.ok()) return address.status();
  const auto stopped = [&] { return Status(ErrorCode::timed_out, address.value().where() + ": connecting: stopped"); };
  auto opened = Connection::open(address.value(), "annal export " + options_.source,
                                 std::min(kConnectTimeout, std::max(until(deadline), std::chrono::milliseconds(1))),
                                 options_.heartbeat);
  if (!opened.ok()) return opened.status();
  Connection& connection = *opened.value();
  if (stopping()) return stopped();
  // The fence: an older connection of this source (a killed process's, one this exporter lost)
  // holds this queue until RabbitMQ has closed it; only then can nothing more of it be appended.
  if (Status fenced = connection.declare_exclusive(kPublishChannel, fence_name(options_.stream, options_.source));
      !fenced.ok()) {
    if (fenced.code() == ErrorCode::locked) {
      return Status(ErrorCode::locked, fenced.message() + ": another exporter of source " + options_.source +
                                           " is connected, or RabbitMQ has not closed an earlier connection yet");
    }
    return fenced;
  }
  if (stopping()) return stopped();
  // At start the stream is created if absent. On a reconnection it must exist: created again, it
  // would be empty of what RabbitMQ confirmed before.
  if (Status declared = connection.declare_stream(kPublishChannel, options_.stream, /*passive=*/again); !declared.ok()) {
    if (declared.code() == ErrorCode::not_found) {
      // Gone with everything in it: delivered() no longer claims any of it.
      std::lock_guard lock(mutex_);
      delivered_ = 0;
      last_confirmed_ = 0;
      changed_.notify_all();
    }
    return declared;
  }
  // The read-back publishes its marker: a connection RabbitMQ blocks (a resource alarm) is blocked
  // there, and what then times out says so.
  auto tail = read_tail(connection, options_.stream, options_.source, deadline, [this] { return stopping(); });
  if (!tail.ok()) return connection.blocked_or(tail.status());
  const std::uint64_t held = tail.value().sequence;
  if (Status confirming = connection.confirm_select(kPublishChannel); !confirming.ok()) {
    return connection.blocked_or(confirming);
  }
  {
    std::lock_guard lock(mutex_);
    // The stream must hold everything RabbitMQ confirmed. Less (the stream deleted and created
    // again, a node's data lost, retention) means events between are lost there, and no longer
    // in the window to publish again: fatal, and delivered() no longer claims them.
    if (held < last_confirmed_) {
      const std::uint64_t confirmed = last_confirmed_;
      delivered_ = held;
      last_confirmed_ = held;
      changed_.notify_all();
      return connection.error(ErrorCode::corruption, "reading back stream " + options_.stream,
                              "it holds source " + options_.source + "'s events up to sequence " +
                                  std::to_string(held) + " only, but RabbitMQ had confirmed up to sequence " +
                                  std::to_string(confirmed) +
                                  ": the stream lost messages (deleted and created again, a node's data lost, or "
                                  "retention); the export stops, and its next start publishes again from sequence " +
                                  std::to_string(held + 1));
    }
    // More than this exporter ever published (a reconnection: at start, the tail is where it
    // resumes): another writer used the source while this one was disconnected (a restored copy
    // of the store exporting, a forged message). Taken for confirmed, the events it has not
    // published would be dropped from the window, never published.
    const std::uint64_t published = std::max({delivered_, last_confirmed_, applied_,
                                               pending_.empty() ? std::uint64_t{0} : pending_.back().sequence});
    if (again && held > published) {
      return connection.error(ErrorCode::corruption, "reading back stream " + options_.stream,
                              "it holds source " + options_.source + "'s events up to sequence " +
                                  std::to_string(held) + ", past the last this exporter has published (" +
                                  std::to_string(published) +
                                  "): another exporter wrote under the source while this one was disconnected (a "
                                  "copy of the store, a forged message); the export stops, claiming nothing past "
                                  "sequence " + std::to_string(delivered_));
    }
    // The stream holds every event up to the tail (a prefix of what was published): those are
    // confirmed; the rest are published again, in order, on this connection.
    while (!pending_.empty() && pending_.front().sequence <= held) {
      delivered_ = pending_.front().sequence;
      pending_bytes_ -= pending_.front().body.size();
      pending_.pop_front();
    }
    for (Message& message : pending_) {
      message.tag = 0;
      message.confirmed = false;  // a confirm of the old connection's says nothing of this one's
      message.skipped = false;
    }
    sent_ = 0;
    next_tag_ = 1;
    blocked_ = false;
    delivered_ = std::max(delivered_, held);
    last_confirmed_ = std::max(last_confirmed_, held);
    if (pending_.empty() && !halted_) delivered_ = std::max(delivered_, applied_);
    changed_.notify_all();
    socket_fd_ = connection.fd();
    connection_ = std::move(opened).value();
  }
  return tail.value();
}

void RabbitExport::apply(const engine::EventView& event) {
  const engine::EventHeader& h = event.header;
  if (check_sequence_ != 0) {
    check_passed(h.sequence - 1);
    const std::string stream = h.stream_name.empty() ? std::to_string(h.stream_id) : std::string(h.stream_name);
    const std::string id = h.event_id.empty() ? std::string() : engine::format_id(h.event_id);
    const std::string_view body(reinterpret_cast<const char*>(event.payload.data()), event.payload.size());
    // An erased event has nothing left to compare (docs/rabbitmq.md). Nor has one of a stream
    // erased while it was read (with its payload, perhaps without its name, forgotten meanwhile),
    // which would look like another store's event.
    bool erased = h.erased;
    if (!erased) {
      std::lock_guard lock(mutex_);
      erased = erased_.contains(h.stream_id);
    }
    if (!erased && message_fingerprint(stream, h.version, h.type, h.timestamp_ns, id, body) != check_fingerprint_) {
      diverged("the stream's message of that sequence is another event (stream " + stream + " version " +
               std::to_string(h.version) + " here)");
    }
    check_sequence_ = 0;
    return;  // in the stream already, counted as delivered at connect
  }
  // Nothing of an erased event is left to send (its payload, ids and name went with its key):
  // counted as delivered with the batch (end_of_batch), like the engine's own records.
  if (h.erased) return;
  Message message{.sequence = h.sequence,
                  .stream_id = h.stream_id,
                  .version = h.version,
                  .timestamp_ns = h.timestamp_ns,
                  .type = std::string(h.type),
                  .stream = h.stream_name.empty() ? std::to_string(h.stream_id) : std::string(h.stream_name),
                  .id = h.event_id.empty() ? std::string() : engine::format_id(h.event_id),
                  .body = std::string(reinterpret_cast<const char*>(event.payload.data()), event.payload.size())};
  std::unique_lock lock(mutex_);
  for (;;) {
    if (!fatal_.ok()) throw std::runtime_error(fatal_.message());
    // Read before its stream's erasure: dropped, as an event erased (checked again after every
    // wait, which an erasure may come in).
    if (erased_.contains(h.stream_id)) return;
    // Closing: this event and every later one wait for the next run (which starts after the
    // stream's last message of this source), so that none gets ahead of it.
    if (stopping_ || halted_) {
      halted_ = true;
      return;
    }
    const bool room = pending_.size() < options_.unconfirmed_max &&
                      (pending_.empty() || pending_bytes_ + message.body.size() <= options_.unconfirmed_bytes_max);
    if (room) break;
    // Room comes with confirms, which notify; the bound only covers a wake-up lost to a bug.
    changed_.wait_for(lock, std::chrono::milliseconds(100));
  }
  pending_bytes_ += message.body.size();
  pending_.push_back(std::move(message));
  if (idle_) {
    idle_ = false;
    wake();
  }
}

void RabbitExport::end_of_batch(std::uint64_t applied) {
  check_passed(applied);
  std::lock_guard lock(mutex_);
  if (!fatal_.ok()) throw std::runtime_error(fatal_.message());
  erased_.passed(applied);
  if (halted_) return;
  // Every event up to `applied` is queued: once none waits, the sequences after the last event
  // (a new stream's name, say) count as delivered too.
  applied_ = applied;
  if (pending_.empty() && applied > delivered_) {
    delivered_ = applied;
    changed_.notify_all();
  }
}

void RabbitExport::check_passed(std::uint64_t through) {
  if (check_sequence_ != 0 && check_sequence_ <= through) {
    diverged("the stream has a message of that sequence, and this store no event there");
  }
}

void RabbitExport::diverged(const std::string& why) {
  Status error(ErrorCode::invalid_argument,
               "RabbitMQ stream " + options_.stream + " and this store disagree at sequence " +
                   std::to_string(check_sequence_) + " of source " + options_.source + ": " + why +
                   " (the first sequence checked: the two may part earlier). This store is not the one that exported "
                   "there (restored from a backup, or another store "
                   "exports under the same source): nothing more is exported; export this store to a new stream, or "
                   "under a new source name, knowing that its whole history then follows the old one's there, "
                   "which read models take for a second source's events (docs/rabbitmq.md)");
  {
    std::lock_guard lock(mutex_);
    if (fatal_.ok()) fatal_ = error;
    changed_.notify_all();
  }
  throw std::runtime_error(error.message());
}

// The engine ends the run (its close). The erasures it told of go with the run: the next, of this
// store opened again or of another, is told of its own before it starts (add_projection).
void RabbitExport::stop_requested() {
  // In one hold of the lock: an apply() between forgetting the erasures and stopping would queue
  // an erased stream's event, read before its erasure, for a publish after erase_stream returned.
  std::lock_guard lock(mutex_);
  erased_ = {};
  stop_running_locked();
}

// Not the erasures: a start stops the run before it (resume_after) after the engine has told it of
// the erasures of the store it starts on.
void RabbitExport::stop_running() {
  std::lock_guard lock(mutex_);
  stop_running_locked();
}

void RabbitExport::stop_running_locked() {
  stopping_ = true;
  changed_.notify_all();
  wake();
}

// What of the stream waits unpublished is dropped: its copy was made before the erasure. What is
// published already cannot be taken back, but is not published again on a new connection.
void RabbitExport::stream_erased(std::uint64_t stream_id, std::uint64_t erased_at) {
  std::lock_guard lock(mutex_);
  erased_.add(stream_id, erased_at);
  for (std::size_t i = 0; i < pending_.size(); ++i) {
    Message& message = pending_[i];
    if (message.stream_id != stream_id) continue;
    message.erased = true;
    // The body of one sent may be being read by publish_some, outside the lock.
    if (i >= sent_) {
      pending_bytes_ -= message.body.size();
      std::string().swap(message.body);
    }
  }
  // One being written (the server reading slowly, or not at all under an alarm) is cut off:
  // RabbitMQ drops a message whose frames do not all come, and the next connection does not
  // publish it again. Under mutex_, run() clears socket_fd_ before the socket is closed.
  if (writing_stream_ == stream_id && socket_fd_ >= 0) (void)::shutdown(socket_fd_, SHUT_RDWR);
  changed_.notify_all();  // apply() may have room again
}

void RabbitExport::wake() {
  const std::uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof(one));
}

void RabbitExport::run() {
  run_connected();
  std::lock_guard lock(mutex_);
  running_ = false;
  changed_.notify_all();
}

void RabbitExport::run_connected() {
  std::chrono::milliseconds backoff = kBackoffFirst;
  // How long one reconnection may take: start_timeout at first, twice as long after each attempt
  // that ran out of time, so that a read-back that needs longer (a stream grown large, another
  // source's messages far back) finishes at some attempt instead of timing out at every one.
  std::chrono::milliseconds attempt_time = options_.start_timeout;
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      if (stopping_ || !fatal_.ok()) break;
    }
    if (!connection_) {
      auto resumed = connect(std::chrono::steady_clock::now() + attempt_time, /*again=*/true);
      std::unique_lock lock(mutex_);
      if (resumed.ok()) {
        ++reconnections_;
        retrying_ = Status();
        backoff = kBackoffFirst;
        attempt_time = options_.start_timeout;
        continue;
      }
      if (resumed.status().code() == ErrorCode::timed_out) attempt_time = std::min(attempt_time * 2, kAttemptTimeMax);
      if (!is_retryable(resumed.status())) {
        fatal_ = resumed.status();
        changed_.notify_all();
        break;
      }
      retrying_ = Status(resumed.status().code(), resumed.status().message() + "; connecting again in " +
                                                      std::to_string(backoff.count()) + " ms");
      changed_.wait_for(lock, backoff, [&] { return stopping_; });
      backoff = std::min(backoff * 2, options_.reconnect_delay_max);
      continue;
    }
    Status worked = publish_some();
    if (worked.ok()) {
      std::unique_lock lock(mutex_);
      // Nothing left to publish (or RabbitMQ blocks publishing): sleep in poll until a frame or a
      // new message comes.
      const bool nothing = sent_ == pending_.size() || blocked_;
      idle_ = nothing;
      lock.unlock();
      worked = read_frames(nothing ? kIdlePoll : std::chrono::milliseconds(0));
      lock.lock();
      idle_ = false;
    }
    if (!worked.ok()) {
      drop_connection();
      std::lock_guard lock(mutex_);
      if (!is_retryable(worked)) {
        fatal_ = worked;
        changed_.notify_all();
        break;
      }
      retrying_ = Status(worked.code(), worked.message() + "; connecting again");
    }
  }
  // Closing: what is published is waited for a while, so that the next run reads it back rather
  // than publishing it again; what was never published is the next run's.
  const auto deadline = std::chrono::steady_clock::now() + kCloseWait;
  while (connection_ && std::chrono::steady_clock::now() < deadline) {
    {
      std::lock_guard lock(mutex_);
      if (sent_ == 0 || !fatal_.ok()) break;
    }
    if (!read_frames(std::min(until(deadline), std::chrono::milliseconds(100))).ok()) break;
  }
  drop_connection();
}

Status RabbitExport::publish_some() {
  for (std::size_t burst = 0; burst < kPublishBurst; ++burst) {
    Message* message = nullptr;
    std::uint64_t delivered = 0;
    {
      std::lock_guard lock(mutex_);
      if (sent_ == pending_.size() || blocked_) return {};
      // Only this thread removes messages, and a deque's push_back keeps pointers and references
      // to its elements valid (not its iterators): this pointer stays good, outside the lock,
      // while apply() appends. apply() never writes an element it has queued.
      message = &pending_[sent_];
      ++sent_;
      if (message->erased) {
        // Passed over, confirmed as it is, with the last tag given so that tags keep rising.
        message->tag = next_tag_ - 1;
        message->confirmed = true;
        message->skipped = true;
        pop_confirmed_locked();
        continue;
      }
      message->tag = next_tag_++;
      delivered = delivered_;
      writing_stream_ = message->stream_id;
      writing_since_ = std::chrono::steady_clock::now();
    }
    Headers headers;
    headers.number(kSequenceHeader, static_cast<std::int64_t>(message->sequence));
    headers.number(kVersionHeader, static_cast<std::int64_t>(message->version));
    headers.text(kTypeHeader, message->type);
    headers.number(kTimestampHeader, static_cast<std::int64_t>(message->timestamp_ns));
    if (!message->id.empty()) headers.text(kIdHeader, message->id);
    headers.text(kSourceHeader, options_.source);
    headers.text(kStreamHeader, message->stream);
    headers.number(kDeliveredHeader, static_cast<std::int64_t>(delivered));
    const amqp_table_t table = headers.table();
    Status sent = connection_->publish(kPublishChannel, options_.stream, table, message->body);
    {
      std::lock_guard lock(mutex_);
      writing_stream_ = 0;
    }
    if (!sent.ok()) return sent;
  }
  return {};
}

Status RabbitExport::read_frames(std::chrono::milliseconds wait) {
  if (!connection_->buffered() && wait.count() > 0) {
    pollfd ready[2] = {{connection_->fd(), POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    if (::poll(ready, 2, static_cast<int>(wait.count())) > 0 && ready[1].revents != 0) {
      std::uint64_t count = 0;
      (void)!::read(wake_fd_, &count, sizeof(count));
    }
  }
  Status status = read_some_frames();
  // The frames read are done with: rabbitmq-c keeps their memory until told (for the whole
  // connection otherwise).
  connection_->release_buffers();
  return status;
}

Status RabbitExport::read_some_frames() {
  // Every frame there is now; the first read also services heartbeats.
  for (;;) {
    auto next = connection_->next_frame(std::chrono::milliseconds(0));
    if (!next.ok()) return next.status();
    if (!next.value()) return {};
    const amqp_frame_t& frame = *next.value();
    if (frame.frame_type != AMQP_FRAME_METHOD) continue;
    if (frame.channel == 0 && frame.payload.method.id == AMQP_CONNECTION_BLOCKED_METHOD) {
      const auto* blocked = static_cast<const amqp_connection_blocked_t*>(frame.payload.method.decoded);
      set_blocked(true, std::string(static_cast<const char*>(blocked->reason.bytes), blocked->reason.len));
      continue;
    }
    if (frame.channel == 0 && frame.payload.method.id == AMQP_CONNECTION_UNBLOCKED_METHOD) {
      set_blocked(false, "");
      continue;
    }
    if (frame.channel != kPublishChannel) continue;
    switch (frame.payload.method.id) {
      case AMQP_BASIC_ACK_METHOD: {
        const auto* ack = static_cast<const amqp_basic_ack_t*>(frame.payload.method.decoded);
        std::lock_guard lock(mutex_);
        confirm_locked(ack->delivery_tag, ack->multiple != 0);
        if (!blocked_) retrying_ = Status();
        break;
      }
      case AMQP_BASIC_NACK_METHOD: {
        // RabbitMQ could not write it (an internal error). Whether it or anything after it landed
        // is unknown here: a new connection reads the stream back and publishes what is missing.
        const auto* nack = static_cast<const amqp_basic_nack_t*>(frame.payload.method.decoded);
        return connection_->error(ErrorCode::io_error, "publishing to stream " + options_.stream,
                                  "the server refused (nack) delivery tag " + std::to_string(nack->delivery_tag) +
                                      "; reading the stream back on a new connection");
      }
      case AMQP_BASIC_RETURN_METHOD: {
        // Unroutable: the stream was deleted. Its confirm would follow, for a message dropped.
        const auto* returned = static_cast<const amqp_basic_return_t*>(frame.payload.method.decoded);
        return connection_->error(ErrorCode::invalid_argument, "publishing to stream " + options_.stream,
                                  "returned as unroutable (" +
                                      std::string(static_cast<const char*>(returned->reply_text.bytes),
                                                  returned->reply_text.len) +
                                      "): the stream no longer exists; the next start exports everything again"
                                      " into a new one");
      }
      case AMQP_CHANNEL_CLOSE_METHOD: {
        const auto* close = static_cast<const amqp_channel_close_t*>(frame.payload.method.decoded);
        const std::string why(static_cast<const char*>(close->reply_text.bytes), close->reply_text.len);
        amqp_channel_close_ok_t ok{};
        (void)amqp_send_method(connection_->state(), kPublishChannel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
        amqp_rpc_reply_t reply{};
        reply.reply_type = AMQP_RESPONSE_SERVER_EXCEPTION;
        reply.reply.id = AMQP_CHANNEL_CLOSE_METHOD;
        reply.reply.decoded = const_cast<void*>(frame.payload.method.decoded);
        return connection_->reply_error("publishing to stream " + options_.stream, reply);
      }
      default: break;
    }
  }
}

void RabbitExport::set_blocked(bool blocked, const std::string& reason) {
  std::lock_guard lock(mutex_);
  blocked_ = blocked;
  retrying_ = blocked ? connection_->error(ErrorCode::io_error, "publishing to stream " + options_.stream,
                                           "RabbitMQ blocked the connection: " + reason)
                      : Status();
}

void RabbitExport::confirm_locked(std::uint64_t tag, bool multiple) {
  // The sent part's tags rise (a message skipped repeats the one before), so the message of this
  // tag is found by a binary search; none is a tag not of this connection's.
  const auto sent = pending_.begin() + static_cast<std::ptrdiff_t>(sent_);
  const auto at = std::lower_bound(pending_.begin(), sent, tag,
                                   [](const Message& message, std::uint64_t wanted) { return message.tag < wanted; });
  if (tag == 0 || at == sent || at->tag != tag || at->skipped) return;
  for (auto message = multiple ? pending_.begin() : at; message <= at; ++message) message->confirmed = true;
  pop_confirmed_locked();
}

void RabbitExport::pop_confirmed_locked() {
  while (!pending_.empty() && pending_.front().confirmed) {
    delivered_ = pending_.front().sequence;
    // One skipped is not in the stream: a read-back may end before it.
    if (!pending_.front().skipped) last_confirmed_ = delivered_;
    pending_bytes_ -= pending_.front().body.size();
    pending_.pop_front();
    --sent_;
  }
  if (pending_.empty() && !halted_) delivered_ = std::max(delivered_, applied_);
  changed_.notify_all();  // delivered_ may have moved; apply() may have room again
}

}  // namespace annal::rabbitmq
