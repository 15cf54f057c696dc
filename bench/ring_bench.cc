// Ring-buffer throughput: annal's ring against boost::lockfree::spsc_queue, boost::lockfree::queue
// and a mutex + condition-variable queue, moving the same items in the same counts.
//
// Every benchmark iteration moves kItemsPerIteration items from the producer(s) to the consumer(s)
// and waits until the last consumer has seen them all; items/s is the rate of that. Consumers sum
// the values they see and the sum is checked against what was sent, so nothing is skipped.
//
// Names: ring_<topology>_<item size>/<implementation>[/wait:<strategy>/batch:<claim size>].
// The like-for-like pair is ring_spsc_64B/annal vs ring_spsc_64B/boost_spsc: one producer, one
// consumer, 64-byte items, 64 Ki slots, one item per claim/push, the consumer draining everything
// available, and both sides waiting the same way (YieldingWaitStrategy: spin, then yield).
// With more threads than the machine's 2 cores, busy-spin is left out: spinning threads would
// only measure the scheduler.
#include <benchmark/benchmark.h>
#include <boost/lockfree/queue.hpp>
#include <boost/lockfree/spsc_queue.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "annal/ringbuf/ringbuf.h"

namespace rb = annal::ringbuf;

namespace {

constexpr std::int64_t kCapacity = 1 << 16;
constexpr std::int64_t kItemsPerIteration = 1 << 20;

template <std::size_t Bytes>
struct Item {
  std::uint64_t value = 0;
  std::array<char, Bytes - sizeof(std::uint64_t)> payload{};
};
template <>
struct Item<8> {
  std::uint64_t value = 0;
};
static_assert(sizeof(Item<8>) == 8 && sizeof(Item<64>) == 64);

// Producer p of P sends values p, p + P, p + 2P, ... so the consumer's total is known.
std::uint64_t expected_sum(std::int64_t items) {
  const auto n = static_cast<std::uint64_t>(items);
  return n * (n - 1) / 2;
}

// The harness shared by every implementation. A Channel has:
//   produce(p, producers, first, count)  send values first + p, first + p + P, ... (count items)
//   wait_consumed(total)                 return once every consumer has seen `total` items
//   sum()                                what the last consumer has summed
//   stop()                               end the consumer threads
//
// items_per_second is measured on the wall clock around the whole loop: with several threads, and
// with strategies that sleep, the main thread's CPU time says nothing about the rate. (Google
// Benchmark's UseRealTime would do the same but renames every benchmark "<name>/real_time".)
template <class Channel>
void run(benchmark::State& state, Channel& channel, int producers, const std::string& label) {
  std::int64_t sent = 0;
  const auto started = std::chrono::steady_clock::now();
  for (auto _ : state) {
    const std::int64_t per_producer = kItemsPerIteration / producers;
    std::vector<std::thread> others;
    for (int p = 1; p < producers; ++p) {
      others.emplace_back([&, p] { channel.produce(p, producers, sent, per_producer); });
    }
    channel.produce(0, producers, sent, per_producer);
    for (auto& thread : others) thread.join();
    sent += per_producer * producers;
    channel.wait_consumed(sent);
  }
  const std::chrono::duration<double> wall = std::chrono::steady_clock::now() - started;
  channel.stop();
  if (channel.sum() != expected_sum(sent)) state.SkipWithError("consumer sum does not match");
  state.counters["items_per_second"] = static_cast<double>(sent) / wall.count();
  state.counters["wall_ms_per_iteration"] =
      wall.count() * 1e3 / static_cast<double>(state.iterations());
  state.SetLabel(label);
}

// Waits for the consumers without burning the core they need.
template <class Done>
void wait_until(Done&& done) {
  rb::YieldingWaitStrategy wait;
  wait.wait_until(done, rb::kNoDeadline);
}

// ---- annal ------------------------------------------------------------------------------------

template <class T>
struct SumHandler {
  std::uint64_t sum = 0;
  void on_event(const T& item, std::int64_t, bool) { sum += item.value; }
};

enum class Graph { one_consumer, diamond };

template <class T, rb::ProducerType P, class W, Graph G>
class AnnalChannel {
  using Ring = rb::RingBuffer<T, P, W>;
  using Processor = rb::BatchEventProcessor<Ring, SumHandler<T>>;

 public:
  explicit AnnalChannel(std::int64_t batch) : ring_(kCapacity), batch_(batch) {
    if constexpr (G == Graph::diamond) {
      for (int i = 0; i < 2; ++i) processors_.push_back(std::make_unique<Processor>(ring_, handlers_[i]));
      processors_.push_back(std::make_unique<Processor>(
          ring_, handlers_[2],
          std::initializer_list<const rb::Sequence*>{&processors_[0]->sequence(),
                                                     &processors_[1]->sequence()}));
    } else {
      processors_.push_back(std::make_unique<Processor>(ring_, handlers_[0]));
    }
    last_ = processors_.back().get();
    (void)ring_.add_gating_sequence(last_->sequence());
    for (auto& processor : processors_) threads_.emplace_back([&processor] { processor->run(); });
  }

