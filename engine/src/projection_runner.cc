#include "projection_runner.h"

#include <algorithm>
#include <cstdio>

#include "annal/base/thread_role.h"
#include "annal/base/user_code.h"

namespace annal::engine {
namespace {

// How long the apply loop waits for an event before it looks at queries and snapshots again. A
// query that can be answered at once wakes it sooner (Subscription::wake), unless it is reading
// the journal: then this is the longest such a query waits while the log is idle.
constexpr auto kIdleSlice = std::chrono::milliseconds(2);
// A snapshot waits this long for the log to hold what it depends on, then is not written.
constexpr auto kSnapshotDurableWait = std::chrono::seconds(30);

}  // namespace

ProjectionRunner::ProjectionRunner(std::string name, std::shared_ptr<Projection> projection,
                                   const ProjectionOptions& options, std::unique_ptr<Subscription> subscription,
                                   std::unique_ptr<snapshots::SnapshotStore> store, std::uint64_t restored_from,
                                   journal::Journal& journal, std::size_t ids_remembered)
    : name_(std::move(name)), projection_(std::move(projection)), options_(options),
      subscription_(std::move(subscription)), store_(std::move(store)), restored_from_(restored_from),
      journal_(journal), ids_remembered_(ids_remembered), applied_(restored_from) {
  writer_ = std::thread([this] { write_snapshots(); });
  thread_ = std::thread([this] { run(); });
  name_thread(writer_, "annal-proj-snap");
  name_thread(thread_, "annal-project");
}

void ProjectionRunner::run() {
  t_projection_thread = true;
  bool in_batch = false;  // events applied that end_of_batch has not followed yet
  // A batch ends when nothing more is ready, and before anything reads the state (a query, a
  // snapshot): a projection that buffers in apply() and folds in end_of_batch() must not be seen,
  // or snapshotted, as of a sequence whose events it still holds apart.
  const auto end_batch = [&]() -> Status {
    in_batch = false;
    const std::uint64_t applied = applied_.load(std::memory_order_relaxed);
    const Status ended = step([&] { projection_->end_of_batch(applied); }, applied);
    if (!ended.ok()) state_suspect_ = true;
    return ended;
  };
  while (!stop_requested_.load(std::memory_order_acquire)) {
    const bool asked = queries_waiting_.load(std::memory_order_acquire) > 0;
    const bool snapshot = snapshot_due();
    if (in_batch && (asked || snapshot)) {
      if (Status ended = end_batch(); !ended.ok()) return fail(ended);
    }
    if (asked) serve_queries();
    note_appends();  // before the snapshot: what it must wait for
    if (snapshot) take_snapshot_now();
    // Within a batch, only an event that is there already; then the batch ends.
    auto event = subscription_->next(in_batch ? Clock::time_point{} : Clock::now() + kIdleSlice);
    if (event.code() == ErrorCode::timed_out) {
      live_.store(subscription_->live(), std::memory_order_relaxed);
      if (in_batch) {
        if (Status ended = end_batch(); !ended.ok()) return fail(ended);
      }
      // System records stepped over with no event after them (an erasure last in the log) count
      // as applied too, in a batch of their own: a query for the log's last sequence is answered,
      // and a projection that keeps its place (an exporter, a checkpoint) moves past them.
      const std::uint64_t passed = subscription_->position() - 1;
      if (passed > applied_.load(std::memory_order_relaxed)) {
        applied_.store(passed, std::memory_order_release);
        if (Status ended = end_batch(); !ended.ok()) return fail(ended);
      }
      continue;
    }
    if (!event.ok()) return fail(event.status());
    const EventView& view = event.value();
    if (Status applied = step([&] { projection_->apply(view); }, view.header.sequence); !applied.ok()) {
      state_suspect_ = true;  // it threw half-way through an event
      return fail(applied);
    }
    in_batch = true;
    ++since_snapshot_;
    replayed_.fetch_add(1, std::memory_order_relaxed);
    live_.store(subscription_->live(), std::memory_order_relaxed);
    detached_.store(subscription_->detached(), std::memory_order_relaxed);
    // System records the subscription stepped over count as applied.
    applied_.store(subscription_->position() - 1, std::memory_order_release);
  }
  // Stopped mid-batch: the last snapshot (stop_applying) follows, of a state that must hold
  // every event counted as applied. Only for a snapshotted projection: one that keeps its state
  // elsewhere replays from its own checkpoint, and is being told to stop.
  if (in_batch && projection_->schema() != 0) {
    if (Status ended = end_batch(); !ended.ok()) fail(ended);
  }
  note_appends();  // for the snapshot stop() takes
}

// Keeps the last sequence user code on this thread appended (apply(), end_of_batch(), a query
// function): the next snapshot waits for it.
void ProjectionRunner::note_appends() {
  if (t_appended_here.journal != &journal_ || t_appended_here.sequence == appended_) return;
  if (appended_ == 0) warn_if_replays_could_double();
  // The highest: a repeated append's receipt is its original's, older than what came before it.
  appended_ = std::max(appended_, t_appended_here.sequence);
}

// A projection that appends from apply() is a process manager: after a crash it appends again for
// the events it replays, and only the idempotency window makes those repeats harmless
// (docs/engine.md, Process managers). Said once, at its first append, if its replays can be longer.
void ProjectionRunner::warn_if_replays_could_double() const {
  const std::uint64_t every = options_.snapshot_every_events;
  std::string why;
  if (projection_->schema() == 0) {
    why = "it has no snapshots (schema 0), so every open replays the whole log";
  } else if (every == 0 || every > ids_remembered_ / 2) {
    why = "it is snapshotted every " + (every == 0 ? std::string("interval only") : std::to_string(every) + " events") +
          ", not well below the idempotency window of " + std::to_string(ids_remembered_) + " ids";
  }
  if (why.empty()) return;
  std::fprintf(stderr,
               "annal: projection %s appends from apply(), but %s: after a crash, follow-ups the window has "
               "forgotten would be appended twice (docs/engine.md, Process managers)\n",
               name_.c_str(), why.c_str());
}

// Calls into the projection; what it throws stops it.
Status ProjectionRunner::step(const std::function<void()>& call, std::uint64_t sequence) {
  return call_user_code(call, [&] { return "projection " + name_ + " at sequence " + std::to_string(sequence); });
}

// Runs every query the projection can answer now, outside the lock: the caller waits for it.
void ProjectionRunner::serve_queries() {
  const std::uint64_t applied = applied_.load(std::memory_order_relaxed);  // this thread writes it
  std::vector<Query*> ready;
  {
    std::lock_guard lock(mutex_);
    for (Query* query : queries_) {
      if (!query->running && query->min_sequence <= applied) {
        query->running = true;
        query->ran_at = applied;
        ready.push_back(query);
      }
    }
  }
  // What a query function throws is its caller's error, not the projection's.
  for (Query* query : ready) {
    query->error = call_user_code([&] { (*query->fn)(*projection_); }, [&] { return "a query of projection " + name_; });
  }
  std::lock_guard lock(mutex_);
  for (Query* query : ready) {
    query->done = true;
    std::erase(queries_, query);
  }
  queries_waiting_.store(queries_.size(), std::memory_order_release);
  changed_.notify_all();
}

Result<std::uint64_t> ProjectionRunner::query(std::uint64_t min_sequence, const QueryFn& fn,
                                              Clock::time_point deadline) {
  Query query{.min_sequence = min_sequence, .fn = &fn};
  std::unique_lock lock(mutex_);
  if (!error_.ok()) return error_;
  queries_.push_back(&query);
  queries_waiting_.store(queries_.size(), std::memory_order_release);
  // Answerable now: do not leave it until the runner's wait for the next event ends.
  if (min_sequence <= applied_.load(std::memory_order_acquire)) subscription_->wake();
  const bool answered = changed_.wait_until(lock, deadline, [&] {
    return query.done || !error_.ok() || stop_requested_.load(std::memory_order_acquire);
  });
  // Not done: withdraw it, unless the runner has started it, in which case it finishes first
  // (fn points into this frame).
  if (!(answered && query.done) && query.running) changed_.wait(lock, [&] { return query.done; });
  if (query.done) {
    if (!query.error.ok()) return query.error;
    return query.ran_at;
  }
  std::erase(queries_, &query);
  queries_waiting_.store(queries_.size(), std::memory_order_release);
  if (!error_.ok()) return error_;
  if (stop_requested_.load(std::memory_order_acquire)) return Status(ErrorCode::failed, "projection " + name_ + " stopped");
  return Status(ErrorCode::timed_out, "projection " + name_ + " has applied up to sequence " +
                                          std::to_string(applied_.load(std::memory_order_acquire)) + ", not yet " +
                                          std::to_string(min_sequence));
}

bool ProjectionRunner::snapshot_due() const {
  if (projection_->schema() == 0 || since_snapshot_ == 0) return false;
  const bool by_count = options_.snapshot_every_events != 0 && since_snapshot_ >= options_.snapshot_every_events;
  const bool by_time = options_.snapshot_every.count() != 0 && Clock::now() - last_snapshot_ >= options_.snapshot_every;
  return by_count || by_time;
}

void ProjectionRunner::take_snapshot_now() {
  since_snapshot_ = 0;
  last_snapshot_ = Clock::now();
  take_snapshot();
}

// The only pause a snapshot costs the projection: copying its state. One whose snapshot() throws
// is only not snapshotted (said once per failure, like a write that fails).
void ProjectionRunner::take_snapshot() {
  const std::uint64_t applied = applied_.load(std::memory_order_relaxed);
  std::vector<std::byte> state;
  const Status taken = call_user_code([&] { state = projection_->snapshot(); }, [&] {
    return "snapshot() of projection " + name_ + " at sequence " + std::to_string(applied);
  });
  if (!taken.ok()) {
    std::fprintf(stderr, "annal: %s; no snapshot taken\n", taken.to_string().c_str());
    return;
  }
  std::lock_guard lock(mutex_);
  // A newer one replaces an unwritten one.
  pending_ = PendingSnapshot{applied, appended_, std::move(state)};
  changed_.notify_all();
}

void ProjectionRunner::write_snapshots() {
  for (;;) {
    PendingSnapshot snapshot;
    {
      std::unique_lock lock(mutex_);
      changed_.wait(lock, [&] { return stopping_ || pending_.has_value(); });
      if (!pending_) return;  // stopping, nothing left to write
      snapshot = std::move(*pending_);
      pending_.reset();
    }
    // Written only once the log holds, durably, what the projection appended from apply() before
    // it was taken (a process manager's follow-ups): otherwise a crash could keep the snapshot and
    // lose a follow-up whose trigger it has already passed, never to be replayed.
    Status written;
    if (snapshot.appended > journal_.durable_sequence()) {
      written = journal_.wait_durable(snapshot.appended, Clock::now() + kSnapshotDurableWait);
    }
    const Clock::time_point started = Clock::now();
    if (written.ok()) written = store_->write(name_, projection_->schema(), snapshot.sequence, snapshot.state);
    const auto took = static_cast<std::uint64_t>(std::chrono::nanoseconds(Clock::now() - started).count());
    std::lock_guard lock(mutex_);
    if (written.ok()) {
      ++snapshots_written_;
      snapshot_write_ns_total_ += took;
      snapshot_write_ns_last_ = took;
    } else {
      // Not fatal: recovery uses an older snapshot or replays more. Said once per failure.
      std::fprintf(stderr, "annal: projection %s: snapshot at sequence %llu not written: %s\n", name_.c_str(),
                   static_cast<unsigned long long>(snapshot.sequence), written.to_string().c_str());
    }
  }
}

void ProjectionRunner::fail(Status error) {
  std::lock_guard lock(mutex_);
  // The engine is closing: not the projection's failure.
  if (stopping_ || stop_requested_.load(std::memory_order_acquire)) return;
  error_ = std::move(error);
  changed_.notify_all();
}

ProjectionStatus ProjectionRunner::status() const {
  // User code, outside the lock.
  Status retrying;
  if (const Status asked = call_user_code([&] { retrying = projection_->health(); },
                                          [&] { return "health() of projection " + name_; });
      !asked.ok()) {
    retrying = asked;
  }
  std::lock_guard lock(mutex_);
  return {.applied = applied_.load(std::memory_order_acquire), .restored_from = restored_from_,
          .replayed = replayed_.load(std::memory_order_relaxed), .snapshots_written = snapshots_written_,
          .snapshot_write_ns_total = snapshot_write_ns_total_, .snapshot_write_ns_last = snapshot_write_ns_last_,
          .detached = detached_.load(std::memory_order_relaxed), .live = live_.load(std::memory_order_relaxed),
          .error = error_, .retrying = std::move(retrying)};
}

void ProjectionRunner::request_stop() {
  {
    std::lock_guard lock(mutex_);  // set under it: waiting queries see it, and fail now, not at their timeout
    if (stop_requested_.exchange(true, std::memory_order_acq_rel)) return;
  }
  changed_.notify_all();
  subscription_->wake();
  // Outside the lock: user code.
  const Status told = call_user_code([&] { projection_->stop_requested(); }, [&] { return "stop_requested() of projection " + name_; });
  if (!told.ok()) std::fprintf(stderr, "annal: %s\n", told.to_string().c_str());
}

void ProjectionRunner::stop_applying() {
  request_stop();
  // From the runner's own thread (Engine::close from apply() or a query function): the thread
  // ends when that call returns, and the stop() in the destructor finishes the work.
  if (std::this_thread::get_id() == thread_.get_id() || !thread_.joinable()) return;
  thread_.join();
  // The runner is gone, so the state is this thread's to copy: a last snapshot spares the next
  // open the replay of everything since the previous one.
  if (projection_->schema() != 0 && since_snapshot_ != 0 && !state_suspect_) {
    since_snapshot_ = 0;
    take_snapshot();
  }
}

void ProjectionRunner::stop_writing() {
  if (thread_.joinable()) return;  // still applying (stop_applying from its own thread)
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  if (writer_.joinable()) writer_.join();
}

void ProjectionRunner::stop() {
  stop_applying();
  stop_writing();
}

}  // namespace annal::engine
