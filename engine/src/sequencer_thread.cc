#include "sequencer_thread.h"

#include <chrono>

#include "annal/base/assert.h"

namespace annal::engine {

SequencerThread::SequencerThread(Handler handle) : handle_(std::move(handle)) {
  thread_ = std::thread([this] { run(); });
}

AppendResult SequencerThread::submit(const StreamRef& stream, const ExpectedVersion& expected,
                                     std::span<const EventData> events) {
  // One ticket per thread: it outlives every request the thread makes.
  thread_local std::atomic<std::uint32_t> ticket{0};
  // seq_cst with stop()'s store of stopping_ and run()'s load of submitting_: either this caller
  // sees the stop and leaves, or the sequencer sees the caller and waits for it.
  submitting_.fetch_add(1, std::memory_order_seq_cst);
  if (stopping_.load(std::memory_order_seq_cst)) {
    submitting_.fetch_sub(1, std::memory_order_release);
    return Status(ErrorCode::failed, "the engine is closed");
  }
  const std::uint32_t before = ticket.load(std::memory_order_relaxed);
  Request request{&stream, &expected, events, std::nullopt, &ticket};
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
      request->result.emplace(handle_(*request->stream, *request->expected, request->events));
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
