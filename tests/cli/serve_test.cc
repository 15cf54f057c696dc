// annal serve, driven as its users drive it: a real process on a loopback port, asked over HTTP by
// curl (a client that is not ours), stopped with SIGTERM; then the store is opened to see what it
// holds.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <simdjson.h>

#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <fstream>
#include <string>
#include <vector>

#include "annal/engine/engine.h"
#include "annal/server/event_json.h"
#include "eventually.h"
#include "kill_timing.h"
#include "loopback_client.h"
#include "run_annal.h"
#include "served.h"
#include "temp_directory.h"
#include "watchdog.h"

namespace annal::cli::test {
namespace {

namespace fs = std::filesystem;

// annal serve.
class Served : public annal::test::Served {
 public:
  explicit Served(const std::string& directory, const std::vector<std::string>& options = {})
      : annal::test::Served(ANNAL_CLI, directory, options) {}
};

constexpr const char* kCurl = "/usr/bin/curl";

using annal::test::connect_to;
using annal::test::read_until_closed;

// Sends `request` on a new connection and returns all the server answers before it closes.
std::string request_once(int port, const std::string& request) {
  const int fd = connect_to(port);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(send(fd, request.data(), request.size(), MSG_NOSIGNAL), static_cast<ssize_t>(request.size()));
  std::string answer = read_until_closed(fd);
  close(fd);
  return answer;
}

// The RLIMIT_NOFILE that leaves `pid` exactly `free` descriptors to open: the limit bounds the
// numbers a new descriptor may take, and those below it may have gaps.
rlim_t limit_leaving(pid_t pid, int free) {
  std::set<int> open;
  for (const auto& entry : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
    open.insert(std::stoi(entry.path().filename().string()));
  }
  int number = 0;
  for (int left = free; left > 0; ++number) {
    if (!open.contains(number)) --left;
  }
  return static_cast<rlim_t>(number);
}

std::size_t open_files(pid_t pid) {
  std::size_t count = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) ++count;
  return count;
}

// GET `target` on a socket of the test's own, its answer read as a stream of Server-Sent Events
// (curl would buffer them; this reads exactly what came). Every wait is for bytes, with a deadline
// only against a hang.
class FeedReader {
 public:
  struct Sent {
    std::uint64_t id = 0;  // 0 for an "event: error"
    std::string data;
  };

  FeedReader(int port, const std::string& target, const std::string& last_event_id = "") {
    fd_ = connect_to(port);
    EXPECT_GE(fd_, 0);
    const std::string request = "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n" +
                                (last_event_id.empty() ? "" : "Last-Event-ID: " + last_event_id + "\r\n") + "\r\n";
    EXPECT_EQ(send(fd_, request.data(), request.size(), MSG_NOSIGNAL), static_cast<ssize_t>(request.size()));
  }
  ~FeedReader() { close(fd_); }
  FeedReader(const FeedReader&) = delete;
  FeedReader& operator=(const FeedReader&) = delete;

  // The answer's status line and headers.
  std::string head() {
    while (!head_done_) {
      const std::size_t end = buffer_.find("\r\n\r\n");
      if (end != std::string::npos) {
        head_ = buffer_.substr(0, end);
        buffer_.erase(0, end + 4);
        head_done_ = true;
      } else if (!fill()) {
        break;
      }
    }
    return head_;
  }

  // The next `count` events, each waited for; fewer if the connection ends first.
  std::vector<Sent> events(std::size_t count) {
    head();
    std::vector<Sent> sent;
    while (sent.size() < count) {
      const std::size_t end = buffer_.find("\n\n");
      if (end == std::string::npos) {
        if (!fill()) break;
        continue;
      }
      const std::string block = buffer_.substr(0, end + 1);
      buffer_.erase(0, end + 2);
      if (block.starts_with(":")) continue;  // a heartbeat
      Sent event;
      std::size_t at = 0;
      while (at < block.size()) {
        const std::size_t line_end = block.find('\n', at);
        const std::string line = block.substr(at, line_end - at);
        at = line_end + 1;
        if (line.starts_with("id: ")) event.id = std::stoull(line.substr(4));
        if (line.starts_with("data: ")) event.data = line.substr(6);
      }
      sent.push_back(event);
    }
    return sent;
  }

