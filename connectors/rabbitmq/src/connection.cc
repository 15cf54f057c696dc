#include "connection.h"

#include <amqp_tcp_socket.h>

#include <algorithm>
#include <utility>

namespace annal::rabbitmq {
namespace {

timeval timeval_of(std::chrono::milliseconds wait) {
  const auto clamped = std::max(wait, std::chrono::milliseconds(0));
  return timeval{.tv_sec = static_cast<time_t>(clamped.count() / 1000),
                 .tv_usec = static_cast<suseconds_t>((clamped.count() % 1000) * 1000)};
}

std::string text_of(amqp_bytes_t bytes) { return {static_cast<const char*>(bytes.bytes), bytes.len}; }

// What a library status means for the caller: a socket that failed or timed out is retried.
ErrorCode code_of_library(int status) {
  return status == AMQP_STATUS_TIMEOUT || status == AMQP_STATUS_HEARTBEAT_TIMEOUT ? ErrorCode::timed_out
                                                                                    : ErrorCode::io_error;
}

// The ErrorCode of a server's reply code (AMQP 0-9-1's constants): the one mapping for declare,
// consume and publish. NOT_FOUND is retried: the stream exists (it was declared) but its node is
// down or still recovering it (after a crash), or a publish met it so; reconnecting and reading
// the stream back is exactly-once safe. A stream that really is gone is told apart by the passive
// declare of a reconnection (declare_stream), which is fatal.
ErrorCode code_of_reply(int reply_code) {
  switch (reply_code) {
    case AMQP_RESOURCE_LOCKED: return ErrorCode::locked;
    case AMQP_CONNECTION_FORCED:      // the server shutting down or an operator closing us
    case AMQP_INTERNAL_ERROR:
    case AMQP_RESOURCE_ERROR:         // out of a resource for now (memory, channels)
    case AMQP_FRAME_ERROR:
    case AMQP_NOT_FOUND:
      return ErrorCode::io_error;
    default: return ErrorCode::invalid_argument;  // access refused, precondition failed ...
  }
}

}  // namespace

std::string Address::where() const { return "RabbitMQ at " + host + ":" + std::to_string(port) + ", vhost " + vhost; }

Result<Address> parse_url(const std::string& url) {
  std::string copy = url;  // amqp_parse_url writes into it
  amqp_connection_info info{};
  amqp_default_connection_info(&info);
  if (amqp_parse_url(copy.data(), &info) != AMQP_STATUS_OK || info.host == nullptr || *info.host == '\0') {
    // The URL may hold a password: only its scheme is repeated.
    return Status(ErrorCode::invalid_argument,
                  "RabbitMQ URL " + url.substr(0, url.find("://") == std::string::npos ? 0 : url.find("://") + 3) +
                      "...: not an AMQP URL; write amqp://user:password@host:port/vhost");
  }
  if (info.ssl != 0) {
    return Status(ErrorCode::invalid_argument, "RabbitMQ URL amqps://" + std::string(info.host) +
                                                   ": TLS is not supported by this build; use amqp://");
  }
  return Address{.host = info.host, .port = info.port, .vhost = info.vhost, .user = info.user, .password = info.password};
}

std::optional<std::string_view> text_header(const amqp_table_t& headers, std::string_view name) {
  for (int i = 0; i < headers.num_entries; ++i) {
    const amqp_table_entry_t& entry = headers.entries[i];
    if (std::string_view(static_cast<const char*>(entry.key.bytes), entry.key.len) != name) continue;
    if (entry.value.kind != AMQP_FIELD_KIND_UTF8 && entry.value.kind != AMQP_FIELD_KIND_BYTES) return std::nullopt;
    return std::string_view(static_cast<const char*>(entry.value.value.bytes.bytes), entry.value.value.bytes.len);
  }
  return std::nullopt;
}

bool has_header(const amqp_table_t& headers, std::string_view name) {
  for (int i = 0; i < headers.num_entries; ++i) {
    const amqp_table_entry_t& entry = headers.entries[i];
    if (std::string_view(static_cast<const char*>(entry.key.bytes), entry.key.len) == name) return true;
  }
  return false;
}

std::optional<std::uint64_t> number_header(const amqp_table_t& headers, std::string_view name) {
  for (int i = 0; i < headers.num_entries; ++i) {
    const amqp_table_entry_t& entry = headers.entries[i];
    if (std::string_view(static_cast<const char*>(entry.key.bytes), entry.key.len) != name) continue;
    const amqp_field_value_t& v = entry.value;
    std::int64_t n = -1;
    switch (v.kind) {
      case AMQP_FIELD_KIND_I8: n = v.value.i8; break;
      case AMQP_FIELD_KIND_U8: n = v.value.u8; break;
      case AMQP_FIELD_KIND_I16: n = v.value.i16; break;
      case AMQP_FIELD_KIND_U16: n = v.value.u16; break;
      case AMQP_FIELD_KIND_I32: n = v.value.i32; break;
      case AMQP_FIELD_KIND_U32: n = v.value.u32; break;
      case AMQP_FIELD_KIND_I64: n = v.value.i64; break;
      case AMQP_FIELD_KIND_U64: return v.value.u64;
      case AMQP_FIELD_KIND_TIMESTAMP: return v.value.u64;
      default: return std::nullopt;
    }
    if (n < 0) return std::nullopt;
    return static_cast<std::uint64_t>(n);
  }
  return std::nullopt;
}

const amqp_table_t& Delivery::headers() const {
  static const amqp_table_t kNone{0, nullptr};
  return (envelope_.message.properties._flags & AMQP_BASIC_HEADERS_FLAG) != 0 ? envelope_.message.properties.headers : kNone;
}

Result<std::unique_ptr<Connection>> Connection::open(const Address& address, const std::string& name,
                                                     std::chrono::milliseconds timeout, std::chrono::seconds heartbeat) {
  amqp_connection_state_t state = amqp_new_connection();
  if (state == nullptr) return Status(ErrorCode::io_error, address.where() + ": out of memory for a connection");
  std::unique_ptr<Connection> connection(new Connection(address, state));
  amqp_socket_t* socket = amqp_tcp_socket_new(state);  // owned by the connection state
  if (socket == nullptr) return connection->error(ErrorCode::io_error, "connecting", "no socket");
  timeval limit = timeval_of(timeout);
  if (const int opened = amqp_socket_open_noblock(socket, address.host.c_str(), address.port, &limit); opened != AMQP_STATUS_OK) {
    connection->closed_ = true;
    return connection->error(code_of_library(opened), "cannot connect",
                             std::string(amqp_error_string2(opened)) + " (is RabbitMQ running and listening there?)");
  }
  (void)amqp_set_handshake_timeout(state, &limit);
  (void)amqp_set_rpc_timeout(state, &limit);
  // connection.blocked: RabbitMQ tells this client when a resource alarm blocks its publishes
  // (rabbitmq-c merges this with its own capabilities).
  // consumer_cancel_notify: RabbitMQ tells a consumer that its queue was deleted (basic.cancel);
  // without it the consumer just receives nothing more, for ever.
  amqp_table_entry_t capability[2] = {{.key = amqp_cstring_bytes("connection.blocked"), .value = {}},
                                      {.key = amqp_cstring_bytes("consumer_cancel_notify"), .value = {}}};
  for (amqp_table_entry_t& entry : capability) {
    entry.value.kind = AMQP_FIELD_KIND_BOOLEAN;
    entry.value.value.boolean = 1;
  }
  amqp_table_entry_t property[2] = {{.key = amqp_cstring_bytes("connection_name"), .value = {}},
                                    {.key = amqp_cstring_bytes("capabilities"), .value = {}}};
  property[0].value.kind = AMQP_FIELD_KIND_UTF8;
  property[0].value.value.bytes = amqp_cstring_bytes(name.c_str());
  property[1].value.kind = AMQP_FIELD_KIND_TABLE;
  property[1].value.value.table = amqp_table_t{2, capability};
  const amqp_table_t properties{2, property};
  const amqp_rpc_reply_t login =
      amqp_login_with_properties(state, address.vhost.c_str(), 0, AMQP_DEFAULT_FRAME_SIZE, static_cast<int>(heartbeat.count()),
                                 &properties, AMQP_SASL_METHOD_PLAIN, address.user.c_str(), address.password.c_str());
  if (login.reply_type != AMQP_RESPONSE_NORMAL) {
    Status failed = connection->reply_error("logging in as " + address.user, login);
    // RabbitMQ closes the socket on a refused login, often before its connection.close arrives.
    if (failed.code() == ErrorCode::io_error && login.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
        login.library_error == AMQP_STATUS_CONNECTION_CLOSED) {
      failed = connection->error(ErrorCode::invalid_argument, "logging in as " + address.user,
                                 "refused (wrong user or password, or no access to the vhost)");
    }
    connection->closed_ = true;
    return failed;
  }
  if (Status opened = connection->open_channel(1); !opened.ok()) return opened;
  return connection;
}

Connection::~Connection() {
  close();
  amqp_destroy_connection(state_);
}

void Connection::close() {
  if (!closed_) (void)amqp_connection_close(state_, AMQP_REPLY_SUCCESS);
  closed_ = true;
}

Status Connection::error(ErrorCode code, const std::string& what, const std::string& why) const {
  return Status(code, address_.where() + ": " + what + ": " + why);
}

Status Connection::reply_error(const std::string& what, const amqp_rpc_reply_t& reply) const {
  switch (reply.reply_type) {
    case AMQP_RESPONSE_NORMAL: return {};
    case AMQP_RESPONSE_NONE: return error(ErrorCode::io_error, what, "no reply");
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      return error(code_of_library(reply.library_error), what, amqp_error_string2(reply.library_error));
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      if (reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        const auto* close = static_cast<const amqp_connection_close_t*>(reply.reply.decoded);
        reply_code_ = close->reply_code;
        return error(code_of_reply(close->reply_code), what, "the server closed the connection: " + text_of(close->reply_text));
      }
      if (reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        const auto* close = static_cast<const amqp_channel_close_t*>(reply.reply.decoded);
        reply_code_ = close->reply_code;
        reply_text_ = text_of(close->reply_text);
        return error(code_of_reply(close->reply_code), what, "the server closed the channel: " + text_of(close->reply_text));
      }
      return error(ErrorCode::io_error, what, "an unexpected reply from the server");
  }
  return error(ErrorCode::io_error, what, "an unknown reply");
}

Status Connection::open_channel(amqp_channel_t channel) {
  (void)amqp_channel_open(state_, channel);
  return reply_error("opening channel " + std::to_string(channel), amqp_get_rpc_reply(state_));
}

Status Connection::close_channel(amqp_channel_t channel) {
  return reply_error("closing channel " + std::to_string(channel), amqp_channel_close(state_, channel, AMQP_REPLY_SUCCESS));
}

Status Connection::declare_stream(amqp_channel_t channel, const std::string& stream, bool passive) {
  amqp_table_entry_t type{.key = amqp_cstring_bytes("x-queue-type"), .value = {}};
  type.value.kind = AMQP_FIELD_KIND_UTF8;
  type.value.value.bytes = amqp_cstring_bytes("stream");
  (void)amqp_queue_declare(state_, channel, amqp_cstring_bytes(stream.c_str()), passive ? 1 : 0, /*durable=*/1,
                           /*exclusive=*/0, /*auto_delete=*/0, amqp_table_t{1, &type});
  reply_code_ = 0;
  reply_text_.clear();
  Status declared = reply_error("declaring stream " + stream, amqp_get_rpc_reply(state_));
  if (reply_code_ == AMQP_PRECONDITION_FAILED) {
    return Status(declared.code(), declared.message() + " (a queue of that name exists that is not a stream, or was declared"
                                                        " with other arguments: set retention by policy instead)");
  }
  // RabbitMQ answers "NOT_FOUND - no queue 'x' ..." for a queue that does not exist, and
  // "NOT_FOUND - home node ... is down or inaccessible" for one whose node is not up (retried).
  if (passive && reply_code_ == AMQP_NOT_FOUND && reply_text_.find("no queue") != std::string::npos) {
    return Status(ErrorCode::not_found, declared.message() + " (the stream no longer exists)");
  }
  return declared;
}

Status Connection::declare_exclusive(amqp_channel_t channel, const std::string& name) {
  (void)amqp_queue_declare(state_, channel, amqp_cstring_bytes(name.c_str()), 0, 0, /*exclusive=*/1, /*auto_delete=*/1,
                           amqp_empty_table);
  return reply_error("declaring the exclusive queue " + name, amqp_get_rpc_reply(state_));
}

Status Connection::confirm_select(amqp_channel_t channel) {
  (void)amqp_confirm_select(state_, channel);
  return reply_error("turning on publisher confirms", amqp_get_rpc_reply(state_));
}

Status Connection::consume(amqp_channel_t channel, const std::string& stream, std::variant<std::string, std::uint64_t> offset,
                           std::uint16_t prefetch, const std::string& tag) {
  (void)amqp_basic_qos(state_, channel, 0, prefetch, 0);
  if (Status qos = reply_error("setting the prefetch", amqp_get_rpc_reply(state_)); !qos.ok()) return qos;
  amqp_table_entry_t from{.key = amqp_cstring_bytes(kOffsetHeader), .value = {}};
  if (const auto* text = std::get_if<std::string>(&offset)) {
    from.value.kind = AMQP_FIELD_KIND_UTF8;
    from.value.value.bytes = amqp_cstring_bytes(text->c_str());
  } else {
    from.value.kind = AMQP_FIELD_KIND_I64;
    from.value.value.i64 = static_cast<std::int64_t>(std::get<std::uint64_t>(offset));
  }
  (void)amqp_basic_consume(state_, channel, amqp_cstring_bytes(stream.c_str()), amqp_cstring_bytes(tag.c_str()), 0,
                           /*no_ack=*/0, 0,
                           amqp_table_t{1, &from});
  return reply_error("reading stream " + stream, amqp_get_rpc_reply(state_));
}

Status Connection::ack(amqp_channel_t channel, std::uint64_t tag) {
  const int acked = amqp_basic_ack(state_, channel, tag, /*multiple=*/1);
  if (acked == AMQP_STATUS_OK) return {};
  closed_ = true;
  return error(code_of_library(acked), "acknowledging deliveries", amqp_error_string2(acked));
}

Status Connection::publish(amqp_channel_t channel, const std::string& stream, const amqp_table_t& headers,
                           std::string_view body) {
  amqp_basic_properties_t properties{};
  properties._flags = AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
  properties.headers = headers;
  properties.delivery_mode = AMQP_DELIVERY_PERSISTENT;
  const amqp_bytes_t bytes{body.size(), const_cast<char*>(body.data())};
  const int sent = amqp_basic_publish(state_, channel, amqp_empty_bytes, amqp_cstring_bytes(stream.c_str()),
                                      /*mandatory=*/1, 0, &properties, bytes);
  if (sent == AMQP_STATUS_OK) return {};
  closed_ = true;
  return error(code_of_library(sent), "publishing to stream " + stream, amqp_error_string2(sent));
}

Result<std::optional<amqp_frame_t>> Connection::next_frame(std::chrono::milliseconds wait) {
  amqp_frame_t frame{};
  const timeval limit = timeval_of(wait);
  const int got = amqp_simple_wait_frame_noblock(state_, &frame, &limit);
  if (got == AMQP_STATUS_TIMEOUT) return std::optional<amqp_frame_t>();
  if (got != AMQP_STATUS_OK) {
    closed_ = true;
    return error(code_of_library(got), "reading from the server", amqp_error_string2(got));
  }
  if (frame.frame_type == AMQP_FRAME_METHOD && frame.payload.method.id == AMQP_CONNECTION_CLOSE_METHOD) {
    const auto* close = static_cast<const amqp_connection_close_t*>(frame.payload.method.decoded);
    Status closed = error(code_of_reply(close->reply_code), "connection", "closed by the server: " + text_of(close->reply_text));
    amqp_connection_close_ok_t ok{};
    (void)amqp_send_method(state_, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
    closed_ = true;
    return closed;
  }
  if (frame.frame_type == AMQP_FRAME_METHOD && frame.channel == 0) {
    if (frame.payload.method.id == AMQP_CONNECTION_BLOCKED_METHOD) {
      blocked_ = text_of(static_cast<const amqp_connection_blocked_t*>(frame.payload.method.decoded)->reason);
    } else if (frame.payload.method.id == AMQP_CONNECTION_UNBLOCKED_METHOD) {
      blocked_.reset();
    }
  }
  return std::optional<amqp_frame_t>(frame);
}

Status Connection::blocked_or(Status failed) {
  // Frames an RPC read while it waited, for other channels or the connection, wait in rabbitmq-c's
  // queue: read them (nothing more is done on this connection).
  while (!closed_ && amqp_frames_enqueued(state_) != 0) {
    if (!next_frame(std::chrono::milliseconds(0)).ok()) break;
  }
  if (!blocked_) return failed;
  return error(ErrorCode::io_error, "connection",
               "RabbitMQ blocked the connection: " + *blocked_ + " (a resource alarm; retried until it clears)");
}

void Connection::release_buffers() { amqp_maybe_release_buffers(state_); }

Result<std::unique_ptr<Delivery>> Connection::next_delivery(std::chrono::milliseconds wait) {
  amqp_maybe_release_buffers(state_);
  amqp_envelope_t envelope{};
  const timeval limit = timeval_of(wait);
  const amqp_rpc_reply_t consumed = amqp_consume_message(state_, &envelope, &limit, 0);
  if (consumed.reply_type == AMQP_RESPONSE_NORMAL) return std::make_unique<Delivery>(envelope);
  if (consumed.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && consumed.library_error == AMQP_STATUS_TIMEOUT) {
    return std::unique_ptr<Delivery>();
  }
  if (consumed.reply_type != AMQP_RESPONSE_LIBRARY_EXCEPTION || consumed.library_error != AMQP_STATUS_UNEXPECTED_STATE) {
    closed_ = true;
    return reply_error("reading deliveries", consumed);
  }
  // A frame other than a delivery: a channel or connection closed by the server is an error;
  // anything else (a late reply on a channel already closed) is passed over.
  auto frame = next_frame(std::chrono::milliseconds(0));
  if (!frame.ok()) return frame.status();
  if (frame.value() && frame.value()->frame_type == AMQP_FRAME_METHOD &&
      frame.value()->payload.method.id == AMQP_CHANNEL_CLOSE_METHOD) {
    const auto* close = static_cast<const amqp_channel_close_t*>(frame.value()->payload.method.decoded);
    Status closed = error(code_of_reply(close->reply_code), "reading deliveries",
                          "the server closed channel " + std::to_string(frame.value()->channel) + ": " +
                              text_of(close->reply_text));
    amqp_channel_close_ok_t ok{};
    (void)amqp_send_method(state_, frame.value()->channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
    return closed;
  }
  if (frame.value() && frame.value()->frame_type == AMQP_FRAME_METHOD &&
      frame.value()->payload.method.id == AMQP_BASIC_CANCEL_METHOD) {
    // The server ended a consumer: its queue (the stream) was deleted. Nothing more will come.
    const auto* cancel = static_cast<const amqp_basic_cancel_t*>(frame.value()->payload.method.decoded);
    return error(ErrorCode::io_error, "reading deliveries",
                 "the server cancelled consumer " + text_of(cancel->consumer_tag) + " on channel " +
                     std::to_string(frame.value()->channel) + " (the stream was deleted)");
  }
  return std::unique_ptr<Delivery>();
}

void Headers::text(const char* name, std::string_view value) {
  amqp_table_entry_t entry{.key = amqp_cstring_bytes(name), .value = {}};
  entry.value.kind = AMQP_FIELD_KIND_UTF8;
  entry.value.value.bytes = amqp_bytes_t{value.size(), const_cast<char*>(value.data())};
  entries_.push_back(entry);
}

void Headers::number(const char* name, std::int64_t value) {
  amqp_table_entry_t entry{.key = amqp_cstring_bytes(name), .value = {}};
  entry.value.kind = AMQP_FIELD_KIND_I64;
  entry.value.value.i64 = value;
  entries_.push_back(entry);
}

}  // namespace annal::rabbitmq
