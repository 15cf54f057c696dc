// StallingProxy: a TCP port on loopback that forwards to a Unix socket (a PostgreSQL cluster's)
// until stall(). From then on it forwards nothing and accepts nothing, yet closes nothing: the
// kernel still completes new TCP handshakes (the backlog) and acknowledges what clients send. To a
// client that is a host gone silent, which no error ever reports: the case where only the client's
// own timeouts, or its being told to stop, end a wait. cut() then closes the connections it had
// (the client sees them end), still accepting nothing. The destructor closes everything.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace annal::test {

class StallingProxy {
 public:
  explicit StallingProxy(std::string unix_path) : unix_path_(std::move(unix_path)) {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    if (listener_ < 0 || ::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
        ::listen(listener_, 16) != 0 || ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      throw std::runtime_error("StallingProxy: cannot listen on loopback: " + std::string(std::strerror(errno)));
    }
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~StallingProxy() {
    change([this] { done_ = true; });
    thread_.join();
    for (const auto& [client, server] : pairs_) {
      ::close(client);
      ::close(server);
    }
    ::close(listener_);
    ::close(wake_);
  }
  StallingProxy(const StallingProxy&) = delete;
  StallingProxy& operator=(const StallingProxy&) = delete;

  [[nodiscard]] int port() const { return port_; }
  // Returns once nothing more is forwarded or accepted.
  void stall() { change([this] { stalled_ = true; }); }
  // Forwards as before until a client sends `text` (in one read), then stalls as stall() does,
  // holding that data: a server that took a statement and never answers.
  void stall_on(std::string text) { change([&] { trigger_ = std::move(text); }); }
  // Whether a client has tried to connect since stall(): its handshake is done, nobody accepts it.
  [[nodiscard]] bool attempted() {
    std::lock_guard lock(mutex_);
    return attempted_;
  }
  // Whether a client has sent something since stall(), which the proxy holds unforwarded.
  [[nodiscard]] bool holding() {
    std::lock_guard lock(mutex_);
    return held_;
  }
  // Stalled too, and the connections it had are closed.
  void cut() {
    change([this] {
      stalled_ = true;
      cut_ = true;
    });
  }

 private:
  // Makes a change the proxy's thread takes up between two polls, and waits until it has.
  template <class Change>
  void change(Change&& make) {
    std::unique_lock lock(mutex_);
    make();
    const std::uint64_t one = 1;
    if (::write(wake_, &one, sizeof(one)) != sizeof(one)) throw std::runtime_error("StallingProxy: eventfd");
    const std::uint64_t asked = ++asked_;
    taken_up_.wait(lock, [&] { return taken_ >= asked || done_; });
  }

  void run() {
    std::vector<char> buffer(64 * 1024);
    for (;;) {
      bool stalled = false;
      {
        std::lock_guard lock(mutex_);
        if (cut_) {
          for (const auto& [client, server] : pairs_) {
            ::close(client);
            ::close(server);
          }
          pairs_.clear();
          cut_ = false;
        }
        stalled = stalled_;
        taken_ = asked_;
        taken_up_.notify_all();
        if (done_) return;
      }
      std::vector<pollfd> ready{{wake_, POLLIN, 0}};
      bool watch_backlog = false;
      {
        std::lock_guard lock(mutex_);
        watch_backlog = stalled && !attempted_;
      }
      bool watch_held = false;
      {
        std::lock_guard lock(mutex_);
        watch_held = stalled && !held_;
      }
      ready.push_back({listener_, static_cast<short>(!stalled || watch_backlog ? POLLIN : 0), 0});
      if (!stalled || watch_held) {
        for (const auto& [client, server] : pairs_) {
          ready.push_back({client, POLLIN, 0});
          ready.push_back({server, POLLIN, 0});
        }
      }
      if (::poll(ready.data(), ready.size(), -1) < 0) continue;  // EINTR
      if (ready[0].revents != 0) {
        std::uint64_t count = 0;
        (void)!::read(wake_, &count, sizeof(count));
        continue;  // take up the change before forwarding anything more
      }
      if (stalled) {
        std::lock_guard lock(mutex_);
        // Each is watched no more once seen: it stays readable.
        if (watch_backlog && ready[1].revents != 0) attempted_ = true;
        for (std::size_t i = 2; i < ready.size(); i += 2) {
          if (watch_held && ready[i].revents != 0) held_ = true;
        }
        continue;
      }
      const std::size_t polled = pairs_.size();
      if (ready[1].revents != 0) accept_one();
      std::vector<std::size_t> ended;
      for (std::size_t i = 0; i < polled; ++i) {
        const auto [client, server] = pairs_[i];
        if ((ready[2 + 2 * i].revents != 0 && !forward(client, server, buffer, true)) ||
            (ready[3 + 2 * i].revents != 0 && !forward(server, client, buffer, false))) {
          ended.push_back(i);
        }
      }
      for (auto i = ended.rbegin(); i != ended.rend(); ++i) {
        ::close(pairs_[*i].first);
        ::close(pairs_[*i].second);
        pairs_.erase(pairs_.begin() + static_cast<std::ptrdiff_t>(*i));
      }
    }
  }

  void accept_one() {
    const int client = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) return;
    const int server = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, unix_path_.c_str(), sizeof(address.sun_path) - 1);
    if (server < 0 || ::connect(server, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
      ::close(client);
      if (server >= 0) ::close(server);
      return;
    }
    pairs_.emplace_back(client, server);
  }

  // One read's worth from `from` to `to`; false once either end has gone. From a client, data
  // holding stall_on()'s text is kept back, and the proxy stalls.
  bool forward(int from, int to, std::vector<char>& buffer, bool from_client) {
    const ssize_t got = ::read(from, buffer.data(), buffer.size());
    if (got <= 0) return false;
    if (from_client) {
      std::lock_guard lock(mutex_);
      if (!trigger_.empty() && std::string_view(buffer.data(), static_cast<std::size_t>(got)).find(trigger_) !=
                                   std::string_view::npos) {
        stalled_ = true;
        return true;
      }
    }
    for (ssize_t sent = 0; sent < got;) {
      // MSG_NOSIGNAL: a peer gone is an error here, not a SIGPIPE for the test process.
      const ssize_t wrote = ::send(to, buffer.data() + sent, static_cast<std::size_t>(got - sent), MSG_NOSIGNAL);
      if (wrote <= 0) return false;
      sent += wrote;
    }
    return true;
  }

  const std::string unix_path_;
  int listener_ = -1;
  int port_ = 0;
  const int wake_ = ::eventfd(0, EFD_CLOEXEC);
  std::vector<std::pair<int, int>> pairs_;  // the proxy thread's: (client, server) sockets
  std::mutex mutex_;
  std::condition_variable taken_up_;
  bool stalled_ = false;        // under mutex_
  bool cut_ = false;            // under mutex_
  bool done_ = false;           // under mutex_
  bool attempted_ = false;      // under mutex_
  bool held_ = false;           // under mutex_
  std::string trigger_;         // under mutex_: stall_on()'s text
  std::uint64_t asked_ = 0;     // under mutex_: changes made
  std::uint64_t taken_ = 0;     // under mutex_: changes the thread has taken up
  std::thread thread_;
};

}  // namespace annal::test