 private:
  bool fill() {
    pollfd ready{.fd = fd_, .events = POLLIN, .revents = 0};
    if (poll(&ready, 1, 120'000) != 1) return false;
    char bytes[4096];
    const ssize_t n = read(fd_, bytes, sizeof(bytes));
    if (n <= 0) return false;
    buffer_.append(bytes, static_cast<std::size_t>(n));
    return true;
  }

  int fd_ = -1;
  std::string buffer_;
  std::string head_;
  bool head_done_ = false;
};

struct Answer {
  int status = 0;
  std::string headers;
  simdjson::dom::element json;
  std::string body;
};

class ServeTest : public ::testing::Test {
 protected:
  // curl METHOD URL [body], its status, headers and JSON body.
  // With `token`, as Authorization: Bearer TOKEN.
  Answer ask(const std::string& method, const std::string& url, const std::string& body = "", const std::string& token = "") {
    Answer answer = ask_text(method, url, body, token);
    answers_.push_back(answer.body);
    if (parser_.parse(answers_.back()).get(answer.json) != simdjson::SUCCESS) ADD_FAILURE() << "not JSON: " << answer.body;
    return answer;
  }

  // The same for an answer that need not be JSON (answer.json is left empty).
  Answer ask_text(const std::string& method, const std::string& url, const std::string& body = "", const std::string& token = "") {
    const std::string headers = input_.path() + "/headers";
    const std::string data = input_.path() + "/body";
    std::ofstream(data) << body;
    std::vector<std::string> args{"-sS", "-X", method, "-D", headers, "-w", "\n%{http_code}", url};
    if (!token.empty()) args.insert(args.end(), {"-H", "Authorization: Bearer " + token});
    args.insert(args.end(), curl_options_.begin(), curl_options_.end());
    if (!body.empty()) {
      args.insert(args.end(), {"-H", "Content-Type: application/json", "--data-binary", "@" + data});
    }
    const Ran ran = run_program(kCurl, args);
    EXPECT_EQ(ran.exit_code, 0) << ran.err;
    Answer answer;
    const std::size_t last = ran.out.rfind('\n');
    answer.body = ran.out.substr(0, last);
    answer.status = last == std::string::npos ? 0 : std::stoi(ran.out.substr(last + 1));
    answer.headers = read_file(headers);
    return answer;
  }

  // A POST from one of several client threads: the status (0 if curl could not get one, as when
  // the server was killed) and the receipt's last sequence.
  static std::pair<int, std::uint64_t> post(const std::string& url, const std::string& body) {
    const Ran ran = run_program(kCurl, {"-sS", "-X", "POST", "-w", "\n%{http_code}", "-H", "Content-Type: application/json",
                                        "--data-binary", body, url});
    const std::size_t last = ran.out.rfind('\n');
    if (ran.exit_code != 0 || last == std::string::npos) return {0, 0};
    const std::string receipt = ran.out.substr(0, last);
    const std::size_t at = receipt.find("\"last_sequence\":");
    return {std::stoi(ran.out.substr(last + 1)),
            at == std::string::npos ? 0 : std::stoull(receipt.substr(at + std::string_view("\"last_sequence\":").size()))};
  }

  static std::uint64_t number(const simdjson::dom::element& json, const char* key) {
    std::uint64_t value = 0;
    EXPECT_EQ(json[key].get(value), simdjson::SUCCESS) << key << " in " << simdjson::minify(json);
    return value;
  }

  annal::test::TempDirectory dir_;
  annal::test::TempDirectory input_;
  std::vector<std::string> curl_options_;  // for every ask()
  simdjson::dom::parser parser_;
  std::vector<std::string> answers_;  // a parsed element points into its parser's last document
};

TEST_F(ServeTest, AppendsReadsAndRefusesOverHttpAndClosesCleanlyOnSigterm) {
  annal::test::Watchdog watchdog("annal serve and curl");
  std::uint64_t last_sequence = 0;
  {
    Served served(dir_.path());
    ASSERT_FALSE(HasFailure());
    EXPECT_EQ(ask("GET", served.url("/health")).status, 200);
    const Answer ready = ask("GET", served.url("/ready"));
    EXPECT_EQ(ready.status, 200);
    EXPECT_NE(ready.body.find("\"ready\":true"), std::string::npos) << ready.body;

    const Answer created = ask("POST", served.url("/streams/order-1"),
                               R"({"type": "OrderCreated", "data": {"orderId": "1", "amount": 100}})");
    ASSERT_EQ(created.status, 201) << created.body;  // once durable
    const std::uint64_t first = number(created.json, "last_sequence");
    EXPECT_EQ(number(created.json, "version"), 0u);
    EXPECT_NE(created.headers.find("Annal-Sequence: " + std::to_string(first)), std::string::npos) << created.headers;

    const std::string batch = R"([{"type": "OrderPaid", "data": {"amount": 100}, "id": "00000000-0000-0000-0000-0000000000a1"},
                                  {"type": "RefundCreated", "data": {"amount": 50}}])";
    const Answer paid = ask("POST", served.url("/streams/order-1?expected_version=0"), batch);
    ASSERT_EQ(paid.status, 201) << paid.body;
    EXPECT_EQ(number(paid.json, "last_sequence"), number(paid.json, "first_sequence") + 1);  // one atomic batch
    EXPECT_EQ(number(paid.json, "version"), 2u);
    // The same request again is a retry: the first receipt, nothing appended.
    const Answer retried = ask("POST", served.url("/streams/order-1?expected_version=0"), batch);
    EXPECT_EQ(retried.status, 201) << retried.body;
    EXPECT_EQ(number(retried.json, "first_sequence"), number(paid.json, "first_sequence"));
    EXPECT_NE(retried.body.find("\"duplicate\":true"), std::string::npos) << retried.body;

    const Answer conflict = ask("POST", served.url("/streams/order-1?expected_version=0"), R"({"type": "X", "data": 1})");
    EXPECT_EQ(conflict.status, 409) << conflict.body;
    EXPECT_EQ(number(conflict.json, "version"), 2u);
    const Answer fresh = ask("POST", served.url("/streams/order-2?expected_version=-1&durable=false"), R"({"type": "OrderCreated", "data": {}})");
    EXPECT_EQ(fresh.status, 202) << fresh.body;  // sequenced, not yet known durable
    last_sequence = number(fresh.json, "last_sequence");

    const Answer read = ask("GET", served.url("/streams/order-1"));
    ASSERT_EQ(read.status, 200) << read.body;
    simdjson::dom::array events;
    ASSERT_EQ(read.json["events"].get(events), simdjson::SUCCESS);
    std::vector<std::string> types;
    for (const auto event : events) types.emplace_back(std::string_view(event["type"].get_string().value()));
    EXPECT_EQ(types, (std::vector<std::string>{"OrderCreated", "OrderPaid", "RefundCreated"}));
    EXPECT_NE(read.body.find(R"("data":{"orderId":"1","amount":100})"), std::string::npos) << read.body;
    const Answer newest = ask("GET", served.url("/streams/order-1?direction=backward&limit=1"));
    EXPECT_NE(newest.body.find("RefundCreated"), std::string::npos) << newest.body;
    EXPECT_EQ(newest.body.find("OrderPaid"), std::string::npos) << newest.body;
    EXPECT_EQ(ask("GET", served.url("/streams/nobody")).status, 404);
    // /all shows durable events only, and order-2 was acknowledged before its sync: it shows
    // once the group commit in flight completes, which a loaded machine may not have done yet.
    Answer all;
    EXPECT_TRUE(annal::test::eventually([&] {
      all = ask("GET", served.url("/all?from=1&limit=100"));
      return all.status == 200 && all.body.find("order-2") != std::string::npos;
    })) << all.status << " " << all.body;

    // Bad requests: each a 4xx naming what is wrong, and nothing appended.
    const Answer bad_json = ask("POST", served.url("/streams/order-3"), "{\"type\": ");
    EXPECT_EQ(bad_json.status, 400);
    EXPECT_NE(bad_json.body.find("not JSON"), std::string::npos) << bad_json.body;
    const Answer missing = ask("POST", served.url("/streams/order-3"), R"([{"type": "A", "data": 1}, {"type": "B"}])");
    EXPECT_EQ(missing.status, 400);
    EXPECT_NE(missing.body.find("event 1: "), std::string::npos) << missing.body;  // which one, and why
    const Answer wrong_type = ask("POST", served.url("/streams/order-3"), R"({"type": 5, "data": 1})");
    EXPECT_EQ(wrong_type.status, 400);
    EXPECT_NE(wrong_type.body.find("type"), std::string::npos) << wrong_type.body;  // names the field
    const Answer too_large = ask("POST", served.url("/streams/order-3"), R"({"type": "A", "data": ")" + std::string(300'000, 'x') + R"("})");
    EXPECT_EQ(too_large.status, 413) << too_large.body;  // one event past event_bytes_max, in a body within limits
    EXPECT_NE(too_large.body.find("at most"), std::string::npos) << too_large.body;
    const Answer stream_in_body = ask("POST", served.url("/streams/order-3"), R"({"stream": "x", "type": "A", "data": 1})");
    EXPECT_EQ(stream_in_body.status, 400) << stream_in_body.body;
    const Answer huge = ask("POST", served.url("/streams/order-3"),
                            R"({"type": "A", "data": ")" + std::string(2u << 20, 'x') + R"("})");
    EXPECT_EQ(huge.status, 413) << huge.body.substr(0, 200);
    EXPECT_EQ(ask("GET", served.url("/streams/order-3")).status, 404);  // none of them appended a thing
    EXPECT_EQ(ask("DELETE", served.url("/streams/order-1")).status, 405);
    EXPECT_EQ(ask("GET", served.url("/nothing-here")).status, 404);

    EXPECT_EQ(served.stop(), 0);
  }
  // A clean close: everything durable, and the next open replays nothing.
  auto store = engine::Engine::open(dir_.path(), {});
  ASSERT_TRUE(store.ok()) << store.status().to_string();
  EXPECT_EQ(store.value()->open_report().records_replayed, 0u);
  EXPECT_EQ(store.value()->last_sequence(), last_sequence);
  EXPECT_EQ(store.value()->stream_version("order-1"), 2u);
  EXPECT_EQ(store.value()->stream_version("order-3"), std::nullopt);
}

std::vector<std::uint64_t> ids_of(const std::vector<FeedReader::Sent>& events) {
  std::vector<std::uint64_t> ids;
  for (const auto& event : events) ids.push_back(event.id);
  return ids;
}

// The ids of `sequences` from `first` to `last` (the engine's own records take sequences too).
std::vector<std::uint64_t> slice(const std::vector<std::uint64_t>& sequences, std::size_t first, std::size_t last) {
  return {sequences.begin() + static_cast<std::ptrdiff_t>(first), sequences.begin() + static_cast<std::ptrdiff_t>(last) + 1};
}

// GET /subscribe: durable events as Server-Sent Events, from the log and then live, one stream's
// or all; a client that reconnects with Last-Event-ID, even to a restarted server, gets every
// event after that one exactly once.
TEST_F(ServeTest, SubscribeFeedsDurableEventsAndResumesAfterARestartWithoutGapOrRepeat) {
  annal::test::Watchdog watchdog("annal serve event feeds");
  std::vector<std::uint64_t> appended;  // the sequence of each event, in order
  std::vector<std::uint64_t> of_b;
  const auto append = [&](const Served& served, const std::string& stream, int i) {
    const auto [status, sequence] = post(served.url("/streams/" + stream), R"({"type": "T", "data": {"i": )" + std::to_string(i) + "}}");
    EXPECT_EQ(status, 201);
    appended.push_back(sequence);
    if (stream == "b") of_b.push_back(sequence);
  };
  {
    Served served(dir_.path());
    ASSERT_FALSE(HasFailure());
    for (int i = 0; i < 10; ++i) append(served, i < 5 ? "a" : "b", i);
    FeedReader everything(served.port(), "/subscribe?from=1");
    const std::string head = everything.head();
    EXPECT_NE(head.find("200 OK"), std::string::npos) << head;
    EXPECT_NE(head.find("text/event-stream"), std::string::npos) << head;
    const auto logged = everything.events(10);
    EXPECT_EQ(ids_of(logged), slice(appended, 0, 9));
    ASSERT_EQ(logged.size(), 10u);
    EXPECT_NE(logged[0].data.find(R"("stream":"a")"), std::string::npos) << logged[0].data;
    EXPECT_NE(logged[9].data.find(R"("data":{"i":9})"), std::string::npos) << logged[9].data;

    // From now on (the default), and one stream's.
    FeedReader live(served.port(), "/subscribe");
    FeedReader only_b(served.port(), "/subscribe?from=1&stream=b");
    ASSERT_NE(live.head().find("200 OK"), std::string::npos);
    ASSERT_NE(only_b.head().find("200 OK"), std::string::npos);
    for (int i = 10; i < 13; ++i) append(served, "b", i);
    EXPECT_EQ(ids_of(live.events(3)), slice(appended, 10, 12));
    EXPECT_EQ(ids_of(everything.events(3)), slice(appended, 10, 12));
    EXPECT_EQ(ids_of(only_b.events(8)), of_b);

    // Bad positions are refused before any event.
    EXPECT_NE(FeedReader(served.port(), "/subscribe?from=0").head().find("400"), std::string::npos);
    EXPECT_NE(FeedReader(served.port(), "/subscribe?from=" + std::to_string(appended.back() + 100)).head().find("400"), std::string::npos);
    EXPECT_NE(FeedReader(served.port(), "/subscribe", "x").head().find("400"), std::string::npos);
    // The largest id has no next event (it must not wrap round to the start of the log).
    EXPECT_NE(FeedReader(served.port(), "/subscribe", "18446744073709551615").head().find("400"), std::string::npos);

    // SIGTERM with feeds open still stops cleanly.
    EXPECT_EQ(served.stop(), 0);
  }
  Served again(dir_.path());
  ASSERT_FALSE(HasFailure());
  for (int i = 13; i < 15; ++i) append(again, "a", i);
  // What a browser sends when it reconnects: the URL it first used, and the last id it saw.
  FeedReader resumed(again.port(), "/subscribe?from=1", std::to_string(appended[6]));
  EXPECT_EQ(ids_of(resumed.events(8)), slice(appended, 7, 14));
  EXPECT_EQ(again.stop(), 0);
}

// A client that stops reading its feed holds back no append: with more events than the ring holds
// appended meanwhile, every append is answered, and the feed, read at last, has them all in order
// (its subscription left the ring and caught up from the journal).
TEST_F(ServeTest, AFeedThatIsNotReadHoldsBackNoAppendAndMissesNothing) {
  annal::test::Watchdog watchdog("annal serve with a stalled feed");
  constexpr int kRequests = 140;
  constexpr int kEventsPerRequest = 500;  // 70,000 events of 256 B: past the ring (65,536) and the socket buffers
  Served served(dir_.path());
  ASSERT_FALSE(HasFailure());
  FeedReader stalled(served.port(), "/subscribe?from=1");
  ASSERT_NE(stalled.head().find("200 OK"), std::string::npos);
  std::string batch = "[";
  for (int i = 0; i < kEventsPerRequest; ++i) {
    batch += std::string(i == 0 ? "" : ",") + R"({"type": "Bulk", "data": ")" + std::string(256, 'x') + "\"}";
  }
  batch += "]";
  const std::string body = input_.path() + "/batch";
  std::ofstream(body) << batch;
  std::vector<std::uint64_t> appended;
  for (int r = 0; r < kRequests; ++r) {
    const auto [status, last] = post(served.url("/streams/bulk"), "@" + body);
    ASSERT_EQ(status, 201);
    for (std::uint64_t sequence = last - kEventsPerRequest + 1; sequence <= last; ++sequence) appended.push_back(sequence);
  }
  const auto sent = stalled.events(appended.size());
  EXPECT_EQ(ids_of(sent), appended);
  EXPECT_EQ(served.stop(), 0);
}

