#include "sequencer_thread.h"

#include <chrono>
#include <deque>
#include <mutex>
#include <vector>

#include "annal/base/assert.h"
#include "annal/base/thread_role.h"
#include "live_ring.h"

namespace annal::engine {

SequencerThread::SequencerThread(Handler handle) : handle_(std::move(handle)) {
  thread_ = std::thread([this] { run(); });
  name_thread(thread_, "annal-sequence");
}

namespace {

// Tickets are never freed: the sequencer may notify one just after its thread saw the change,
// returned, and exited. A thread takes one from the pool and gives it back when it exits; the next
// owner may get one stale wake-up, which its wait loop absorbs (it waits for a change of value).
class TicketPool {
 public:
  static TicketPool& instance() {
    static TicketPool* pool = new TicketPool();  // never destroyed: threads may exit after main
    return *pool;
  }
  std::atomic<std::uint32_t>* take() {
    std::lock_guard lock(mutex_);
    if (free_.empty()) return &all_.emplace_back(0);
    std::atomic<std::uint32_t>* ticket = free_.back();
    free_.pop_back();
    return ticket;
  }
  void give_back(std::atomic<std::uint32_t>* ticket) {
    std::lock_guard lock(mutex_);
    free_.push_back(ticket);
  }

 private:
  std::mutex mutex_;
  std::deque<std::atomic<std::uint32_t>> all_;  // a deque: tickets never move
  std::vector<std::atomic<std::uint32_t>*> free_;
};

struct ThreadTicket {
  std::atomic<std::uint32_t>* ticket = TicketPool::instance().take();
  ~ThreadTicket() { TicketPool::instance().give_back(ticket); }
};

}  // namespace

AppendResult SequencerThread::submit(const StreamRef& stream, const ExpectedVersion& expected,
                                     std::span<const EventData> events) {
  thread_local ThreadTicket owned;
  std::atomic<std::uint32_t>& ticket = *owned.ticket;
  // seq_cst with stop()'s store of stopping_ and run()'s load of submitting_: either this caller
  // sees the stop and leaves, or the sequencer sees the caller and waits for it.
  submitting_.fetch_add(1, std::memory_order_seq_cst);
  if (stopping_.load(std::memory_order_seq_cst)) {
    submitting_.fetch_sub(1, std::memory_order_release);
    return Status(ErrorCode::failed, "the engine is closed");
  }
  const std::uint32_t before = ticket.load(std::memory_order_relaxed);
  Request request{&stream, &expected, events, std::nullopt, &ticket, away_seat_here()};
  // Full: the sequencer is behind by kQueueCapacity requests; let it run.
  while (!queue_.push(&request)) std::this_thread::yield();
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (sleeping_.load(std::memory_order_relaxed)) {
    wake_.fetch_add(1, std::memory_order_release);
    wake_.notify_one();
  }
  // Acquire: pairs with the sequencer's release increment, so its write of the result is visible.
  while (ticket.load(std::memory_order_acquire) == before) ticket.wait(before, std::memory_order_acquire);
  AppendResult result = std::move(*request.result);
  submitting_.fetch_sub(1, std::memory_order_release);
  return result;
}

void SequencerThread::run() {
  for (;;) {
    Request* request = nullptr;
    bool handled = false;
    while (queue_.pop(request)) {
      set_away_seat_here(request->away_seat);
      try {
        request->result.emplace(handle_(*request->stream, *request->expected, request->events));
      } catch (const std::exception& error) {
        // As the caller would have seen it had it sequenced the append itself (Sequencing::caller_lock).
        request->result.emplace(Status(ErrorCode::failed, std::string("the append failed: ") + error.what()));
      }
      std::atomic<std::uint32_t>* ticket = request->ticket;  // the request dies once the ticket moves
      ticket->fetch_add(1, std::memory_order_release);
      ticket->notify_one();
      handled = true;
    }
    if (handled) continue;
    if (stopping_.load(std::memory_order_acquire)) {
      if (submitting_.load(std::memory_order_seq_cst) == 0) return;
      // A caller is between its check of the engine and its push: wait for it without sleeping
      // on wake_, which nobody may bump again.
      std::this_thread::sleep_for(std::chrono::microseconds(100));
      continue;
    }
    const std::uint32_t seen = wake_.load(std::memory_order_acquire);
    sleeping_.store(true, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (queue_.empty() && !stopping_.load(std::memory_order_acquire)) wake_.wait(seen, std::memory_order_acquire);
    sleeping_.store(false, std::memory_order_relaxed);
  }
}

void SequencerThread::stop() {
  if (!thread_.joinable()) return;
  stopping_.store(true, std::memory_order_seq_cst);
  wake_.fetch_add(1, std::memory_order_release);
  wake_.notify_one();
  thread_.join();
  ANNAL_ASSERT(queue_.empty());
}

}  // namespace annal::engine
