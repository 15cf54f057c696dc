// LiveRing: the engine's ring buffer (ringbuf/) between the appenders and live subscribers. Every
// journal record the engine appends is published into it, one slot per record, right after the
// journal took it; ring sequence r holds journal sequence first_sequence() + r. Subscribers read it
// behind a barrier on the durable sequence, so they never see what a crash could take back.
//
// The ring's type depends on the wait strategy (a template parameter in ringbuf), chosen at open;
// this interface hides which.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>

#include "annal/engine/engine.h"
#include "annal/engine/projection.h"
#include "annal/engine/subscription.h"
#include "annal/journal/journal.h"
#include "annal/journal/reader.h"
#include "catalog.h"

namespace annal::engine {

// Read-only engines: a name record read from the journal, to be learned (empty for a writing
// engine: its names are in the catalog before its records are in the journal).
using LearnName = std::function<Status(const journal::RecordView&)>;

// What subscriptions read besides the ring.
struct ReadContext {
  journal::Journal& journal;
  const Catalog& catalog;
  const std::atomic<bool>& closed;  // the engine is closing: subscriptions end
  // A live subscriber starts (+1) or stops (-1) needing the durable gate kept current.
  std::function<void(int)> follow;
  // Read-only engines learn names from the records (view_record).
  LearnName learn_name;
  // Erasures: the ring holds its events as appended, in clear, so a copy of an event whose stream
  // was erased since must be shown erased (EventHeader::erased, no payload or ids). Only events
  // below `erased_below` (the last erasure record's sequence in this run; 0: none) can be, and
  // only then is `stream_erased` asked (the key store's look-up takes a lock).
  const std::atomic<std::uint64_t>* erased_below = nullptr;
  std::function<bool(std::uint64_t stream_id)> stream_erased;
};

class LiveRing {
 public:
  // `first_sequence`: the journal sequence ring sequence 0 stands for (the journal's next at open).
  static std::unique_ptr<LiveRing> make(const Options& options, std::uint64_t first_sequence,
                                        const ReadContext& context);
  virtual ~LiveRing() = default;

  // Publishes the records the journal just took as first_sequence, first_sequence + 1, ...
  // (timestamps already stamped). Caller holds the engine's sequencing lock: one publisher at a time,
  // in journal order. Waits while a live subscriber holds the slots; false once the ring is closed.
  virtual bool publish(std::uint64_t first_sequence, std::span<const journal::RecordInput> records) = 0;
  // The journal's durable sequence moved (notifier thread).
  virtual void advance_durable(std::uint64_t durable) = 0;
  // Wakes and fails everything waiting on the ring.
  virtual void close() = 0;
  // The ring no longer matches the journal (an append failed between the two): publishing stops,
  // and live subscribers leave it for the journal, which has every record, and never rejoin.
  virtual void fail() = 0;
  // A subscription from `from`, which starts with `reader` (positioned at `from`) on the journal.
  // Gating::eager reads the ring without waiting for durability.
  virtual std::unique_ptr<Subscription> subscribe(std::unique_ptr<journal::Reader> reader, Gating gating) = 0;
};

// The seat a live subscription on this thread left away last (opaque; nullptr: none). An append
// handed to the sequencer thread takes it along and sets it there, so that the thread publishing
// evicts that seat at once too, as the appending thread itself would.
const void* away_seat_here() noexcept;
void set_away_seat_here(const void* seat) noexcept;

// The view of a stored record: the event (flagged erased when its stream was: EventHeader), or
// nullopt for an engine system record (names, erasures), which `learn` (if set) is given first.
Result<std::optional<EventView>> view_record(const journal::RecordView& record, const Catalog& catalog,
                                             const LearnName& learn = {});

}  // namespace annal::engine