// The values of a Prometheus text exposition, by series ("name{labels}").
std::map<std::string, double> series_of(const std::string& exposition) {
  std::map<std::string, double> series;
  std::istringstream lines(exposition);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line.starts_with('#')) continue;
    const std::size_t space = line.rfind(' ');
    series[line.substr(0, space)] = std::stod(line.substr(space + 1));
  }
  return series;
}

// GET /metrics counts what was done: appends, syncs, group commits, requests by route and status.
TEST_F(ServeTest, MetricsCountWhatWasDone) {
  annal::test::Watchdog watchdog("annal serve /metrics");
  Served served(dir_.path());
  ASSERT_FALSE(HasFailure());
  for (int i = 0; i < 5; ++i) ASSERT_EQ(ask("POST", served.url("/streams/m"), R"({"type": "A", "data": 1})").status, 201);
  EXPECT_EQ(ask("POST", served.url("/streams/m?expected_version=0"), R"({"type": "A", "data": 1})").status, 409);
  EXPECT_EQ(ask("GET", served.url("/health")).status, 200);
  const Answer scraped = ask_text("GET", served.url("/metrics"));
  ASSERT_EQ(scraped.status, 200);
  EXPECT_NE(scraped.headers.find("Content-Type: text/plain; version=0.0.4"), std::string::npos) << scraped.headers;
  auto series = series_of(scraped.body);
  EXPECT_EQ(series[R"(annal_http_requests_total{route="stream_append",status="201"})"], 5);
  EXPECT_EQ(series[R"(annal_http_requests_total{route="stream_append",status="409"})"], 1);
  EXPECT_EQ(series[R"(annal_http_requests_total{route="health",status="200"})"], 1);
  EXPECT_EQ(series[R"(annal_http_request_duration_seconds_count{route="stream_append"})"], 6);
  EXPECT_EQ(series["annal_appends_total"], 5);  // the conflict appended nothing
  EXPECT_GE(series["annal_records_total"], 5);
  EXPECT_GE(series["annal_durable_sequence"], 5);
  EXPECT_EQ(series["annal_durable_sequence"], series["annal_last_sequence"]);  // each was answered once durable
  EXPECT_GE(series["annal_fdatasyncs_total"], 1);
  EXPECT_EQ(series["annal_fdatasync_seconds_count"], series[R"(annal_fdatasync_seconds_bucket{le="+Inf"})"]);
  EXPECT_EQ(series["annal_group_commit_records_sum"], series["annal_durable_sequence"]);  // every record, once
  EXPECT_EQ(series["annal_streams"], 1);
  EXPECT_EQ(served.stop(), 0);
}

