// rabbitmq-c's connection owned, and the few AMQP 0-9-1 steps the export and the reader take:
// connect and log in with deadlines, declare the stream, publish with headers, consume a stream
// from an offset, and read frames and deliveries with a bound on every wait. A Connection is not
// thread-safe (nor is rabbitmq-c's): one thread at a time uses it.
#pragma once

#include <amqp.h>
#include <amqp_framing.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "annal/base/status.h"

namespace annal::rabbitmq {

// The message headers, one place for the exporter, the tail reader and the stream reader.
inline constexpr const char* kSequenceHeader = "annal.sequence";
inline constexpr const char* kVersionHeader = "annal.version";
inline constexpr const char* kTypeHeader = "annal.type";
inline constexpr const char* kTimestampHeader = "annal.timestamp_ns";
inline constexpr const char* kIdHeader = "annal.id";
inline constexpr const char* kSourceHeader = "annal.source";
inline constexpr const char* kStreamHeader = "annal.stream";
inline constexpr const char* kDeliveredHeader = "annal.delivered";
// A start marker (docs/rabbitmq.md): not an event, readers skip it.
inline constexpr const char* kMarkerHeader = "annal.marker";
// What RabbitMQ puts on each message a stream delivers: its offset in the stream.
inline constexpr const char* kOffsetHeader = "x-stream-offset";

// Where an amqp:// URL points. The password stays here: messages name host, port and vhost only.
struct Address {
  std::string host;
  int port = 5672;
  std::string vhost = "/";
  std::string user = "guest";
  std::string password = "guest";
  // "RabbitMQ at host:port, vhost /": the prefix of every error about this server.
  [[nodiscard]] std::string where() const;
};
// amqp://user:password@host:port/vhost (rabbitmq-c's parser; amqps is refused: this build opens
// plain TCP only).
Result<Address> parse_url(const std::string& url);

// A header of a message as text or a number; nullopt when absent or of another kind.
std::optional<std::string_view> text_header(const amqp_table_t& headers, std::string_view name);
std::optional<std::uint64_t> number_header(const amqp_table_t& headers, std::string_view name);
bool has_header(const amqp_table_t& headers, std::string_view name);  // of any kind

// A delivery from a stream consumer, with its message; freed with it.
class Delivery {
 public:
  explicit Delivery(amqp_envelope_t envelope) : envelope_(envelope) {}
  ~Delivery() { amqp_destroy_envelope(&envelope_); }
  Delivery(const Delivery&) = delete;
  Delivery& operator=(const Delivery&) = delete;
  [[nodiscard]] amqp_channel_t channel() const { return envelope_.channel; }
  [[nodiscard]] std::uint64_t tag() const { return envelope_.delivery_tag; }
  [[nodiscard]] std::string_view consumer_tag() const {
    return {static_cast<const char*>(envelope_.consumer_tag.bytes), envelope_.consumer_tag.len};
  }
  [[nodiscard]] const amqp_table_t& headers() const;
  [[nodiscard]] std::string_view body() const {
    return {static_cast<const char*>(envelope_.message.body.bytes), envelope_.message.body.len};
  }
  // Its x-stream-offset; nullopt if the server sent none (not a stream).
  [[nodiscard]] std::optional<std::uint64_t> offset() const { return number_header(headers(), kOffsetHeader); }

 private:
  amqp_envelope_t envelope_;
};

class Connection {
 public:
  // TCP connect, log in (heartbeat `heartbeat`), and open channel 1; each step within `timeout`.
  // `name` is the connection's name in RabbitMQ's tools.
  static Result<std::unique_ptr<Connection>> open(const Address& address, const std::string& name,
                                                  std::chrono::milliseconds timeout, std::chrono::seconds heartbeat);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // The connection.close handshake (bounded by the RPC timeout), unless the socket failed; the
  // socket itself stays open until destruction.
  void close();

  [[nodiscard]] const Address& address() const { return address_; }
  // The connection is gone (the socket failed, or the server closed the connection): a new one
  // is needed; a channel's error leaves it usable.
  [[nodiscard]] bool closed() const { return closed_; }
  [[nodiscard]] amqp_connection_state_t state() const { return state_; }
  // The socket, to poll for frames to read.
  [[nodiscard]] int fd() const { return amqp_get_sockfd(state_); }
  // Frames already read from the socket and not yet taken: poll() would not say so.
  [[nodiscard]] bool buffered() const { return amqp_data_in_buffer(state_) != 0 || amqp_frames_enqueued(state_) != 0; }

