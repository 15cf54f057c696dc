// The live ring and the subscriptions that read it; see live_ring.h and subscription.h.
#include "live_ring.h"

#include <algorithm>
#include <array>
#include <chrono>

#include "annal/ringbuf/ring_buffer.h"
#include "annal/ringbuf/wait_strategy.h"
#include "heap.h"

namespace annal::engine {
namespace {

using ringbuf::Deadline;
using namespace std::chrono_literals;

// Waits are cut into slices this long so that a closing engine is noticed.
constexpr auto kWaitSlice = 50ms;

Deadline slice_of(Deadline deadline) { return std::min(deadline, ringbuf::Clock::now() + kWaitSlice); }

struct Slot {
  journal::RecordHeader header;
  HeapBytes stored;  // the record's payload as the journal stores it (metadata, then the application's)
};

// A ring seat: the gating sequence of one live subscription. Seats live as long as the ring, so a
// producer that read a seat's sequence just before the subscription left reads valid memory
// (SequenceGroup::remove's caveat).
//
// Between two calls of next() the subscriber is away, in the application's code (a projection's
// apply(), which may append), and holds no slot: next() copies the event out of the ring. A
// producer that an away seat holds up may then take the seat out of the ring (evict it) instead of
// waiting for it, which it must when the subscriber is the thread appending, or it would wait for
// itself. The subscriber finds out at its next call, and goes on from the journal.
struct Seat {
  // where: here (in next(), or free), away, evicted (by a producer, which is removing the gating
  // sequence) and gone (removed: the subscriber may free the seat).
  static constexpr int kHere = 0, kAway = 1, kEvicted = 2, kGone = 3;
  ringbuf::Sequence sequence;
  std::atomic<bool> taken{false};
  std::atomic<int> where{kHere};
};

// The seat the calling thread's subscription left away last: a producer on this thread that it
// holds up evicts it at once (a projection appending from apply()). Only ever compared.
thread_local const void* t_away_seat = nullptr;

template <ringbuf::WaitStrategy W>
class LiveRingImpl final : public LiveRing {
 public:
  using Ring = ringbuf::RingBuffer<Slot, ringbuf::ProducerType::single, W>;

  LiveRingImpl(const Options& options, std::uint64_t first_sequence, const ReadContext& context)
      : ring_(static_cast<std::int64_t>(options.ring_capacity),
              [&](std::int64_t) {
                Slot slot;
                slot.stored.reserve(options.ring_slot_bytes);
                return slot;
              },
              W{}),
        first_(first_sequence), context_(context), seats_max_(options.live_subscriptions_max),
        lag_max_(static_cast<std::int64_t>(options.subscriber_lag_max != 0 ? options.subscriber_lag_max
                                                                           : options.ring_capacity / 2)) {
    ANNAL_ASSERT(seats_max_ <= seats_.size());
    ANNAL_ASSERT(lag_max_ > 0 && lag_max_ < ring_.capacity());
  }

