// ProjectionRunner: one projection's thread. It reads a subscription (journal, then the live ring,
// durable events only), applies each event, serves queries between events, and hands snapshots
// of the state to a writer thread of its own so that a slow disk never pauses the projection for
// longer than snapshot() takes.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "annal/engine/projection.h"
#include "annal/engine/subscription.h"
#include "annal/journal/journal.h"
#include "annal/snapshots/snapshot_store.h"

namespace annal::engine {

// The last append made on this thread, and to which journal (Engine::append sets it): what the
// snapshot of a projection that appends from apply() must wait for.
struct AppendedHere {
  const journal::Journal* journal = nullptr;
  std::uint64_t sequence = 0;
};
inline thread_local AppendedHere t_appended_here;
// Set on every projection runner's thread (Engine::close called from apply() must not wait for it).
inline thread_local bool t_projection_thread = false;

class ProjectionRunner {
 public:
  using Clock = std::chrono::steady_clock;
  using QueryFn = std::function<void(const Projection&)>;

  // `subscription` starts right after `restored_from` (0: the beginning). `journal`: the log the
  // subscription reads, which a snapshot waits for (write_snapshots). `ids_remembered`: the
  // engine's idempotency window.
  ProjectionRunner(std::string name, std::shared_ptr<Projection> projection, const ProjectionOptions& options,
                   std::unique_ptr<Subscription> subscription, std::unique_ptr<snapshots::SnapshotStore> store,
                   std::uint64_t restored_from, journal::Journal& journal, std::size_t ids_remembered);
  ~ProjectionRunner() { stop(); }
  ProjectionRunner(const ProjectionRunner&) = delete;
  ProjectionRunner& operator=(const ProjectionRunner&) = delete;

  // Runs `fn` on the runner's thread once the projection has applied `min_sequence`, and returns
  // the sequence it had applied then. timed_out at the deadline (fn did not run and never will);
  // the projection's error if it stopped; failed if fn threw.
  Result<std::uint64_t> query(std::uint64_t min_sequence, const QueryFn& fn, Clock::time_point deadline);
  [[nodiscard]] ProjectionStatus status() const;
  [[nodiscard]] const Projection& projection() const noexcept { return *projection_; }
  [[nodiscard]] const ProjectionOptions& options() const noexcept { return options_; }
  // Asks the thread to stop after the event it is applying; queries not yet started fail. Any thread.
  void request_stop();
  // Joins the thread and takes a last snapshot if the state changed since the previous one.
  // Returns at once on the runner's own thread (the thread ends when its user code returns).
  void stop_applying();
  // Stops the snapshot writer once it has written what is pending: after the journal closed, so
  // that a snapshot waiting for the projection's appends to be durable does not wait long.
  void stop_writing();
  // Both. Not concurrently with itself; a second call does nothing.
  void stop();

 private:
  struct Query {
    std::uint64_t min_sequence;
    const QueryFn* fn;
    std::uint64_t ran_at = 0;
    Status error{};  // what fn threw
    bool running = false;
    bool done = false;
  };
  struct PendingSnapshot {
    std::uint64_t sequence;
    std::uint64_t appended;  // the last sequence the projection had appended when it was taken
    std::vector<std::byte> state;
  };

  void run();
  Status step(const std::function<void()>& call, std::uint64_t sequence);
  void serve_queries();
  [[nodiscard]] bool snapshot_due() const;
  void take_snapshot_now();  // a due one: the counters start again
  void take_snapshot();
  void note_appends();
  void warn_if_replays_could_double() const;
  void write_snapshots();
  void fail(Status error);

  const std::string name_;
  const std::shared_ptr<Projection> projection_;
  const ProjectionOptions options_;
  const std::unique_ptr<Subscription> subscription_;  // the runner thread's only
  const std::unique_ptr<snapshots::SnapshotStore> store_;
  const std::uint64_t restored_from_;
  journal::Journal& journal_;
  const std::size_t ids_remembered_;

  // Runner thread only (and stop(), once it has joined the runner).
  std::uint64_t since_snapshot_ = 0;
  std::uint64_t appended_ = 0;  // the last sequence apply() appended (0: none)
  bool state_suspect_ = false;  // apply() or end_of_batch() threw: no snapshot of that state
  Clock::time_point last_snapshot_ = Clock::now();

  // Written by the runner thread, read by status() and queries: atomics, so that the apply loop
  // takes no lock per event.
  std::atomic<std::uint64_t> applied_;
  std::atomic<std::uint64_t> replayed_{0};
  std::atomic<std::uint64_t> detached_{0};
  std::atomic<bool> live_{false};
  std::atomic<bool> stop_requested_{false};  // set under mutex_, read anywhere
  std::atomic<std::size_t> queries_waiting_{0};  // cheap look from the apply loop

  mutable std::mutex mutex_;
  std::condition_variable changed_;         // queries done, a snapshot to write, stop
  std::deque<Query*> queries_;              // under mutex_
  std::uint64_t snapshots_written_ = 0;     // under mutex_
  std::uint64_t snapshot_write_ns_total_ = 0;  // under mutex_
  std::uint64_t snapshot_write_ns_last_ = 0;   // under mutex_
  std::optional<PendingSnapshot> pending_;  // under mutex_: the newest snapshot to write
  Status error_;                            // under mutex_
  bool stopping_ = false;                   // under mutex_: the writer ends once nothing is pending
  std::thread writer_;
  std::thread thread_;
};

}  // namespace annal::engine