// HTTPS with a certificate the openssl command makes: curl trusting it appends and reads; one that
// does not trust it, or speaks plain HTTP to the port, gets nothing; a refusal arrives whole.
TEST_F(ServeTest, ServesHttpsWithTheCertificateItIsGiven) {
  annal::test::Watchdog watchdog("annal serve over TLS");
  const std::string certificate = input_.path() + "/cert.pem";
  const std::string key = input_.path() + "/key.pem";
  const Ran made = run_program("/usr/bin/openssl", {"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                                                    "-nodes", "-keyout", key, "-out", certificate, "-days", "2",
                                                    "-subj", "/CN=annal-test", "-addext", "subjectAltName=IP:127.0.0.1"});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  Served served(dir_.path(), {"--tls-cert", certificate, "--tls-key", key});
  ASSERT_FALSE(HasFailure());
  const std::string base = "https://127.0.0.1:" + std::to_string(served.port());
  curl_options_ = {"--cacert", certificate};
  const Answer created = ask("POST", base + "/streams/order-9", R"({"type": "OrderCreated", "data": {"amount": 7}})");
  EXPECT_EQ(created.status, 201) << created.body;
  const Answer read = ask("GET", base + "/streams/order-9");
  EXPECT_EQ(read.status, 200);
  EXPECT_NE(read.body.find(R"("data":{"amount":7})"), std::string::npos) << read.body;
  const Answer huge = ask("POST", base + "/streams/order-9", R"({"type": "A", "data": ")" + std::string(2u << 20, 'x') + R"("})");
  EXPECT_EQ(huge.status, 413) << huge.body.substr(0, 200);

  // Not trusted, and not TLS: no answer at all.
  EXPECT_NE(run_program(kCurl, {"-sS", base + "/health"}).exit_code, 0);
  EXPECT_NE(run_program(kCurl, {"-sS", "--max-time", "60", served.url("/health")}).exit_code, 0);
  EXPECT_EQ(served.stop(), 0);
}