  bool publish(std::uint64_t first_sequence, std::span<const journal::RecordInput> records) override {
    const auto n = static_cast<std::int64_t>(records.size());
    ANNAL_ASSERT(n >= 1 && n <= ring_.capacity());
    ANNAL_ASSERT(first_sequence == first_ + published_);  // one slot per record, in journal order
    if (failed_.load(std::memory_order_acquire)) return false;
    std::optional<std::int64_t> hi = ring_.try_next(n);
    if (!hi && t_away_seat != nullptr) {
      evict_away(t_away_seat, n);
      hi = ring_.try_next(n);
    }
    while (!hi) {
      if (closed_.load(std::memory_order_acquire)) return false;
      hi = ring_.next(n, slice_of(ringbuf::kNoDeadline));
      // Held up for a whole slice by subscribers in the application's code: they make room by
      // leaving (not sooner: one in a short apply() would only be sent to the journal for nothing).
      if (!hi) evict_away(nullptr, n);
    }
    const std::int64_t lo = *hi - n + 1;
    for (std::int64_t i = 0; i < n; ++i) {
      const journal::RecordInput& record = records[static_cast<std::size_t>(i)];
      Slot& slot = ring_[lo + i];
      slot.header = {.sequence = first_sequence + static_cast<std::uint64_t>(i),
                     .stream_id = record.stream_id,
                     .stream_version = record.stream_version,
                     .timestamp_ns = record.timestamp_ns,
                     .type = record.type,
                     .flags = static_cast<std::uint16_t>(i + 1 == n ? journal::kFlagBatchEnd : 0),
                     .commit_lag = 0};
      slot.stored.assign(record.prefix.begin(), record.prefix.end());
      slot.stored.insert(slot.stored.end(), record.payload.begin(), record.payload.end());
    }
    ring_.publish(lo, *hi);
    published_ += static_cast<std::uint64_t>(n);
    // Rarely, the journal made records durable before they were published here: the durable
    // readers waiting for them wait for this publish, not for the durable sequence.
    if (durable_.get() >= lo) durable_waiters_.signal_all_when_blocking();
    return true;
  }

  void advance_durable(std::uint64_t durable) override {
    if (durable < first_) return;
    durable_.set(static_cast<std::int64_t>(durable - first_));
    durable_waiters_.signal_all_when_blocking();
  }

  void close() override {
    closed_.store(true, std::memory_order_release);
    ring_.alert();
  }

  void fail() override {
    failed_.store(true, std::memory_order_release);
    close();
    durable_waiters_.signal_all_when_blocking();
  }
  [[nodiscard]] bool failed() const noexcept { return failed_.load(std::memory_order_acquire); }

  // Evicts the away seats (or only `only`) that keep a claim of n slots waiting. Producer only.
  void evict_away(const void* only, std::int64_t n) {
    const std::int64_t wrap_point = ring_.cursor().get() + n - ring_.capacity();
    for (std::size_t i = 0; i < seats_max_; ++i) {
      Seat& seat = seats_[i];
      if ((only != nullptr && &seat != only) || !seat.taken.load(std::memory_order_acquire)) continue;
      if (seat.sequence.get() >= wrap_point) continue;
      int away = Seat::kAway;
      if (!seat.where.compare_exchange_strong(away, Seat::kEvicted, std::memory_order_acq_rel)) continue;
      (void)ring_.remove_gating_sequence(seat.sequence);
      seat.where.store(Seat::kGone, std::memory_order_release);
      seat.where.notify_all();
    }
  }

  std::unique_ptr<Subscription> subscribe(std::unique_ptr<journal::Reader> reader, Gating gating) override;

  // A free seat, or nullptr when live_subscriptions_max are taken.
  Seat* take_seat() {
    if (failed()) return nullptr;
    for (std::size_t i = 0; i < seats_max_; ++i) {
      if (!seats_[i].taken.exchange(true, std::memory_order_acq_rel)) {
        seats_[i].where.store(Seat::kHere, std::memory_order_relaxed);  // nobody evicts a seat not taken
        return &seats_[i];
      }
    }
    return nullptr;
  }
  // From a seat the subscriber holds (here): `evicted` when a producer has taken it out already.
  void leave(Seat& seat, bool evicted) {
    context_.follow(-1);
    if (!evicted) (void)ring_.remove_gating_sequence(seat.sequence);
    seat.taken.store(false, std::memory_order_release);
  }

  Ring& ring() noexcept { return ring_; }
  W& durable_waiters() noexcept { return durable_waiters_; }
  [[nodiscard]] std::uint64_t first() const noexcept { return first_; }
  [[nodiscard]] const ringbuf::Sequence& durable() const noexcept { return durable_; }
  [[nodiscard]] const ReadContext& context() const noexcept { return context_; }
  [[nodiscard]] std::int64_t lag_max() const noexcept { return lag_max_; }