  Status open_channel(amqp_channel_t channel);
  Status close_channel(amqp_channel_t channel);
  // Declares the stream queue (durable, x-queue-type stream) if absent; refuses one that exists
  // with another type or arguments (RabbitMQ's PRECONDITION_FAILED). `passive`: only checks that
  // it exists; a stream that does not is ErrorCode::not_found (fatal), never created.
  Status declare_stream(amqp_channel_t channel, const std::string& stream, bool passive);
  // An exclusive queue of this connection named `name`: taken while another connection holds it
  // (RESOURCE_LOCKED, ErrorCode::conflict; the channel is then closed by the server).
  Status declare_exclusive(amqp_channel_t channel, const std::string& name);
  Status confirm_select(amqp_channel_t channel);
  // A consumer of `stream` on `channel` from `offset` ("first", "last", "next" as text, or a
  // number), manual acks, `prefetch` unacknowledged at most (streams require a prefetch).
  // `tag` names the consumer in its deliveries.
  Status consume(amqp_channel_t channel, const std::string& stream, std::variant<std::string, std::uint64_t> offset,
                 std::uint16_t prefetch, const std::string& tag);
  // Acknowledges every delivery on `channel` up to `tag`.
  Status ack(amqp_channel_t channel, std::uint64_t tag);
  // Sends one message to `stream` (through the default exchange), mandatory: if no queue of that
  // name exists, RabbitMQ returns it (basic.return) before confirming it, instead of confirming a
  // message it dropped. Its confirm comes later.
  Status publish(amqp_channel_t channel, const std::string& stream, const amqp_table_t& headers, std::string_view body);

  // Frees rabbitmq-c's per-channel memory of the frames decoded so far (it keeps it otherwise for
  // the connection's life): call once no frame read before is used any more.
  void release_buffers();
  // The next frame within `wait`: nullopt when none came. An error when the connection failed.
  Result<std::optional<amqp_frame_t>> next_frame(std::chrono::milliseconds wait);
  // The next delivery within `wait`, from any consumer of this connection (the caller filters by
  // channel); nullopt when none came. A channel or connection closed by the server is an error
  // with its reply text.
  Result<std::unique_ptr<Delivery>> next_delivery(std::chrono::milliseconds wait);

  // Why a call on this connection failed: `failed`, or, when RabbitMQ blocked the connection (a
  // resource alarm: connection.blocked, read by next_frame or queued by an RPC that was waiting for
  // its reply), that, since a blocked connection's server stops reading it and its calls time out.
  [[nodiscard]] Status blocked_or(Status failed);

  // An error about this server: "RabbitMQ at host:port, vhost v: what: why".
  [[nodiscard]] Status error(ErrorCode code, const std::string& what, const std::string& why) const;
  // The error of an RPC's reply (ok if normal); a server's channel.close or connection.close
  // gives its code and text.
  [[nodiscard]] Status reply_error(const std::string& what, const amqp_rpc_reply_t& reply) const;

 private:
  Connection(Address address, amqp_connection_state_t state) : address_(std::move(address)), state_(state) {}
  Address address_;
  amqp_connection_state_t state_;
  mutable int reply_code_ = 0;  // the last server refusal's AMQP reply code (reply_error)
  mutable std::string reply_text_;  // and its text, for a channel closed
  bool closed_ = false;  // the socket failed: no connection.close handshake at destruction
  std::optional<std::string> blocked_;  // connection.blocked's reason, until connection.unblocked
};

// An AMQP table built from (name, value) pairs whose strings it points to: keep them alive while
// the table is used.
class Headers {
 public:
  void text(const char* name, std::string_view value);
  void number(const char* name, std::int64_t value);
  [[nodiscard]] amqp_table_t table() { return {static_cast<int>(entries_.size()), entries_.data()}; }

 private:
  std::vector<amqp_table_entry_t> entries_;
};

// Errors: a server's refusal that retrying cannot change (access refused, arguments that do not
// match) is ErrorCode::invalid_argument; a stream found missing on a reconnection is not_found;
// an exclusive queue held by another connection is ErrorCode::locked; a connection lost, refused
// or timed out, the server shutting down, a nack, or a stream whose node is down (NOT_FOUND from
// the server) is ErrorCode::io_error or timed_out. Only locked, io_error and timed_out are worth
// retrying.
[[nodiscard]] inline bool is_retryable(const Status& status) {
  return status.code() == ErrorCode::io_error || status.code() == ErrorCode::timed_out ||
         status.code() == ErrorCode::locked;
}

}  // namespace annal::rabbitmq
