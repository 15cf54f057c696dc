// The tests' own HTTP client side, for what curl cannot do: a connection held open, a request cut
// short, bytes read exactly as they came.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <string>

namespace annal::test {

// A TCP connection to `port` on 127.0.0.1 (-1 if it could not connect).
inline int connect_to(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Everything the server sends on `fd` until it closes the connection (a deadline only against a
// hang), calling on_read() after each read.
template <typename OnRead = void (*)()>
std::string read_until_closed(int fd, OnRead on_read = [] {}) {
  std::string all;
  char bytes[4096];
  pollfd ready{.fd = fd, .events = POLLIN, .revents = 0};
  while (poll(&ready, 1, 120'000) == 1) {
    const ssize_t n = read(fd, bytes, sizeof(bytes));
    if (n <= 0) break;
    all.append(bytes, static_cast<std::size_t>(n));
    on_read();
  }
  return all;
}

}  // namespace annal::test
