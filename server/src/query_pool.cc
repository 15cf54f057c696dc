#include "query_pool.h"

#include <algorithm>
#include <exception>
#include <string>
#include <utility>

namespace annal::server {

QueryPool::QueryPool(unsigned threads, std::size_t waiting_max, Clock::duration timeout)
    : waiting_max_(std::max<std::size_t>(1, waiting_max)), timeout_(timeout) {
  for (unsigned i = 0; i < std::max(1u, threads); ++i) threads_.emplace_back([this] { serve(); });
}

void QueryPool::run(std::function<Answer(Clock::time_point deadline)> work, Reply reply) {
  {
    std::lock_guard lock(mutex_);
    if (!stopping_ && waiting_.size() < waiting_max_) {
      waiting_.push_back({std::move(work), std::move(reply), Clock::now() + timeout_});
      changed_.notify_one();
      return;
    }
  }
  reply(error_answer(503, "too_many_queries",
                     "at most " + std::to_string(waiting_max_) + " queries wait for a projection at once; try again"));
}

void QueryPool::stop() {
  std::deque<Job> unstarted;
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
    unstarted.swap(waiting_);
  }
  changed_.notify_all();
  for (Job& job : unstarted) job.reply(error_answer(503, "stopping", "the server is stopping; try again once it is back"));
  for (std::thread& thread : threads_) thread.join();
}

// An application's work (Later) that throws answers 500: unwinding out of this thread would end
// the whole process.
Answer QueryPool::worked_out(Job& job) {
  try {
    return job.work(job.deadline);
  } catch (const std::exception& error) {
    return error_answer(500, "query_failed", std::string("the query threw: ") + error.what());
  } catch (...) {
    return error_answer(500, "query_failed", "the query threw something that is not a std::exception");
  }
}

void QueryPool::serve() {
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mutex_);
      changed_.wait(lock, [&] { return stopping_ || !waiting_.empty(); });
      if (waiting_.empty()) return;  // stopping
      job = std::move(waiting_.front());
      waiting_.pop_front();
      ++running_;
    }
    // A query that waited its whole time for a thread is not started: its client is owed an
    // answer within the timeout, and a backlog behind a stalled projection must drain.
    Answer answer = Clock::now() >= job.deadline
                        ? error_answer(504, "not_yet_applied", "no query thread was free in time; try again")
                        : worked_out(job);
    {
      std::lock_guard lock(mutex_);
      --running_;
    }
    job.reply(std::move(answer));
  }
}

}  // namespace annal::server
