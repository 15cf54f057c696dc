// Through the installed headers and library: one producer and one consumer thread on the ring,
// then an event appended to the engine and read back.
#include <annal/engine/engine.h>
#include <annal/ringbuf/ringbuf.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

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

  std::string dir = (std::filesystem::temp_directory_path() / "annal-consumer-XXXXXX").string();
  if (::mkdtemp(dir.data()) == nullptr) return 1;
  {
    auto engine = annal::engine::Engine::open(dir, {});
    if (!engine.ok()) return 1;
    const annal::engine::EventData event{.type = "Installed"};
    auto receipt = engine.value()->append("check", annal::engine::ExpectedVersion::no_stream(), {&event, 1});
    if (!receipt.ok()) return 1;
    // A new store's first write waits for its first segment to be made: on a cold, busy disk that
    // can take longer than read_stream's default wait.
    const auto deadline = annal::engine::Engine::Clock::now() + std::chrono::seconds(60);
    auto events = engine.value()->read_stream("check", {}, deadline);
    if (!events.ok() || events.value().size() != 1 || events.value()[0].header.type != "Installed") return 1;
  }
  std::filesystem::remove_all(dir);
  std::printf("appended and read back one event\n");
  return 0;
}
