// What the engine's own threads tell the system about themselves: a name (top -H, perf, gdb and
// /proc show it: annal-writer, annal-chain ...), and for a thread doing long background work on
// the CPU (the chain thread, hashing sealed segments) a promise to step aside.
//
// Why: a thread that computes for milliseconds keeps its core until the scheduler's next tick
// (4 ms at HZ=250) even when a thread an append waits on is woken on that core: EEVDF protects
// the running thread's slice, and with PREEMPT_NONE nothing else stops it. The chain thread hashing
// a 64 MiB segment held the journal's writer, the block layer's completion worker and the caller
// off their core for 3-4 ms at a time: the tail of engine_latency_at_rate (docs/journal.md).
// Lowering its priority (nice 10) did not help there, since the slice is protected whatever the
// weight; yielding between pieces of work does, on any scheduler, at the price of a system call.
// (The preparer needs no yield: it sleeps in each piece's write-back.)
#pragma once

#include <pthread.h>
#include <sched.h>

#include <thread>

namespace annal {

namespace detail {
inline thread_local bool t_background = false;
}  // namespace detail

// Names a thread just started, before anything can look (at most 15 characters: the kernel's limit).
inline void name_thread(std::thread& thread, const char* name) noexcept {
  (void)::pthread_setname_np(thread.native_handle(), name);
}

// Marks the calling thread as doing background work: yield_if_background() yields on it.
inline void make_this_thread_background() noexcept { detail::t_background = true; }

// Called between pieces of long CPU work (each 64 KiB hashed): on a background thread, lets any
// thread waiting for this core run first (sched_yield: under half a microsecond when none is).
// Elsewhere (a tool verifying a chain in the foreground) it does nothing.
inline void yield_if_background() noexcept {
  if (detail::t_background) (void)::sched_yield();
}

}  // namespace annal
