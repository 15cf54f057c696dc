// The server library in the test's own process, where ASan and TSan see both sides of it: what
// stop() leaves behind while requests are still arriving.
#include "annal/server/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "annal/engine/engine.h"
#include "temp_directory.h"
#include "watchdog.h"

namespace annal::server {
namespace {

// A client that sends `count` appends at once, pipelined on one connection, then reads
// until the server closes it. Returns the answers' status codes, in order.
std::vector<int> pipeline_appends(std::uint16_t port, int client, int count, std::atomic<int>& answered) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
  std::vector<int> statuses;
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return statuses;
  }
  std::string requests;
  for (int i = 0; i < count; ++i) {
    const std::string body = R"({"type": "T", "data": {"client": )" + std::to_string(client) + ", \"i\": " + std::to_string(i) + "}}";
    // Mostly answered at once (owed nothing while the next is read), some once durable.
    const std::string durable = i % 4 == 0 ? "" : "?durable=false";
    requests += "POST /streams/c" + std::to_string(client) + durable + " HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                std::to_string(body.size()) + "\r\n\r\n" + body;
  }
  // Sent whole or in part: a server that stops may close the connection before it takes it all.
  (void)send(fd, requests.data(), requests.size(), MSG_NOSIGNAL);
  std::string all;
  char bytes[4096];
  pollfd ready{.fd = fd, .events = POLLIN, .revents = 0};
  while (poll(&ready, 1, 120'000) == 1) {
    const ssize_t n = read(fd, bytes, sizeof(bytes));
    if (n <= 0) break;
    all.append(bytes, static_cast<std::size_t>(n));
    answered.fetch_add(1, std::memory_order_release);
  }
  close(fd);
  for (std::size_t at = all.find("HTTP/1.1 "); at != std::string::npos; at = all.find("HTTP/1.1 ", at + 1)) {
    statuses.push_back(std::stoi(all.substr(at + 9, 3)));
  }
  return statuses;
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
    std::atomic<int> answered{0};
    std::vector<std::vector<int>> statuses(4);
    std::vector<std::thread> clients;
    for (int client = 0; client < 4; ++client) {
      clients.emplace_back([&, client] { statuses[client] = pipeline_appends(server.value()->port(), client, 400, answered); });
    }
    // Stops once answers are flowing, while requests are still being read.
    while (answered.load(std::memory_order_acquire) == 0) std::this_thread::yield();
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

}  // namespace
}  // namespace annal::server
