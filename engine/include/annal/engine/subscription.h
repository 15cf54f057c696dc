// Subscription: every event from a global sequence on, without a gap or a duplicate, first read
// from the journal, then live from the ring.
//
//   auto subscription = engine->subscribe(checkpoint);       // 1 for the whole log
//   for (;;) {
//     auto event = subscription.value()->next(Engine::Clock::now() + 1s);
//     if (event.code() == ErrorCode::timed_out) continue;     // nothing new; store the checkpoint
//     if (!event.ok()) break;                                 // the engine failed or closed
//     apply(event.value());
//     checkpoint = subscription.value()->position();
//   }
//
// How it switches. It reads the journal until it has caught up with the durable sequence, then
// takes a seat in the ring (a gating sequence, joined at the ring's cursor c). Events up to c are in
// the journal already, so it keeps reading the journal up to c and then reads the ring from c + 1:
// the hand-over point is one sequence, neither skipped nor read twice. In the ring it sees an
// event only once it is durable (its barrier follows the engine's durable sequence).
//
// A live subscription that falls Options::subscriber_lag_max events behind leaves the ring at its
// next call and goes on from the journal until it has caught up again, so a slow reader does not
// hold appends back for long. Between calls it holds no slot (next() copies the event out of the
// ring), so a reader busy in its own code, or appending (a process manager), is taken out of the
// ring by an append it holds up, and goes on from the journal at its next call: appends never
// wait for it for long (docs/engine.md, Subscriptions). When the seats are taken
// (Options::live_subscriptions_max) it keeps tailing the journal, which is as correct and a
// little slower.
//
// Not thread-safe: one thread per subscription (wake() aside). Destroy it before the engine.
#pragma once

#include <chrono>
#include <cstdint>

#include "annal/base/status.h"
#include "annal/engine/types.h"

namespace annal::engine {

class Subscription {
 public:
  virtual ~Subscription() = default;
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;

  // The next event, waiting for it until `deadline` (ErrorCode::timed_out then; nothing is lost,
  // call again). The view stays valid until the next call. Errors: corruption, not_found (the
  // position was removed by retention), failed (the engine stopped or closed).
  virtual Result<EventView> next(std::chrono::steady_clock::time_point deadline) = 0;
  // Makes a next() waiting on another thread return timed_out now, or the next call return at once
  // if none is waiting (a reader that also serves requests, or is asked to stop). Any thread.
  virtual void wake() noexcept = 0;
  // The sequence next() returns next: the checkpoint to resume from.
  [[nodiscard]] virtual std::uint64_t position() const noexcept = 0;
  // Whether it reads the ring now, and how often it fell behind and left it (tests and metrics).
  [[nodiscard]] virtual bool live() const noexcept = 0;
  [[nodiscard]] virtual std::uint64_t detached() const noexcept = 0;

 protected:
  Subscription() = default;
};

}  // namespace annal::engine