  // Copies whole items into the slots, as the queues' push does, rather than writing only the
  // value field in place (which the ring allows, but the queues cannot do).
  void produce(int p, int producers, std::int64_t first, std::int64_t count) {
    T item{};
    item.value = static_cast<std::uint64_t>(first + p);
    for (std::int64_t done = 0; done < count;) {
      const std::int64_t n = std::min(batch_, count - done);
      const std::int64_t hi = *ring_.next(n);
      const std::int64_t lo = hi - n + 1;
      for (std::int64_t s = lo; s <= hi; ++s, item.value += static_cast<std::uint64_t>(producers)) {
        ring_[s] = item;
      }
      ring_.publish(lo, hi);
      done += n;
    }
  }
  void wait_consumed(std::int64_t total) {
    wait_until([&] { return last_->sequence().get() >= total - 1; });
  }
  std::uint64_t sum() const { return handlers_[G == Graph::diamond ? 2 : 0].sum; }
  void stop() {
    for (auto& processor : processors_) processor->halt();
    for (auto& thread : threads_) thread.join();
    threads_.clear();
  }

 private:
  Ring ring_;
  std::int64_t batch_;
  std::array<SumHandler<T>, 3> handlers_{};
  std::vector<std::unique_ptr<Processor>> processors_;
  Processor* last_ = nullptr;
  std::vector<std::thread> threads_;
};

// ---- baselines --------------------------------------------------------------------------------

// Shared by the queue baselines: one consumer thread that drains whatever is there, counting and
// summing, and waits with the same strategy as the annal pair.
class ConsumerThread {
 public:
  template <class Drain>  // Drain(auto on_item) -> items drained
  void start(Drain drain) {
    thread_ = std::thread([this, drain]() mutable {
      std::uint64_t sum = 0;
      std::int64_t seen = 0;
      const auto on_item = [&](const auto& item) { sum += item.value; };
      while (!stopping_.load(std::memory_order_acquire)) {
        std::int64_t drained = 0;
        wait_until([&] {
          drained = drain(on_item);
          return drained > 0 || stopping_.load(std::memory_order_acquire);
        });
        seen += drained;
        sum_ = sum;
        consumed_.store(seen, std::memory_order_release);
      }
    });
  }
  void wait_consumed(std::int64_t total) {
    wait_until([&] { return consumed_.load(std::memory_order_acquire) >= total; });
  }
  void stop() {
    stopping_.store(true, std::memory_order_release);
    thread_.join();
  }
  std::uint64_t sum() const { return sum_; }

 private:
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::int64_t> consumed_{0};
  std::uint64_t sum_ = 0;  // read after join
};

template <class T>
class BoostSpscChannel {
 public:
  BoostSpscChannel() : queue_(kCapacity) {
    consumer_.start([this](auto on_item) {
      return static_cast<std::int64_t>(queue_.consume_all(on_item));
    });
  }
  void produce(int, int, std::int64_t first, std::int64_t count) {
    T item{};
    for (std::int64_t i = 0; i < count; ++i) {
      item.value = static_cast<std::uint64_t>(first + i);
      wait_until([&] { return queue_.push(item); });
    }
  }
  void wait_consumed(std::int64_t total) { consumer_.wait_consumed(total); }
  void stop() { consumer_.stop(); }
  std::uint64_t sum() const { return consumer_.sum(); }

 private:
  boost::lockfree::spsc_queue<T> queue_;  // run-time capacity: faster here than the compile-time form
  ConsumerThread consumer_;
};

template <class T>
class BoostQueueChannel {
 public:
  // Fixed-size boost::lockfree::queue indexes its nodes with 16 bits and keeps one dummy node:
  // 65534 items is the closest it gets to the others' 65536.
  BoostQueueChannel() : queue_(65534) {
    consumer_.start([this](auto on_item) {
      return static_cast<std::int64_t>(queue_.consume_all(on_item));
    });
  }
  void produce(int p, int producers, std::int64_t first, std::int64_t count) {
    T item{};
    item.value = static_cast<std::uint64_t>(first + p);
    for (std::int64_t i = 0; i < count; ++i, item.value += static_cast<std::uint64_t>(producers)) {
      wait_until([&] { return queue_.bounded_push(item); });
    }
  }
  void wait_consumed(std::int64_t total) { consumer_.wait_consumed(total); }
  void stop() { consumer_.stop(); }
  std::uint64_t sum() const { return consumer_.sum(); }