 private:
  Ring ring_;
  const std::uint64_t first_;
  const ReadContext context_;
  std::uint64_t published_ = 0;  // under the engine's sequencing lock
  ringbuf::Sequence durable_;    // the journal's durable sequence, in ring sequences
  // What durable-gated readers sleep on: signalled when the durable sequence moves (and by a
  // publish of records already durable), not by every publish. When they slept on the ring's own
  // strategy, each append woke each of them to find nothing readable: 2-3 context switches per
  // event with two projections (engine_e2e_2proj).
  W durable_waiters_{};
  std::atomic<bool> closed_{false};
  std::atomic<bool> failed_{false};
  const std::size_t seats_max_;
  const std::int64_t lag_max_;  // ring sequences a seat may fall behind the cursor
  std::array<Seat, ringbuf::SequenceGroup::kMembersMax> seats_;
};

template <ringbuf::WaitStrategy W>
class RingSubscription final : public Subscription {
 public:
  // An eager subscription's barrier follows the ring's cursor, a durable one's the durable sequence.
  RingSubscription(LiveRingImpl<W>& ring, std::unique_ptr<journal::Reader> reader, Gating gating)
      : ring_(ring),
        barrier_(gating == Gating::eager ? Barrier(ring.ring().sequencer())
                                         : Barrier(ring.ring().sequencer(), {&ring.durable()})),
        eager_(gating == Gating::eager), ahead_(eager_ ? &ring.ring().cursor() : &ring.durable()),
        reader_(std::move(reader)),
        position_(reader_->position()) {}
  ~RingSubscription() override {
    come_back();
    if (seat_ != nullptr) leave(false);
  }

  Result<EventView> next(std::chrono::steady_clock::time_point deadline) override {
    come_back();
    // Away on every way out, a throw included (an allocation in the copy): a seat left "here"
    // could never be evicted.
    struct GoAway {
      RingSubscription& subscription;
      ~GoAway() {
        if (Seat* seat = subscription.seat_; seat != nullptr) {
          seat->where.store(Seat::kAway, std::memory_order_release);
          t_away_seat = seat;
        }
      }
    } go_away{*this};
    return next_here(deadline);
  }

  // The barrier's alert is used for nothing else (closing is noticed between wait slices), so an
  // alerted wait is a wake-up: at worst one call returns early.
  void wake() noexcept override {
    barrier_.alert();
    if (!eager_) ring_.durable_waiters().signal_all_when_blocking();
  }
  [[nodiscard]] std::uint64_t position() const noexcept override { return position_; }
  [[nodiscard]] bool live() const noexcept override { return seat_ != nullptr && position_ >= live_from_; }
  [[nodiscard]] std::uint64_t detached() const noexcept override { return detached_; }

 private:
  Result<EventView> next_here(Deadline deadline) {
    for (;;) {
      if (ring_.context().closed.load(std::memory_order_acquire)) {
        return Status(ErrorCode::failed, "the engine closed");
      }
      auto got = live() ? from_ring(deadline) : from_journal(deadline);
      if (!got.ok()) return got.status();
      if (got.value()) return *got.value();
    }
  }

  // Back from the application: evicted while away, it goes on from the journal.
  void come_back() {
    if (seat_ == nullptr) return;
    int away = Seat::kAway;
    if (seat_->where.compare_exchange_strong(away, Seat::kHere, std::memory_order_acq_rel)) return;
    // The producer that evicted it may still be removing its gating sequence: the seat is freed
    // only after, or a new subscriber could take it and be removed instead.
    while (seat_->where.load(std::memory_order_acquire) == Seat::kEvicted) seat_->where.wait(Seat::kEvicted);
    ANNAL_ASSERT(seat_->where.load(std::memory_order_acquire) == Seat::kGone);
    detach(true);
  }

