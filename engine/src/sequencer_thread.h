// SequencerThread: LMAX's business-logic-processor shape for appends. Appending threads hand their
// requests over a Boost.Lockfree queue to one thread, which sequences them one after the other
// (version check, journal, ring) and hands each result back. The alternative to it is the calling
// thread sequencing under a lock (Options::Sequencing); docs/engine.md has the measurements.
//
// A request lives on its caller's stack: the caller waits until it is handled, so the events it
// points to stay valid. The hand-back wakes the caller through its thread's ticket (an atomic the
// caller waits on with std::atomic::wait, from a pool that is never freed), so the sequencer never
// touches a request, or freed memory, after its caller may have moved on.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <thread>

#include <boost/lockfree/queue.hpp>

#include "annal/engine/types.h"

namespace annal::engine {

class SequencerThread {
 public:
  struct Request {
    const StreamRef* stream;
    const ExpectedVersion* expected;
    std::span<const EventData> events;
    std::optional<AppendResult> result;  // written by the sequencer before the ticket moves
    std::atomic<std::uint32_t>* ticket;
    const void* away_seat;  // the caller's (live_ring.h): the sequencer's while it handles this
  };
  using Handler = std::function<AppendResult(const StreamRef&, const ExpectedVersion&, std::span<const EventData>)>;

  // Requests queued at once before appending threads wait (yielding) for room.
  static constexpr std::size_t kQueueCapacity = 1024;

  explicit SequencerThread(Handler handle);
  ~SequencerThread() { stop(); }
  SequencerThread(const SequencerThread&) = delete;
  SequencerThread& operator=(const SequencerThread&) = delete;

  // Hands the append to the sequencer and waits for its result. Any thread. ErrorCode::failed
  // once stop() has begun.
  AppendResult submit(const StreamRef& stream, const ExpectedVersion& expected, std::span<const EventData> events);
  // Handles every request already submitted, then joins the thread.
  void stop();

 private:
  void run();

  const Handler handle_;
  boost::lockfree::queue<Request*, boost::lockfree::capacity<kQueueCapacity>> queue_;
  // Lost-wake-up protocol: the sequencer reads wake_, says it is sleeping, looks at the queue once
  // more and only then waits for wake_ to change; a submitter pushes, then looks at sleeping_ and
  // bumps wake_ if set. A seq_cst fence on each side, between its store and its load, makes at
  // least one of them see the other.
  std::atomic<std::uint32_t> wake_{0};
  std::atomic<bool> sleeping_{false};
  std::atomic<std::size_t> submitting_{0};  // callers inside submit()
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace annal::engine
