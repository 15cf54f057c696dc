// erase_stream killed at random moments: a child process opens an encrypted store and erases one
// stream; the parent SIGKILLs it a random delay after the child reports that it is about to erase
// (so the kills spread over the erasure's steps: the record, its durability, the key store's
// rewrite), then reopens the store. After every kill the stream is wholly readable or wholly
// erased, never between; an erasure the child saw acknowledged is erased; every other stream is
// untouched; and a projection that kept every payload (in the child, and snapshotted before it)
// holds none of an erased stream's, and matches a rebuild from the log (check_projection).
// ANNAL_ERASE_KILLS rounds (24 by default).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <thread>

#include "annal/engine/engine.h"
#include "kill_timing.h"
#include "master_keys.h"
#include "payloads_projection.h"
#include "temp_directory.h"
#include "watchdog.h"

namespace annal::engine {
namespace {

using namespace std::chrono_literals;

constexpr int kEventsPerStream = 3;
constexpr std::string_view kProjection = "payloads";

using test::Payloads;

std::string stream_name(int i) { return "person-" + std::to_string(i); }
std::string payload_prefix(int stream) { return "data of " + stream_name(stream) + " #"; }
std::string payload_of(int stream, int event) { return payload_prefix(stream) + std::to_string(event); }

// Every event's payload as the state, snapshotted every few events so that snapshots taken before
// an erasure exist for it to end.
Status add_payloads(Engine& engine) {
  return engine.add_projection(kProjection, std::make_shared<Payloads>(), {.snapshot_every_events = 4});
}

// The child: opens, says so ('o'), erases, says it was acknowledged ('e'), closes. Never returns.
[[noreturn]] void erase_in_child(const std::string& directory, const Options& options, int stream, int report) {
  auto opened = Engine::open(directory, options);
  if (!opened.ok()) _exit(3);
  if (!add_payloads(*opened.value()).ok()) _exit(6);
  const char about = 'o';
  if (::write(report, &about, 1) != 1) _exit(4);
  const auto erased = opened.value()->erase_stream(stream_name(stream));
  if (!erased.ok()) _exit(5);
  const char done = 'e';
  if (::write(report, &done, 1) != 1) _exit(4);
  (void)opened.value()->close();
  _exit(0);
}

TEST(EraseStreamKillTest, AKilledErasureLeavesTheStreamWhollyReadableOrWhollyErased) {
  annal::test::Watchdog watchdog("erase_stream killed at random moments", std::chrono::seconds(900));
  const auto rounds = static_cast<int>(annal::test::env_or("ANNAL_ERASE_KILLS", 24));
  const unsigned seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 random(seed);
  annal::test::TempDirectory dir;
  Options options;
  options.encryption = std::make_shared<annal::test::MasterKeys>();
  std::vector<std::uint64_t> ids;
  {
    auto engine = Engine::open(dir.path(), options);
    ASSERT_TRUE(engine.ok()) << engine.status().to_string();
    ASSERT_TRUE(add_payloads(*engine.value()).ok());
    Receipt last;
    for (int stream = 0; stream < rounds; ++stream) {
      for (int event = 0; event < kEventsPerStream; ++event) {
        const std::string payload = payload_of(stream, event);
        const EventData data{.type = "Recorded", .payload = std::as_bytes(std::span(payload))};
        auto appended = engine.value()->append(stream_name(stream), ExpectedVersion::any(), {&data, 1});
        ASSERT_TRUE(appended.ok()) << appended.status().to_string();
        last = appended.value();
      }
      ids.push_back(last.stream_id);
    }
    ASSERT_TRUE(engine.value()->close().ok());
  }
  std::vector<bool> erased(static_cast<std::size_t>(rounds), false);
  int cut_short = 0, acknowledged = 0;
  for (int round = 0; round < rounds; ++round) {
    const auto [pid, reports] = annal::test::fork_child([&](int report) { erase_in_child(dir.path(), options, round, report); });
    ASSERT_GE(pid, 0);
    char said = 0;
    pollfd ready{.fd = reports, .events = POLLIN, .revents = 0};
    // A limit only against a child that never opens.
    ASSERT_EQ(::poll(&ready, 1, 120'000), 1);
    ASSERT_EQ(::read(reports, &said, 1), 1);
    ASSERT_EQ(said, 'o');
    std::this_thread::sleep_for(std::chrono::microseconds(std::uniform_int_distribution<int>(0, 20000)(random)));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    const bool was_acknowledged = ::read(reports, &said, 1) == 1 && said == 'e';
    ::close(reports);
    ASSERT_TRUE(WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) == 0)) << "child status " << status;
    acknowledged += was_acknowledged ? 1 : 0;

    auto engine = Engine::open(dir.path(), options);
    ASSERT_TRUE(engine.ok()) << "round " << round << ": " << engine.status().to_string();
    ASSERT_TRUE(add_payloads(*engine.value()).ok());
    Payloads projected;
    const Status asked = engine.value()->query(kProjection, engine.value()->durable_sequence(), [&](const Projection& live) {
      projected = dynamic_cast<const Payloads&>(live);
    }, 2min);
    ASSERT_TRUE(asked.ok()) << asked.to_string();
    Payloads fresh;
    const auto checked = engine.value()->check_projection(kProjection, fresh, 2min);
    ASSERT_TRUE(checked.ok()) << checked.status().to_string();
    EXPECT_TRUE(checked.value().consistent()) << "round " << round << ": the projection differs from a rebuild";
    for (int stream = 0; stream < rounds; ++stream) {
      SCOPED_TRACE("round " + std::to_string(round) + ", stream " + std::to_string(stream));
      auto read = engine.value()->read_stream(StreamRef::id(ids[static_cast<std::size_t>(stream)]), {});
      ASSERT_TRUE(read.ok()) << read.status().to_string();
      ASSERT_EQ(read.value().size(), static_cast<std::size_t>(kEventsPerStream));
      const bool gone = read.value()[0].header.erased;
      for (int event = 0; event < kEventsPerStream; ++event) {
        const Event& got = read.value()[static_cast<std::size_t>(event)];
        ASSERT_EQ(got.header.erased, gone) << "event " << event << ": half erased";
        if (!gone) {
          EXPECT_EQ(std::string(reinterpret_cast<const char*>(got.payload.data()), got.payload.size()),
                    payload_of(stream, event));
        }
      }
      // The name goes with the events, never before or after them.
      EXPECT_EQ(engine.value()->find_stream(stream_name(stream)).has_value(), !gone);
      EXPECT_EQ(projected.holds(payload_prefix(stream)), !gone) << "the projection disagrees with the log";
      if (stream < round) {
        EXPECT_EQ(gone, erased[static_cast<std::size_t>(stream)]) << "an earlier round's state changed";
      }
      if (stream > round) {
        EXPECT_FALSE(gone) << "a stream no round erased";
      }
      if (stream == round) {
        if (was_acknowledged) {
          EXPECT_TRUE(gone) << "an acknowledged erasure was taken back";
        }
        erased[static_cast<std::size_t>(stream)] = gone;
        cut_short += gone && !was_acknowledged ? 1 : 0;
      }
    }
    ASSERT_TRUE(engine.value()->close().ok());
  }
  int total = 0;
  for (const bool gone : erased) total += gone ? 1 : 0;
  std::printf("%d rounds: %d erasures done (%d acknowledged before the kill, %d finished without), %d not done\n", rounds,
              total, acknowledged, cut_short, rounds - total);
}

}  // namespace
}  // namespace annal::engine
