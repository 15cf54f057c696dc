// DurabilityNotifier: one thread that follows the journal's durable sequence, tells the live ring
// each time it moves (live subscribers see only durable events), and runs the callbacks waiting
// for it (Engine::on_durable, durable_future) in sequence order.
//
// It follows the journal only while someone needs it: a callback is pending or a live subscriber
// reads the ring (follow()). Otherwise it sleeps: waking at every group commit for nobody cost
// the 8-writer append benchmark about a tenth of its throughput on 2 cores.
#pragma once

#include <condition_variable>
#include <cstdint>
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

  // `on_advance(durable)` runs on the notifier thread after every move of the durable sequence.
  DurabilityNotifier(journal::Journal& journal, std::function<void(std::uint64_t)> on_advance);
  ~DurabilityNotifier() { stop(); }
  DurabilityNotifier(const DurabilityNotifier&) = delete;
  DurabilityNotifier& operator=(const DurabilityNotifier&) = delete;

  // Calls `done` once `sequence` is durable, or with the error that means it never will be: on the
  // notifier thread, or at once on this one if that is already known.
  void add(std::uint64_t sequence, Callback done);
  // A live subscriber starts (+1) or stops (-1) reading the ring behind the durable gate.
  void follow(int change);
  // Joins the thread; for after the journal closed (its waits then end at once). Callbacks still
  // waiting get ErrorCode::failed.
  void stop();

 private:
  struct Pending {
    std::uint64_t sequence;
    Callback done;
    bool operator>(const Pending& other) const noexcept { return sequence > other.sequence; }
  };

  void run();
  // Takes the callbacks the durable sequence (or an error) settles, under mutex_.
  std::vector<Pending> settled(std::uint64_t durable);

  journal::Journal& journal_;
  const std::function<void(std::uint64_t)> on_advance_;
  std::mutex mutex_;
  std::condition_variable needed_;  // stopping_, pending_ or followers_ changed
  std::priority_queue<Pending, std::vector<Pending>, std::greater<>> pending_;  // under mutex_
  Status error_;          // under mutex_: why nothing more will become durable
  bool stopping_ = false;  // under mutex_
  int followers_ = 0;      // under mutex_
  std::thread thread_;
};

}  // namespace annal::engine
