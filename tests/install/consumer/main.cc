// One producer, one consumer thread, through the installed headers and library.
#include <annal/ringbuf/ringbuf.h>

#include <cstdint>
#include <cstdio>
#include <thread>

namespace rb = annal::ringbuf;

struct Sum {
  std::int64_t total = 0;
  void on_event(const std::int64_t& value, std::int64_t, bool) { total += value; }
};

int main() {
  constexpr std::int64_t kEvents = 100'000;
  rb::RingBuffer<std::int64_t> ring(1024);
  Sum sum;
  rb::BatchEventProcessor processor(ring, sum);
  if (!ring.add_gating_sequence(processor.sequence())) return 1;
  std::thread consumer([&] { processor.run(); });
  for (std::int64_t i = 1; i <= kEvents; ++i) {
    if (!ring.publish_event([i](std::int64_t& slot, std::int64_t) { slot = i; })) return 1;
  }
  while (processor.sequence().get() < kEvents - 1) std::this_thread::yield();
  processor.halt();
  consumer.join();
  if (sum.total != kEvents * (kEvents + 1) / 2) return 1;
  std::printf("consumed %lld events\n", static_cast<long long>(kEvents));
  return 0;
}