 private:
  boost::lockfree::queue<T, boost::lockfree::fixed_sized<true>> queue_;
  ConsumerThread consumer_;
};

// The textbook blocking queue: a bounded ring under one mutex, producers push one item per lock,
// the consumer takes everything there in one lock.
template <class T>
class MutexQueueChannel {
 public:
  MutexQueueChannel() : slots_(static_cast<std::size_t>(kCapacity)) {
    consumer_.start([this](auto on_item) {
      std::unique_lock lock(mutex_);
      not_empty_.wait(lock, [&] { return head_ != tail_ || stopping_; });
      const std::int64_t drained = tail_ - head_;
      for (; head_ < tail_; ++head_) on_item(slots_[index(head_)]);
      lock.unlock();
      not_full_.notify_all();
      return drained;
    });
  }
  void produce(int p, int producers, std::int64_t first, std::int64_t count) {
    T item{};
    item.value = static_cast<std::uint64_t>(first + p);
    for (std::int64_t i = 0; i < count; ++i, item.value += static_cast<std::uint64_t>(producers)) {
      std::unique_lock lock(mutex_);
      not_full_.wait(lock, [&] { return tail_ - head_ < kCapacity; });
      slots_[index(tail_++)] = item;
      lock.unlock();
      not_empty_.notify_one();
    }
  }
  void wait_consumed(std::int64_t total) { consumer_.wait_consumed(total); }
  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    not_empty_.notify_all();
    consumer_.stop();
  }
  std::uint64_t sum() const { return consumer_.sum(); }

 private:
  static std::size_t index(std::int64_t i) { return static_cast<std::size_t>(i & (kCapacity - 1)); }
  std::mutex mutex_;
  std::condition_variable not_empty_, not_full_;
  std::vector<T> slots_;
  std::int64_t head_ = 0, tail_ = 0;
  bool stopping_ = false;
  ConsumerThread consumer_;
};

// ---- registration -----------------------------------------------------------------------------

template <class Channel, class... Args>
void register_one(const std::string& name, int producers, const std::string& label, Args... args) {
  benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& state) {
    Channel channel(args...);
    run(state, channel, producers, label);
  })->Unit(benchmark::kMillisecond);
}

template <class T, rb::ProducerType P, class W, Graph G>
void register_annal(const std::string& prefix, int producers, std::int64_t batch, bool canonical) {
  const std::string label = "wait=" + std::string(W::kName) + " batch=" + std::to_string(batch);
  const std::string name = canonical ? prefix + "/annal"
                                     : prefix + "/annal/wait:" + std::string(W::kName) +
                                           "/batch:" + std::to_string(batch);
  register_one<AnnalChannel<T, P, W, G>>(name, producers, label, batch);
}

template <std::size_t Bytes>
void register_size() {
  using T = Item<Bytes>;
  using rb::ProducerType;
  const std::string size = std::to_string(Bytes) + "B";
  const std::string yielding = "wait=yielding batch=1";

  // 1 producer -> 1 consumer: the like-for-like set first.
  const std::string spsc = "ring_spsc_" + size;
  register_annal<T, ProducerType::single, rb::YieldingWaitStrategy, Graph::one_consumer>(spsc, 1, 1, true);
  register_one<BoostSpscChannel<T>>(spsc + "/boost_spsc", 1, yielding);
  register_one<BoostQueueChannel<T>>(spsc + "/boost_queue", 1, yielding);
  register_one<MutexQueueChannel<T>>(spsc + "/mutex_queue", 1, "wait=condition_variable batch=1");
  for (const std::int64_t batch : {std::int64_t{1}, std::int64_t{64}}) {
    register_annal<T, ProducerType::single, rb::BusySpinWaitStrategy, Graph::one_consumer>(spsc, 1, batch, false);
    register_annal<T, ProducerType::single, rb::YieldingWaitStrategy, Graph::one_consumer>(spsc, 1, batch, false);
    register_annal<T, ProducerType::single, rb::SleepingWaitStrategy, Graph::one_consumer>(spsc, 1, batch, false);
    register_annal<T, ProducerType::single, rb::BlockingWaitStrategy, Graph::one_consumer>(spsc, 1, batch, false);
  }

  // 2 producers -> 1 consumer (three threads on two cores).
  const std::string mpsc = "ring_mpsc_" + size;
  register_annal<T, ProducerType::multi, rb::YieldingWaitStrategy, Graph::one_consumer>(mpsc, 2, 1, true);
  register_one<BoostQueueChannel<T>>(mpsc + "/boost_queue", 2, yielding);
  register_one<MutexQueueChannel<T>>(mpsc + "/mutex_queue", 2, "wait=condition_variable batch=1");
  for (const std::int64_t batch : {std::int64_t{1}, std::int64_t{64}}) {
    register_annal<T, ProducerType::multi, rb::SleepingWaitStrategy, Graph::one_consumer>(mpsc, 2, batch, false);
    register_annal<T, ProducerType::multi, rb::BlockingWaitStrategy, Graph::one_consumer>(mpsc, 2, batch, false);
  }

  // 1 producer -> A and B in parallel -> C after both (four threads on two cores).
  const std::string diamond = "ring_diamond_" + size;
  for (const std::int64_t batch : {std::int64_t{1}, std::int64_t{64}}) {
    register_annal<T, ProducerType::single, rb::YieldingWaitStrategy, Graph::diamond>(diamond, 1, batch, false);
    register_annal<T, ProducerType::single, rb::SleepingWaitStrategy, Graph::diamond>(diamond, 1, batch, false);
    register_annal<T, ProducerType::single, rb::BlockingWaitStrategy, Graph::diamond>(diamond, 1, batch, false);
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_size<8>();
  register_size<64>();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