// Limits: what is too big or too slow gets its status and the connection closes; a storm of
// connections opened and dropped leaks nothing; the server serves others all the while, and
// nothing partial is stored.
TEST_F(ServeTest, LimitsRefuseWhatIsTooBigOrTooSlowAndTheServerKeepsServing) {
  annal::test::Watchdog watchdog("annal serve limits");
  Served served(dir_.path(), {"--request-timeout", "1000"});
  ASSERT_FALSE(HasFailure());
  const int port = served.port();
  EXPECT_EQ(ask("GET", served.url("/health")).status, 200);
  const std::size_t files = open_files(served.pid());

  const std::string huge_header = request_once(port, "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(20'000, 'a') + "\r\n\r\n");
  EXPECT_NE(huge_header.find("431"), std::string::npos) << huge_header.substr(0, 200);
  const std::string post_head = "POST /streams/cut HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n";
  const std::string half_body = R"([{"type": "A", "data": 1}, {"type": "B", "data": )" + std::string(60, ' ');
  {
    // A client that stops mid-body and goes away, and one that stops and stays (408 at the deadline).
    const int gone = connect_to(port);
    ASSERT_GE(gone, 0);
    EXPECT_GT(send(gone, (post_head + half_body).data(), post_head.size() + half_body.size(), MSG_NOSIGNAL), 0);
    close(gone);
    const std::string stalled = request_once(port, post_head + half_body);
    EXPECT_NE(stalled.find("408"), std::string::npos) << stalled;
  }
  {
    // Slowloris: forty connections each holding a request open, a few bytes at a time.
    std::vector<int> slow;
    for (int i = 0; i < 40; ++i) {
      slow.push_back(connect_to(port));
      ASSERT_GE(slow.back(), 0);
      EXPECT_GT(send(slow.back(), "GET /health HTTP/1.1\r\nX-", 24, MSG_NOSIGNAL), 0);
    }
    EXPECT_EQ(ask("GET", served.url("/health")).status, 200);  // others are served meanwhile
    for (const int fd : slow) {
      EXPECT_NE(read_until_closed(fd).find("408"), std::string::npos);
      close(fd);
    }
  }
  // A thousand connections opened and dropped, half of them mid-request, some reset.
  for (int i = 0; i < 1000; ++i) {
    const int fd = connect_to(port);
    ASSERT_GE(fd, 0);
    if (i % 2 == 0) {
      EXPECT_GT(send(fd, post_head.data(), post_head.size(), MSG_NOSIGNAL), 0);
    }
    if (i % 3 == 0) {
      const linger reset{.l_onoff = 1, .l_linger = 0};
      setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
    }
    close(fd);
  }
  EXPECT_EQ(ask("GET", served.url("/health")).status, 200);
  EXPECT_EQ(ask("GET", served.url("/streams/cut")).status, 404);  // nothing partial was appended
  // Every connection's descriptor is given back (the server notices each end by itself).
  EXPECT_TRUE(annal::test::eventually([&] { return open_files(served.pid()) <= files; }))
      << open_files(served.pid()) << " open files, " << files << " before";
  EXPECT_EQ(served.stop(), 0);

  // Past --max-connections, a new connection is answered 503 and closed; after
  // --max-requests-per-connection, a connection's last answer closes it (curl then connects again).
  Served small(dir_.path(), {"--max-connections", "8", "--max-requests-per-connection", "2"});
  ASSERT_FALSE(HasFailure());
  std::vector<int> held;
  for (int i = 0; i < 8; ++i) {
    held.push_back(connect_to(small.port()));
    ASSERT_GE(held.back(), 0);
  }
  const std::string refused = request_once(small.port(), "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_NE(refused.find("503"), std::string::npos) << refused;
  for (const int fd : held) close(fd);
  EXPECT_TRUE(annal::test::eventually([&] { return ask("GET", small.url("/health")).status == 200; }));  // room again
  std::vector<std::string> health_four_times{"-sS", "-w", "%{num_connects}\n"};
  for (int i = 0; i < 4; ++i) health_four_times.insert(health_four_times.end(), {"-o", "/dev/null", small.url("/health")});
  const Ran four = run_program(kCurl, health_four_times);
  EXPECT_EQ(four.out, "1\n0\n1\n0\n");  // two requests a connection
  EXPECT_EQ(small.stop(), 0);
}

// Out of descriptors, accept fails at once (EMFILE) for as long as none is free: the server waits
// and tries again rather than spinning a thread on it, and the connections that waited in the
// listen backlog are served once descriptors are free again.
TEST_F(ServeTest, OutOfDescriptorsTheServerWaitsAndThenServesThoseThatWaited) {
#if defined(__SANITIZE_ADDRESS__)
  // The asan preset has UBSan too, whose check of a virtual call opens a pipe to probe memory: in a
  // process out of descriptors that fails, and it reports a bad call that is not there. The test
  // runs in the tsan preset.
  GTEST_SKIP() << "UBSan needs descriptors of its own; this runs under TSan";
#endif
  annal::test::Watchdog watchdog("annal serve out of descriptors");
  Served served(dir_.path());
  ASSERT_FALSE(HasFailure());
  const int port = served.port();
  // Room for three more descriptors, taken by three connections that each had an answer.
  const rlim_t room = limit_leaving(served.pid(), 3);
  const rlimit limit{.rlim_cur = room, .rlim_max = room};
  ASSERT_EQ(prlimit(served.pid(), RLIMIT_NOFILE, &limit, nullptr), 0);
  // GET /health on a kept-alive connection, its answer read whole.
  const auto health = [](int fd) {
    const std::string request = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    EXPECT_EQ(send(fd, request.data(), request.size(), MSG_NOSIGNAL), static_cast<ssize_t>(request.size()));
    std::string answer;
    char bytes[1024];
    pollfd ready{.fd = fd, .events = POLLIN, .revents = 0};
    while (answer.find(R"({"status":"ok"})") == std::string::npos && poll(&ready, 1, 120'000) == 1) {
      const ssize_t n = read(fd, bytes, sizeof(bytes));
      if (n <= 0) break;
      answer.append(bytes, static_cast<std::size_t>(n));
    }
    return answer.find("200 OK") != std::string::npos;
  };
  std::vector<int> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(connect_to(port));
    ASSERT_GE(held.back(), 0);
    ASSERT_TRUE(health(held.back()));
  }
  // Now every accept fails. These wait in the backlog, their requests sent.
  std::vector<int> waiting;
  const std::string health_once = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  for (int i = 0; i < 4; ++i) {
    waiting.push_back(connect_to(port));
    ASSERT_GE(waiting.back(), 0);
    EXPECT_GT(send(waiting.back(), health_once.data(), health_once.size(), MSG_NOSIGNAL), 0);
  }
  // The connections the server has are served meanwhile. Two hundred answers take a retry
  // interval or two; an accept loop that spun would fail many times for each.
  constexpr int kAnswersWhileFull = 200;
  for (int i = 0; i < kAnswersWhileFull; ++i) ASSERT_TRUE(health(held[i % held.size()]));
  for (const int fd : held) close(fd);
  for (const int fd : waiting) {
    EXPECT_NE(read_until_closed(fd).find("200 OK"), std::string::npos);
    close(fd);
  }
  const Answer metrics = ask_text("GET", served.url("/metrics"));
  const std::size_t at = metrics.body.find("\nannal_http_accept_errors_total ");
  ASSERT_NE(at, std::string::npos) << metrics.body;
  const double errors = std::stod(metrics.body.substr(at + 32));
  EXPECT_GE(errors, 1);
  EXPECT_LT(errors, kAnswersWhileFull) << "accept errors: once per retry interval (100 ms) while full, not in a loop";
  EXPECT_EQ(served.stop(), 0);
}

// The web console in a real browser (Debian's chromium, headless): it loads from the server alone
// and shows the events appended, which reach it through its live feed. A screenshot is left
// beside the test (console.png in its working directory).
TEST_F(ServeTest, TheConsoleShowsTheEventsInAHeadlessBrowser) {
  annal::test::Watchdog watchdog("annal serve console in chromium");
  Served served(dir_.path());
  ASSERT_FALSE(HasFailure());
  std::vector<std::uint64_t> appended;
  for (int i = 1; i <= 3; ++i) {
    const Answer created = ask("POST", served.url("/streams/order-" + std::to_string(i)),
                               R"({"type": "OrderCreated", "data": {"orderId": ")" + std::to_string(i) + R"(", "amount": 100}})");
    ASSERT_EQ(created.status, 201);
    appended.push_back(number(created.json, "last_sequence"));
  }
  const Answer page = ask_text("GET", served.url("/"));
  ASSERT_EQ(page.status, 200);
  EXPECT_NE(page.headers.find("Content-Security-Policy: default-src 'self'"), std::string::npos) << page.headers;
  // --virtual-time-budget: the page's scripts run (fetches, the feed) before the DOM is dumped.
  const std::vector<std::string> browser{"120", "/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu",
                                         "--user-data-dir=" + input_.path() + "/chromium", "--virtual-time-budget=10000"};
  auto dump = browser;
  dump.insert(dump.end(), {"--dump-dom", served.url("/")});
  const Ran dumped = run_program("/usr/bin/timeout", dump);
  ASSERT_EQ(dumped.exit_code, 0) << dumped.err;
  for (std::size_t i = 0; i < appended.size(); ++i) {
    const std::string row = "data-sequence=\"" + std::to_string(appended[i]) + "\"><td>" + std::to_string(appended[i]) +
                            "</td><td>order-" + std::to_string(i + 1) + "</td>";
    EXPECT_NE(dumped.out.find(row), std::string::npos) << "the feed does not show " << row << " in\n" << dumped.out;
  }
  EXPECT_NE(dumped.out.find("3 appends, durable sequence"), std::string::npos) << "the metrics line is missing";
  const std::string screenshot = (fs::current_path() / "console.png").string();
  auto shot = browser;
  shot.insert(shot.end(), {"--window-size=1280,1000", "--screenshot=" + screenshot, served.url("/")});
  EXPECT_EQ(run_program("/usr/bin/timeout", shot).exit_code, 0);
  EXPECT_TRUE(fs::exists(screenshot));
  std::printf("console screenshot: %s\n", screenshot.c_str());
  EXPECT_EQ(served.stop(), 0);
}

// --projection: the built-in projections keep their counts, show them once they have applied a
// write, and come back from their snapshots after a restart.
TEST_F(ServeTest, BuiltInProjectionsCountByTypeAndCategoryAndSurviveARestart) {
  annal::test::Watchdog watchdog("annal serve built-in projections");
  const std::vector<std::string> projections{"--projection", "by_event_type", "--projection", "by_category"};
  const std::string by_category = R"({"name":"by_category","state":{"order":{"streams":2,"events":3},"refund":{"streams":1,"events":1}}})";
  const std::string by_type = R"({"name":"by_event_type","state":{"OrderCreated":2,"OrderPaid":1,"RefundCreated":1}})";
  {
    Served served(dir_.path(), projections);
    ASSERT_FALSE(HasFailure());
    std::uint64_t last = 0;
    for (const auto& [stream, type] : std::vector<std::pair<std::string, std::string>>{
             {"order-1", "OrderCreated"}, {"order-2", "OrderCreated"}, {"order-1", "OrderPaid"}, {"refund-1", "RefundCreated"}}) {
      const Answer appended = ask("POST", served.url("/streams/" + stream), R"({"type": ")" + type + R"(", "data": {}})");
      ASSERT_EQ(appended.status, 201);
      last = number(appended.json, "last_sequence");
    }
    const std::string at = "?min_sequence=" + std::to_string(last);
    EXPECT_EQ(ask("GET", served.url("/projections/by_category/state" + at)).body, by_category);
    EXPECT_EQ(ask("GET", served.url("/projections/by_event_type/state" + at)).body, by_type);
    EXPECT_EQ(ask("GET", served.url("/projections/nothing/state")).status, 404);
    EXPECT_EQ(served.stop(), 0);  // the close snapshots them
  }
  Served again(dir_.path(), projections);
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(ask("GET", again.url("/projections/by_category/state")).body, by_category);
  const Answer status = ask("GET", again.url("/projections/by_category"));
  EXPECT_GT(number(status.json, "restored_from"), 0u) << status.body;  // from its snapshot, not a replay
  EXPECT_EQ(again.stop(), 0);
  EXPECT_EQ(run({"serve", dir_.path(), "--projection", "nothing"}).exit_code, 2);
}

// A key from annal keygen: its token.
std::string keygen(const std::string& keys, const std::vector<std::string>& id_and_rights) {
  std::vector<std::string> args{"keygen"};
  args.insert(args.end(), id_and_rights.begin(), id_and_rights.end());
  args.insert(args.end(), {"--keys", keys});
  const Ran made = run(args);
  EXPECT_EQ(made.exit_code, 0) << made.err;
  return made.out.substr(0, made.out.find('\n'));
}

// API keys: who may do what, each refusal the right status; the keys file must be private, and
// SIGHUP reloads it. Without keys, only loopback addresses.
TEST_F(ServeTest, ApiKeysGrantReadAndWritePerStreamPrefixAndReloadOnSighup) {
  annal::test::Watchdog watchdog("annal serve with keys");
  const std::string keys = input_.path() + "/keys";
  const std::string writer = keygen(keys, {"shop", "write:order-", "read:order-"});
  const std::string reader = keygen(keys, {"reporting", "read:*"});
  const std::string ops = keygen(keys, {"ops", "admin"});
  EXPECT_EQ(run({"keygen", "shop", "read:*", "--keys", keys}).exit_code, 1);  // an id is given once
  EXPECT_EQ(run({"keygen", "x", "delete:*", "--keys", keys}).exit_code, 1);   // no such right
  EXPECT_EQ(fs::status(keys).permissions() & (fs::perms::group_all | fs::perms::others_all), fs::perms::none);

  Served served(dir_.path(), {"--keys", keys});
  ASSERT_FALSE(HasFailure());
  const std::string event = R"({"type": "OrderCreated", "data": {}})";
  EXPECT_EQ(ask("GET", served.url("/health")).status, 200);  // health checks need no key
  const Answer anonymous = ask("POST", served.url("/streams/order-1"), event);
  EXPECT_EQ(anonymous.status, 401) << anonymous.body;
  EXPECT_NE(anonymous.headers.find("WWW-Authenticate: Bearer"), std::string::npos) << anonymous.headers;
  EXPECT_EQ(ask("POST", served.url("/streams/order-1"), event, writer + "0").status, 401);  // a wrong secret
  EXPECT_EQ(ask("POST", served.url("/streams/order-1"), event, "nobody" + writer.substr(4)).status, 401);
  EXPECT_EQ(ask("POST", served.url("/streams/order-1"), event, writer.substr(0, writer.find('.'))).status, 401);
  EXPECT_EQ(ask("POST", served.url("/streams/order-1"), event, writer).status, 201);
  const Answer outside = ask("POST", served.url("/streams/invoice-1"), event, writer);
  EXPECT_EQ(outside.status, 403) << outside.body;
  EXPECT_NE(outside.body.find("write on stream invoice-1"), std::string::npos) << outside.body;
  EXPECT_EQ(ask("POST", served.url("/streams/order-2"), event, reader).status, 403);  // read-only
  EXPECT_EQ(ask("GET", served.url("/streams/order-1"), "", writer).status, 200);
  EXPECT_EQ(ask("GET", served.url("/streams/order-1"), "", reader).status, 200);
  EXPECT_EQ(ask("GET", served.url("/streams/order-1"), "", ops).status, 403);  // admin is not read
  EXPECT_EQ(ask("GET", served.url("/projections"), "", ops).status, 200);     // admin's own routes
  EXPECT_EQ(ask("GET", served.url("/projections"), "", reader).status, 403);  // read:* is not admin
  EXPECT_EQ(ask_text("GET", served.url("/metrics"), "", ops).status, 200);
  EXPECT_EQ(ask_text("GET", served.url("/metrics"), "", writer).status, 403);
  EXPECT_EQ(ask("GET", served.url("/all"), "", writer).status, 403);  // read:order- is not the whole log
  EXPECT_EQ(ask("GET", served.url("/all"), "", reader).status, 200);
  EXPECT_EQ(ask("GET", served.url("/streams/order-1")).status, 401);
  EXPECT_NE(FeedReader(served.port(), "/subscribe").head().find("401"), std::string::npos);

  // A key added to the file holds once the server is told.
  const std::string late = keygen(keys, {"late", "write:*"});
  EXPECT_EQ(ask("POST", served.url("/streams/any"), event, late).status, 401);
  served.signal(SIGHUP);
  EXPECT_TRUE(annal::test::eventually([&] { return ask("POST", served.url("/streams/any"), event, late).status == 201; }));
  EXPECT_EQ(served.stop(), 0);

  // A keys file others may read is refused; without keys, only a loopback address.
  fs::permissions(keys, fs::perms::group_read, fs::perm_options::add);
  const Ran public_keys = run({"serve", dir_.path(), "--listen", "127.0.0.1:0", "--keys", keys});
  EXPECT_EQ(public_keys.exit_code, 1);
  EXPECT_NE(public_keys.err.find("chmod 600"), std::string::npos) << public_keys.err;
  const Ran open_to_all = run({"serve", dir_.path(), "--listen", "0.0.0.0:0"});
  EXPECT_EQ(open_to_all.exit_code, 1);
  EXPECT_NE(open_to_all.err.find("without API keys"), std::string::npos) << open_to_all.err;
}

// The seed documents' send_event and get_event_stream work unchanged: POST /events with their
// objects, GET /events gives them back as sent, in order.
TEST_F(ServeTest, TheSeedDocumentsEventsRoutesTakeAndGiveTheirShape) {
  annal::test::Watchdog watchdog("annal serve /events");
  Served served(dir_.path());
  ASSERT_FALSE(HasFailure());
  const std::vector<std::string> sent{R"({"orderId":"123456","amount":100,"eventType":"OrderCreated"})",
                                      R"({"orderId":"123456","eventType":"OrderPaid"})",
                                      R"({"refundId":"r-1","orderId":"123456","amount":50,"eventType":"RefundCreated"})",
                                      R"({"refundId":7,"eventType":"RefundPaid"})"};
  std::uint64_t first = 0;
  for (const std::string& event : sent) {
    const Answer answer = ask("POST", served.url("/events"), event);
    ASSERT_EQ(answer.status, 201) << answer.body;
    if (first == 0) first = number(answer.json, "first_sequence");
  }
  EXPECT_EQ(ask("POST", served.url("/events"), R"({"orderId":"1"})").status, 400);  // no eventType
  EXPECT_EQ(ask("POST", served.url("/events"), R"({"eventType":"X"})").status, 400);  // no stream
  EXPECT_EQ(ask("POST", served.url("/events"), R"({"eventType":"X","orderId":[1]})").status, 400);

  const Answer log = ask("GET", served.url("/events?from=" + std::to_string(first)));
  ASSERT_EQ(log.status, 200) << log.body;
  EXPECT_EQ(log.body, "[" + sent[0] + "," + sent[1] + "," + sent[2] + "," + sent[3] + "]");
  EXPECT_EQ(ask("GET", served.url("/streams/order-123456")).json["events"].get_array().size(), 3u);
  EXPECT_EQ(ask("GET", served.url("/streams/refund-7")).json["events"].get_array().size(), 1u);
  EXPECT_EQ(served.stop(), 0);
}

// Killed while several clients append: every event it answered 201 (durable) is in the store
// after a restart, at the sequence it said, and annal verify finds the store sound. Each kill comes
// after a random number of 201s the test has seen, not after a time. ANNAL_SERVE_KILLS=N for more.
TEST_F(ServeTest, KilledUnderLoadLosesNoAppendItAnsweredDurable) {
  annal::test::Watchdog watchdog("annal serve killed under load", std::chrono::seconds(1200));
  const std::uint64_t kills = annal::test::env_or("ANNAL_SERVE_KILLS", 3);
  std::mt19937_64 random(annal::test::env_or("ANNAL_SERVE_SEED", 7));
  struct Acknowledged {
    std::string stream;
    std::string id;
    std::uint64_t sequence;
  };
  std::mutex mutex;
  std::condition_variable answered;
  std::vector<Acknowledged> acknowledged;  // under mutex
  std::uint64_t next_id = 1;               // under mutex
  constexpr int kClients = 3;
  for (std::uint64_t round = 0; round < kills; ++round) {
    Served served(dir_.path());
    ASSERT_FALSE(HasFailure());
    const std::size_t kill_after = acknowledged.size() + 1 + random() % 40;
    std::atomic<bool> down{false};
    std::vector<std::thread> clients;
    for (int c = 0; c < kClients; ++c) {
      clients.emplace_back([&, c] {
        const std::string stream = "client-" + std::to_string(c);
        while (!down.load()) {
          std::uint64_t n = 0;
          {
            std::lock_guard lock(mutex);
            n = next_id++;
          }
          char id[40];
          std::snprintf(id, sizeof(id), "00000000-0000-0000-0000-%012llx", static_cast<unsigned long long>(n));
          const auto [status, sequence] = post(served.url("/streams/" + stream),
                                               R"({"type": "Load", "data": {"n": )" + std::to_string(n) + R"(}, "id": ")" + id + R"("})");
          if (status != 201) return;  // the server is gone
          std::lock_guard lock(mutex);
          acknowledged.push_back({stream, id, sequence});
          answered.notify_all();
        }
      });
    }
    {
      std::unique_lock lock(mutex);
      answered.wait(lock, [&] { return acknowledged.size() >= kill_after; });
    }
    served.kill_now();
    down.store(true);
    for (std::thread& client : clients) client.join();
  }
  const Ran verified = run({"verify", dir_.path()});
  EXPECT_EQ(verified.exit_code, 0) << verified.out << verified.err;
  auto store = engine::Engine::open(dir_.path(), {});
  ASSERT_TRUE(store.ok()) << store.status().to_string();
  std::map<std::string, std::uint64_t> stored;  // event id -> sequence
  for (int c = 0; c < kClients; ++c) {
    const auto events = store.value()->read_stream("client-" + std::to_string(c), {});
    ASSERT_TRUE(events.ok());
    for (const engine::Event& event : events.value()) stored[engine::format_id(event.header.event_id)] = event.header.sequence;
  }
  for (const Acknowledged& event : acknowledged) {
    const auto found = stored.find(event.id);
    ASSERT_NE(found, stored.end()) << event.stream << " lost " << event.id << ", answered 201 at sequence " << event.sequence;
    EXPECT_EQ(found->second, event.sequence) << event.id;
  }
  std::printf("%llu kills, %zu appends answered 201, all there\n", static_cast<unsigned long long>(kills),
              acknowledged.size());
}

}  // namespace
}  // namespace annal::cli::test
