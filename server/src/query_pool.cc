#include "query_pool.h"

#include <string>
#include <utility>

namespace annal::server {

QueryPool::QueryPool(unsigned threads, std::size_t waiting_max) : waiting_max_(waiting_max) {
  for (unsigned i = 0; i < std::max(1u, threads); ++i) threads_.emplace_back([this] { serve(); });
}

void QueryPool::run(std::function<Answer()> work, Reply reply) {
  {
    std::lock_guard lock(mutex_);
    if (!stopping_ && waiting_.size() < waiting_max_) {
      waiting_.push_back({std::move(work), std::move(reply)});
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
    Answer answer = job.work();
    {
      std::lock_guard lock(mutex_);
      --running_;
    }
    job.reply(std::move(answer));
  }
}

}  // namespace annal::server
