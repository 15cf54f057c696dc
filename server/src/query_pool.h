// Threads of their own for the requests that may wait: a projection query with ?min_sequence=
// waits until the projection has applied it. On a connection's thread, two such waits would stall
// every connection (the server has two); here they stall only each other, and a bounded queue
// says 503 before the backlog grows without end.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "annal/server/server.h"

namespace annal::server {

class QueryPool {
 public:
  using Clock = std::chrono::steady_clock;
  // Each query has `timeout` from the moment it is queued, its wait for a thread included.
  QueryPool(unsigned threads, std::size_t waiting_max, Clock::duration timeout);
  ~QueryPool() { stop(); }
  QueryPool(const QueryPool&) = delete;
  QueryPool& operator=(const QueryPool&) = delete;

  // Replies with work(deadline)'s answer, worked out on a pool thread; 503 at once if
  // `waiting_max` queries are already waiting for a thread, or the pool has stopped; 504 if the
  // deadline passed before a thread was free. Any thread.
  void run(std::function<Answer(Clock::time_point deadline)> work, Reply reply);
  // Queries running or waiting for a thread.
  [[nodiscard]] std::size_t pending() const {
    std::lock_guard lock(mutex_);
    return waiting_.size() + running_;
  }
  // Answers 503 to every query not yet started, waits for the running ones, joins the threads.
  // Idempotent.
  void stop();

 private:
  struct Job {
    std::function<Answer(Clock::time_point)> work;
    Reply reply;
    Clock::time_point deadline;
  };
  void serve();
  static Answer worked_out(Job& job);

  const std::size_t waiting_max_;
  const Clock::duration timeout_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Job> waiting_;  // under mutex_
  std::size_t running_ = 0;  // under mutex_
  bool stopping_ = false;    // under mutex_
  std::vector<std::thread> threads_;
};

}  // namespace annal::server
