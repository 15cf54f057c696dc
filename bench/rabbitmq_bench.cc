// Events per second exported to a RabbitMQ stream: the journal's export (connectors/rabbitmq: a
// projection feeding a publisher with confirms, the fence and read-back at start) against a plain
// rabbitmq-c publisher loop sending the same messages (256 B body, the same headers) with the
// same confirm window, and no journal. Both go to a real RabbitMQ node this binary starts
// (tests/support/rabbitmq_server.h), a new stream each iteration, and are timed from connecting
// to the last message confirmed. The events are in the journal already: a catch-up figure.
#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <benchmark/benchmark.h>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "annal/engine/engine.h"
#include "annal/rabbitmq/rabbit_export.h"
#include "export_store.h"
#include "rabbitmq_server.h"

namespace {

constexpr int kEvents = 50'000;
constexpr int kStreams = 100;
constexpr std::size_t kPayloadBytes = 256;
constexpr std::size_t kWindow = 2000;  // unconfirmed messages at most, on both sides

annal::test::RabbitServer& server() {
  static annal::test::RabbitServer the_server(ANNAL_RABBITMQ_BINDIR);
  return the_server;
}

std::string new_stream() {
  static int streams = 0;
  return "bench" + std::to_string(streams++);
}

annal::bench::ExportStore& store() {
  static annal::bench::ExportStore the_store(kEvents, kStreams, kPayloadBytes);
  return the_store;
}

void rabbitmq_export_annal(benchmark::State& state) {
  annal::bench::ExportStore& events = store();
  double start_ms = 0;  // of which: add_projection (connect, fence, declare, read-back)
  for (auto _ : state) {
    auto exporter = std::make_shared<annal::rabbitmq::RabbitExport>(annal::rabbitmq::RabbitExportOptions{
        .url = server().url(), .stream = new_stream(), .source = "bench", .unconfirmed_max = kWindow});
    const std::unique_ptr<annal::engine::Engine> engine = events.open();
    const auto started = std::chrono::steady_clock::now();
    const annal::Status added = engine->add_projection("rabbitmq", exporter, {});
    if (!added.ok()) throw std::runtime_error(added.to_string());
    start_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
    if (!exporter->wait_delivered(events.last.last_sequence, std::chrono::steady_clock::now() + std::chrono::minutes(5))) {
      throw std::runtime_error("not confirmed: " + exporter->health().to_string());
    }
    state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    if (!engine->close().ok()) throw std::runtime_error("close failed");
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * kEvents);
  state.counters["start_ms"] = start_ms / static_cast<double>(state.iterations());
  state.SetLabel("RabbitExport: the journal replayed into a confirmed publisher; fence and read-back at start");
}

// A plain publisher: one connection, one confirm channel, at most kWindow unconfirmed.
class Publisher {
 public:
  explicit Publisher(const std::string& stream) : stream_(stream), state_(amqp_new_connection()) {
    amqp_socket_t* socket = amqp_tcp_socket_new(state_);
    if (amqp_socket_open(socket, "127.0.0.1", server().port()) != AMQP_STATUS_OK) throw std::runtime_error("connect");
    must(amqp_login(state_, "/", 0, AMQP_DEFAULT_FRAME_SIZE, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest"), "login");
    amqp_channel_open(state_, 1);
    must(amqp_get_rpc_reply(state_), "channel");
    amqp_table_entry_t type{.key = amqp_cstring_bytes("x-queue-type"), .value = {}};
    type.value.kind = AMQP_FIELD_KIND_UTF8;
    type.value.value.bytes = amqp_cstring_bytes("stream");
    amqp_queue_declare(state_, 1, amqp_cstring_bytes(stream_.c_str()), 0, 1, 0, 0, amqp_table_t{1, &type});
    must(amqp_get_rpc_reply(state_), "declare");
    amqp_confirm_select(state_, 1);
    must(amqp_get_rpc_reply(state_), "confirm.select");
  }
  ~Publisher() {
    amqp_connection_close(state_, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(state_);
  }

  void publish(const annal::engine::Event& event) {
    while (published_ - confirmed_ >= kWindow) read_confirm();
    const annal::engine::EventHeader& h = event.header;
    amqp_table_entry_t entries[7] = {};
    const auto number = [](amqp_table_entry_t& e, const char* name, std::uint64_t value) {
      e.key = amqp_cstring_bytes(name);
      e.value.kind = AMQP_FIELD_KIND_I64;
      e.value.value.i64 = static_cast<std::int64_t>(value);
    };
    const auto text = [](amqp_table_entry_t& e, const char* name, std::string_view value) {
      e.key = amqp_cstring_bytes(name);
      e.value.kind = AMQP_FIELD_KIND_UTF8;
      e.value.value.bytes = amqp_bytes_t{value.size(), const_cast<char*>(value.data())};
    };
    number(entries[0], "annal.sequence", h.sequence);
    number(entries[1], "annal.version", h.version);
    text(entries[2], "annal.type", h.type);
    number(entries[3], "annal.timestamp_ns", h.timestamp_ns);
    text(entries[4], "annal.source", "bench");
    text(entries[5], "annal.stream", h.stream_name);
    number(entries[6], "annal.delivered", confirmed_);
    amqp_basic_properties_t properties{};
    properties._flags = AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
    properties.headers = amqp_table_t{7, entries};
    properties.delivery_mode = AMQP_DELIVERY_PERSISTENT;
    const amqp_bytes_t body{event.payload.size(), const_cast<std::byte*>(event.payload.data())};
    // Mandatory, as the export publishes.
    if (amqp_basic_publish(state_, 1, amqp_empty_bytes, amqp_cstring_bytes(stream_.c_str()), /*mandatory=*/1, 0,
                           &properties, body) != AMQP_STATUS_OK) {
      throw std::runtime_error("publish");
    }
    ++published_;
  }
  void wait_all() {
    while (confirmed_ < published_) read_confirm();
  }

 private:
  void read_confirm() {
    amqp_frame_t frame;
    if (amqp_simple_wait_frame(state_, &frame) != AMQP_STATUS_OK) throw std::runtime_error("read");
    if (frame.frame_type != AMQP_FRAME_METHOD) return;
    if (frame.payload.method.id == AMQP_BASIC_NACK_METHOD) throw std::runtime_error("nack");
    if (frame.payload.method.id != AMQP_BASIC_ACK_METHOD) return;
    const auto* ack = static_cast<const amqp_basic_ack_t*>(frame.payload.method.decoded);
    // Acks come in order for one queue: a single one confirms its own tag, after all before it.
    confirmed_ = ack->delivery_tag;
  }
  static void must(const amqp_rpc_reply_t& reply, const char* what) {
    if (reply.reply_type != AMQP_RESPONSE_NORMAL) throw std::runtime_error(what);
  }

  std::string stream_;
  amqp_connection_state_t state_;
  std::uint64_t published_ = 0;
  std::uint64_t confirmed_ = 0;
};

void rabbitmq_export_rabbitmq_c(benchmark::State& state) {
  annal::bench::ExportStore& events = store();
  // The same messages: read once from the journal, outside the timing.
  const std::vector<annal::engine::Event> records = events.read_back();
  for (auto _ : state) {
    const std::string stream = new_stream();
    const auto started = std::chrono::steady_clock::now();
    Publisher publisher(stream);
    for (const annal::engine::Event& event : records) publisher.publish(event);
    publisher.wait_all();
    state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * kEvents);
  state.SetLabel("a plain rabbitmq-c publisher with confirms, the same messages and window, no journal");
}

BENCHMARK(rabbitmq_export_annal)->Name("rabbitmq_export/annal")->UseManualTime()->Iterations(3)->Unit(benchmark::kMillisecond);
BENCHMARK(rabbitmq_export_rabbitmq_c)
    ->Name("rabbitmq_export/rabbitmq_c")
    ->UseManualTime()
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