  // Each returns an event, nullopt to go round again (a system record, a wait slice passed, a
  // switch to the ring), or an error (timed_out once the deadline passed).
  Result<std::optional<EventView>> from_journal(Deadline deadline) {
    auto record = reader_->next();
    if (!record.ok()) return record.status();
    if (record.value()) {
      position_ = reader_->position();
      return view_record(*record.value(), ring_.context().catalog, ring_.context().learn_name);
    }
    // Caught up with the durable sequence: time to join the ring, if a seat is free.
    if (seat_ == nullptr && join()) return std::optional<EventView>();
    return wait(ring_.context().journal.wait_durable(position_, slice_of(deadline)), deadline);
  }

  // Gives the seat back (a producer removed it from the ring already if `evicted`).
  void leave(bool evicted) {
    if (t_away_seat == seat_) t_away_seat = nullptr;  // it may be another subscriber's next
    ring_.leave(*seat_, evicted);
  }

  // Takes a seat at the ring's cursor c. The journal holds everything up to c (the engine appends
  // to the journal before publishing), so the journal is read up to c and the ring from c + 1.
  bool join() {
    seat_ = ring_.take_seat();
    if (seat_ == nullptr) return false;
    const bool added = ring_.ring().add_gating_sequence(seat_->sequence);
    ANNAL_ASSERT(added);  // seats never outnumber the group's members
    ring_.context().follow(+1);
    live_from_ = ring_.first() + static_cast<std::uint64_t>(seat_->sequence.get() + 1);
    available_ = seat_->sequence.get();
    return true;
  }

  // Leaves the ring for the journal, at the same position: the seat stops holding the appenders
  // back. from_journal joins again once it has caught up.
  void detach(bool evicted) {
    leave(evicted);
    seat_ = nullptr;
    live_from_ = UINT64_MAX;
    available_ = ringbuf::Sequence::kInitial;
    reader_->seek(position_);
    ++detached_;
  }

  Result<std::optional<EventView>> from_ring(Deadline deadline) {
    // position_ may be past live_from_: the journal can make a record durable before the engine
    // has published it, so the reader may have gone further than the cursor at join.
    const auto next = static_cast<std::int64_t>(position_ - ring_.first());
    if (ahead_->get() - next >= ring_.lag_max() || ring_.failed()) {
      detach(false);
      return std::optional<EventView>();
    }
    if (next > available_) {
      // Everything before `next` has been handed out, and the last view dies with this call:
      // free those slots for the appenders (once per batch, like BatchEventProcessor).
      seat_->sequence.set(next - 1);
      ring_.ring().sequencer().wait_strategy().signal_all_when_blocking();
      const ringbuf::WaitResult waited = eager_ ? barrier_.wait_for(next, slice_of(deadline))
                                                : barrier_.wait_for(next, slice_of(deadline), ring_.durable_waiters());
      if (waited.status == ringbuf::WaitStatus::alerted) {
        barrier_.clear_alert();
        return Status(ErrorCode::timed_out, "woken");
      }
      available_ = std::max(available_, waited.available);
      if (waited.status == ringbuf::WaitStatus::timeout) {
        // The durable gate stops moving if the journal fails; only the journal can tell.
        return wait(ring_.context().journal.wait_durable(position_, ringbuf::Clock::now()), deadline);
      }
    }
    const Slot& slot = ring_.ring()[next];
    ANNAL_ASSERT(slot.header.sequence == position_);  // the seat kept the slot from being reused
    ++position_;
    // A copy: the view must outlive the seat's hold on the slot (the seat's comment).
    copy_.assign(slot.stored.begin(), slot.stored.end());
    const ReadContext& context = ring_.context();
    if (context.erased_below != nullptr && slot.header.sequence < context.erased_below->load(std::memory_order_acquire) &&
        slot.header.stream_id != kSystemStream && context.stream_erased(slot.header.stream_id)) {
      // Its stream erased since it was appended: what the journal would show now, the clear part.
      ANNAL_ASSERT(copy_.size() >= kMetadataBytesMin);
      return view_record({.header = slot.header, .payload = std::span<const std::byte>(copy_).first(kMetadataBytesMin),
                          .erased = true},
                         context.catalog);
    }
    return view_record({.header = slot.header, .payload = copy_}, context.catalog);
  }

