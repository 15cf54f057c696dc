// DurabilityNotifier: follows the journal's durable sequence, tells the live ring each time it
// moves (live subscribers see only durable events), and runs the callbacks waiting for it
// (Engine::on_durable, durable_future) in sequence order.
//
// Two threads, so that a callback can never hold the durable gate: one follows the journal and
// moves the gate, the other runs the callbacks it settles. A callback may append (which can wait
// for a live subscriber, which waits for the gate), wait for durability or query a projection; a
// slow one delays only the callbacks after it.
//
// It follows the journal only while someone needs it: a callback is pending or a live subscriber
// reads the ring (follow()). Otherwise it sleeps: waking at every group commit for nobody cost
// the 8-writer append benchmark about a tenth of its throughput on 2 cores.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <queue>
#include <thread>
#include <vector>

#include "annal/base/status.h"
#include "annal/journal/journal.h"

namespace annal::engine {

class DurabilityNotifier {
 public:
  using Callback = std::function<void(const Status&)>;

  // `on_advance(durable)` runs on the following thread after every move of the durable sequence.
  DurabilityNotifier(journal::Journal& journal, std::function<void(std::uint64_t)> on_advance);
  ~DurabilityNotifier() {
    stop();
    ANNAL_ASSERT(!caller_.joinable());  // not destroyed from one of its own callbacks
  }
  DurabilityNotifier(const DurabilityNotifier&) = delete;
  DurabilityNotifier& operator=(const DurabilityNotifier&) = delete;

  // Calls `done` on the callback thread once `sequence` is durable, or with the error that means it
  // never will be; on this thread only after stop(). What it throws is reported on stderr.
  void add(std::uint64_t sequence, Callback done);
  // The same for the engine's own `done`, which must not block and never throws (fulfilling a
  // durable_future): run where the sequence settles, never queued behind user callbacks, so a
  // callback that waits for a future is answered.
  void add_internal(std::uint64_t sequence, Callback done);
  // A live subscriber starts (+1) or stops (-1) reading the ring behind the durable gate.
  void follow(int change);
  // Stops following, fails the callbacks still waiting (ErrorCode::failed, or the journal's error),
  // runs every settled callback and joins both threads; for after the journal closed (its waits
  // then end at once). From a callback (Engine::close there), it returns once the following thread
  // stopped: the callback thread finishes its queue, and a later stop() joins it.
  void stop();
  [[nodiscard]] bool on_callback_thread() const noexcept { return std::this_thread::get_id() == caller_.get_id(); }

 private:
  struct Pending {
    std::uint64_t sequence;
    Callback done;
    bool internal = false;  // add_internal's: run in settle(), not on the callback thread
    bool operator>(const Pending& other) const noexcept { return sequence > other.sequence; }
  };
  struct Settled {
    Callback done;
    Status status;
  };

  void add(std::uint64_t sequence, Callback done, bool internal);
  void follow_journal();
  void call_back();
  // Moves the callbacks that `durable` (or error_) settles to the callback thread's queue. Under mutex_.
  void settle(std::uint64_t durable);

  journal::Journal& journal_;
  const std::function<void(std::uint64_t)> on_advance_;
  std::mutex mutex_;
  std::condition_variable needed_;    // stopping_, pending_ or followers_ changed
  std::condition_variable settled_;   // ready_ or callers_stopping_ changed
  std::priority_queue<Pending, std::vector<Pending>, std::greater<>> pending_;  // under mutex_
  std::deque<Settled> ready_;         // under mutex_: settled, in order, for the callback thread
  Status error_;                      // under mutex_: why nothing more will become durable
  bool stopping_ = false;             // under mutex_
  bool callers_stopping_ = false;     // under mutex_: the callback thread ends once ready_ is empty
  int followers_ = 0;                 // under mutex_
  std::thread follower_;
  std::thread caller_;
};

}  // namespace annal::engine
