// The server library in the test's own process, where ASan and TSan see both sides of it: what
// stop() leaves behind while requests are still arriving.
#include "annal/server/server.h"

#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "annal/engine/engine.h"
#include "annal/server/builtin_projections.h"
#include "loopback_client.h"
#include "temp_directory.h"
#include "watchdog.h"

namespace annal::server {
namespace {

// Sends `requests` on a new connection and returns what the server sends until it closes the
// connection (a deadline only against a hang), counting each read in `received`.
std::string round_trip(std::uint16_t port, const std::string& requests, std::atomic<int>* received = nullptr) {
  const int fd = annal::test::connect_to(port);
  if (fd < 0) return "";
  // Sent whole or in part: a server that stops may close the connection before it takes it all.
  (void)send(fd, requests.data(), requests.size(), MSG_NOSIGNAL);
  std::string all = annal::test::read_until_closed(fd, [&] {
    if (received != nullptr) received->fetch_add(1, std::memory_order_release);
  });
  close(fd);
  return all;
}

std::string get_request(const std::string& target) { return "GET " + target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"; }

// The status codes of the answers in `answers`, in order.
std::vector<int> statuses_of(const std::string& answers) {
  std::vector<int> statuses;
  for (std::size_t at = answers.find("HTTP/1.1 "); at != std::string::npos; at = answers.find("HTTP/1.1 ", at + 1)) {
    statuses.push_back(std::stoi(answers.substr(at + 9, 3)));
  }
  return statuses;
}

// A client that sends `count` appends at once, pipelined on one connection, then reads until the
// server closes it. Returns the answers' status codes, in order.
std::vector<int> pipeline_appends(std::uint16_t port, int client, int count, std::atomic<int>& answered) {
  std::string requests;
  for (int i = 0; i < count; ++i) {
    const std::string body = R"({"type": "T", "data": {"client": )" + std::to_string(client) + ", \"i\": " + std::to_string(i) + "}}";
    // Mostly answered at once (owed nothing while the next is read), some once durable.
    const std::string durable = i % 4 == 0 ? "" : "?durable=false";
    requests += "POST /streams/c" + std::to_string(client) + durable + " HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                std::to_string(body.size()) + "\r\n\r\n" + body;
  }
  return statuses_of(round_trip(port, requests, &answered));
}

// stop() while clients keep sending appends: every request is answered 201 or 202 or 503 (the
// server is stopping), or its connection is closed; nothing the engine took outlives the server
// (the engine's callbacks run after it is gone when the engine closes: ASan would see them touch it).
TEST(ServerTest, StopWhileAppendsArriveLeavesNoAnswerOwed) {
  annal::test::Watchdog watchdog("server stop under appends");
  annal::test::TempDirectory dir;
  for (int round = 0; round < 20; ++round) {
    auto engine = engine::Engine::open(dir.path(), {});
    ASSERT_TRUE(engine.ok()) << engine.status().to_string();
    ServerOptions options;
    options.port = 0;
    auto server = Server::start(*engine.value(), options);
    ASSERT_TRUE(server.ok()) << server.status().to_string();
    const std::uint16_t port = server.value()->port();
    std::atomic<int> answered{0};
    std::atomic<int> finished{0};
    std::vector<std::vector<int>> statuses(4);
    std::vector<std::thread> clients;
    for (int client = 0; client < 4; ++client) {
      clients.emplace_back([&, client] {
        statuses[client] = pipeline_appends(port, client, 400, answered);
        finished.fetch_add(1, std::memory_order_release);
      });
    }
    // Stops once answers are flowing, while requests are still being read.
    while (answered.load(std::memory_order_acquire) == 0 && finished.load(std::memory_order_acquire) < 4) {
      std::this_thread::yield();
    }
    server.value()->stop();
    server.value().reset();
    for (std::thread& client : clients) client.join();
    for (const auto& of_client : statuses) {
      for (const int status : of_client) EXPECT_TRUE(status == 201 || status == 202 || status == 503) << status;
    }
    // An append the server still owed an answer when it stopped settles here at the latest.
    EXPECT_TRUE(engine.value()->close().ok());
  }
}

// Work an application hands to a query thread (Later) that throws is answered 500, and the server
// goes on: an exception out of that thread would end the process.
TEST(ServerTest, AQueryThatThrowsIsAnswered500AndTheServerGoesOn) {
  annal::test::Watchdog watchdog("a query that throws");
  annal::test::TempDirectory dir;
  auto engine = engine::Engine::open(dir.path(), {});
  ASSERT_TRUE(engine.ok()) << engine.status().to_string();
  ServerOptions options;
  options.port = 0;
  options.routes = [](const Request& request, const Refused&, const Later& later, Reply& reply) {
    if (!request.target.starts_with("/throws")) return false;
    later([](std::chrono::steady_clock::time_point) -> Answer { throw std::runtime_error("no such row"); }, std::move(reply));
    return true;
  };
  auto server = Server::start(*engine.value(), options);
  ASSERT_TRUE(server.ok()) << server.status().to_string();
  const std::uint16_t port = server.value()->port();
  for (int i = 0; i < 3; ++i) {  // more than there are query threads
    const std::string thrown = round_trip(port, get_request("/throws"));
    EXPECT_EQ(statuses_of(thrown), std::vector<int>{500}) << thrown;
    EXPECT_NE(thrown.find("no such row"), std::string::npos) << thrown;
  }
  EXPECT_EQ(statuses_of(round_trip(port, get_request("/health"))), std::vector<int>{200});
  server.value()->stop();
  EXPECT_TRUE(engine.value()->close().ok());
}

// Counts events, but only as far as the test lets it: apply() waits at a gate.
class GatedCount final : public JsonStateProjection {
 public:
  void apply(const engine::EventView&) override {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return open_; });
    ++count_;
  }
  [[nodiscard]] std::string state_json() const override { return "{\"count\":" + std::to_string(count_) + "}"; }
  void open() {
    std::lock_guard lock(mutex_);
    open_ = true;
    changed_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  bool open_ = false;
  std::uint64_t count_ = 0;  // the projection thread's
};

// Read-your-writes queries that wait for a projection wait on threads of their own: the server
// keeps answering everything else meanwhile. A min_sequence past the end of the log is refused
// at once (waiting for it could only time out).
TEST(ServerTest, QueriesWaitingForAProjectionHoldNoConnectionThread) {
  annal::test::Watchdog watchdog("queries waiting for a projection");
  annal::test::TempDirectory dir;
  auto engine = engine::Engine::open(dir.path(), {});
  ASSERT_TRUE(engine.ok()) << engine.status().to_string();
  const auto gated = std::make_shared<GatedCount>();
  ASSERT_TRUE(engine.value()->add_projection("gated", gated, {}).ok());
  // Open whatever happens, or closing the engine would wait for the projection forever.
  struct OpenAtTheEnd {
    GatedCount& gate;
    ~OpenAtTheEnd() { gate.open(); }
  } const open_at_the_end{*gated};
  ServerOptions options;
  options.port = 0;
  options.projections = {"gated"};
  options.query_timeout = std::chrono::minutes(5);  // the gate opens long before (the watchdog's limit is 2)
  auto server = Server::start(*engine.value(), options);
  ASSERT_TRUE(server.ok()) << server.status().to_string();
  const std::uint16_t port = server.value()->port();
  const std::string body = R"({"type": "T", "data": 1})";
  const std::string appended = round_trip(port, "POST /streams/s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: " +
                                                  std::to_string(body.size()) + "\r\n\r\n" + body);
  ASSERT_EQ(statuses_of(appended), std::vector<int>{201}) << appended;
  const std::size_t header = appended.find("Annal-Sequence: ");
  ASSERT_NE(header, std::string::npos) << appended;
  const std::string sequence = appended.substr(header + 16, appended.find('\r', header) - header - 16);

  // More queries wait than the server has connection threads.
  const int waiting = static_cast<int>(options.threads) + 2;
  std::vector<std::string> answers(waiting);
  std::vector<std::thread> clients;
  for (int i = 0; i < waiting; ++i) {
    clients.emplace_back([&, i] { answers[i] = round_trip(port, get_request("/projections/gated/state?min_sequence=" + sequence)); });
  }
  // All of them taken and waiting, as /metrics says, and still the server answers.
  const std::string waiting_gauge = "annal_http_queries " + std::to_string(waiting) + "\n";
  for (;;) {
    const std::string metrics = round_trip(port, get_request("/metrics"));
    if (statuses_of(metrics) != std::vector<int>{200}) {
      ADD_FAILURE() << metrics;
      break;
    }
    if (metrics.find(waiting_gauge) != std::string::npos) break;
    std::this_thread::yield();
  }
  EXPECT_EQ(statuses_of(round_trip(port, get_request("/health"))), std::vector<int>{200});
  const std::string past_the_end = round_trip(port, get_request("/projections/gated/state?min_sequence=" + std::to_string(std::stoull(sequence) + 1)));
  EXPECT_EQ(statuses_of(past_the_end), std::vector<int>{400}) << past_the_end;
  EXPECT_NE(past_the_end.find("past the last sequence appended (" + sequence + ")"), std::string::npos) << past_the_end;

  gated->open();
  for (std::thread& client : clients) client.join();
  for (const std::string& answer : answers) {
    EXPECT_EQ(statuses_of(answer), std::vector<int>{200}) << answer;
    EXPECT_NE(answer.find(R"({"name":"gated","state":{"count":1}})"), std::string::npos) << answer;
  }
  server.value()->stop();
  EXPECT_TRUE(engine.value()->close().ok());
}

}  // namespace
}  // namespace annal::server