  // A wait slice ended: go round again, unless the caller's deadline passed or the wait failed.
  static Result<std::optional<EventView>> wait(const Status& waited, Deadline deadline) {
    if (waited.ok()) return std::optional<EventView>();
    if (waited.code() != ErrorCode::timed_out) return waited;
    if (ringbuf::Clock::now() >= deadline) return Status(ErrorCode::timed_out, "no new durable event before the deadline");
    return std::optional<EventView>();
  }

  using Barrier = typename LiveRingImpl<W>::Ring::Barrier;

  LiveRingImpl<W>& ring_;
  Barrier barrier_;
  const bool eager_;
  // What the barrier follows: how far behind the subscription is counts from there (a durable one
  // cannot read what is not durable yet, so that is no lag of its own).
  const ringbuf::Sequence* const ahead_;
  std::unique_ptr<journal::Reader> reader_;
  std::uint64_t position_;
  Seat* seat_ = nullptr;
  std::uint64_t live_from_ = UINT64_MAX;  // the first sequence read from the ring
  std::int64_t available_ = ringbuf::Sequence::kInitial;  // ring sequences up to this are readable
  std::uint64_t detached_ = 0;
  std::vector<std::byte> copy_;  // the last event read from the ring
};

template <ringbuf::WaitStrategy W>
std::unique_ptr<Subscription> LiveRingImpl<W>::subscribe(std::unique_ptr<journal::Reader> reader, Gating gating) {
  return std::make_unique<RingSubscription<W>>(*this, std::move(reader), gating);
}

}  // namespace

std::unique_ptr<LiveRing> LiveRing::make(const Options& options, std::uint64_t first_sequence,
                                         const ReadContext& context) {
  switch (options.wait_strategy) {
    case WaitStrategy::blocking:
      return std::make_unique<LiveRingImpl<ringbuf::BlockingWaitStrategy>>(options, first_sequence, context);
    case WaitStrategy::sleeping:
      return std::make_unique<LiveRingImpl<ringbuf::SleepingWaitStrategy>>(options, first_sequence, context);
    case WaitStrategy::yielding:
      return std::make_unique<LiveRingImpl<ringbuf::YieldingWaitStrategy>>(options, first_sequence, context);
  }
  ANNAL_ASSERT(false);
  return nullptr;
}

const void* away_seat_here() noexcept { return t_away_seat; }
void set_away_seat_here(const void* seat) noexcept { t_away_seat = seat; }

Result<std::optional<EventView>> view_record(const journal::RecordView& record, const Catalog& catalog,
                                             const LearnName& learn) {
  const journal::RecordHeader& header = record.header;
  if (header.stream_id == kSystemStream) {
    if (learn) {
      if (Status learned = learn(record); !learned.ok()) return learned;
    }
    return std::optional<EventView>();
  }
  const auto decoded = decode_event(record.payload, header.sequence, record.erased);
  if (!decoded.ok()) return decoded.status();
  EventView view;
  view.header = {.sequence = header.sequence,
                 .stream_id = header.stream_id,
                 .version = header.stream_version,
                 .timestamp_ns = header.timestamp_ns,
                 .type_id = header.type,
                 .type = catalog.type_name(header.type),
                 .stream_name = catalog.stream_name(header.stream_id),
                 .event_id = decoded.value().metadata.event_id,
                 .correlation_id = decoded.value().metadata.correlation_id,
                 .causation_id = decoded.value().metadata.causation_id,
                 .erased = record.erased};
  if (view.header.type.empty()) {
    return Status(ErrorCode::corruption, "journal record " + std::to_string(header.sequence) +
                                             ": event type " + std::to_string(header.type) + " has no name");
  }
  view.payload = decoded.value().payload;
  return std::optional<EventView>(view);
}

}  // namespace annal::engine
