// A process manager (a projection that appends a follow-up for every trigger event) is SIGKILLed
// at random moments while triggers pour in; after each kill the store is reopened with the same
// process manager, which reacts to what it had not reacted to. Every trigger must end up with
// exactly one follow-up: none lost (a snapshot that passed a trigger whose follow-up a crash took
// back), none doubled (a replay whose repeated append the idempotency window did not recognise).
// ASan only, like the other kill tests: TSan does not follow fork in threaded programs.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <stdexcept>

#include "annal/engine/engine.h"
#include "kill_timing.h"
#include "watchdog.h"

namespace annal::engine {
namespace {

using namespace std::chrono_literals;

constexpr std::uint64_t kFollowUpIdHi = 0xF011'0000'0000'0000ull;

// The follow-up's id is derived from the trigger, so a replay repeats the same append.
class ProcessManager final : public Projection {
 public:
  explicit ProcessManager(Engine& engine) : engine_(engine) {}
  void apply(const EventView& event) override {
    if (event.header.type != "Triggered") return;
    const EventData follow_up{.type = "FollowedUp", .event_id = {.hi = kFollowUpIdHi, .lo = event.header.sequence}};
    const auto receipt = engine_.append("follow-" + std::string(event.header.stream_name), ExpectedVersion::any(),
                                        {&follow_up, 1});
    if (!receipt.ok()) throw std::runtime_error("follow-up not appended: " + receipt.status().to_string());
    ++reactions_;
  }
  std::uint32_t schema() const override { return 1; }
  std::vector<std::byte> snapshot() const override {
    std::vector<std::byte> out(sizeof reactions_);
    std::memcpy(out.data(), &reactions_, sizeof reactions_);
    return out;
  }
  Status restore(std::span<const std::byte> state) override {
    if (state.size() != sizeof reactions_) return Status(ErrorCode::corruption, "not a process manager's state");
    std::memcpy(&reactions_, state.data(), sizeof reactions_);
    return {};
  }

 private:
  Engine& engine_;
  std::uint64_t reactions_ = 0;
};

Options store_options() {
  Options options;
  options.journal.segment_bytes_max = 4u << 20;  // several segments over the run
  options.state_snapshot_every_events = 300;
  return options;
}

// Snapshots often, so that kills land around them.
const ProjectionOptions kManagerOptions{.snapshot_every_events = 25, .snapshot_every = 0ms};

[[noreturn]] void child(const std::string& dir, int fd) {
  auto engine = Engine::open(dir, store_options());
  if (!engine.ok()) {
    std::fprintf(stderr, "child: %s\n", engine.status().to_string().c_str());
    _exit(3);
  }
  const Status added =
      engine.value()->add_projection("manager", std::make_shared<ProcessManager>(*engine.value()), kManagerOptions);
  if (!added.ok()) {
    std::fprintf(stderr, "child: %s\n", added.to_string().c_str());
    _exit(4);
  }
  annal::test::report_to_parent(fd, annal::test::kReportedOpen);
  const std::vector<std::byte> payload(40, std::byte{1});
  for (std::uint64_t i = 0;; ++i) {
    const EventData trigger{.type = "Triggered", .payload = payload};
    const auto receipt = engine.value()->append("t" + std::to_string(i % 8), ExpectedVersion::any(), {&trigger, 1});
    if (!receipt.ok()) _exit(7);
    if (i % 8 == 7) {
      if (!engine.value()->wait_durable(receipt.value(), Engine::Clock::now() + 300s).ok()) _exit(8);
      annal::test::report_to_parent(fd, receipt.value().last_sequence);
    }
  }
}

struct Counts {
  std::uint64_t triggers = 0;
  std::uint64_t follow_ups = 0;
};

// Reopens the store with the process manager, lets it react to everything, and checks the log:
// one follow-up per trigger, after it.
void reopen_and_check(const std::string& dir, Counts& counts) {
  auto opened = Engine::open(dir, store_options());
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  Engine& engine = *opened.value();
  ASSERT_TRUE(engine.add_projection("manager", std::make_shared<ProcessManager>(engine), kManagerOptions).ok());
  const std::uint64_t triggers_end = engine.last_sequence();
  const Status reacted = engine.query("manager", triggers_end, [](const Projection&) {}, 120s);
  ASSERT_TRUE(reacted.ok()) << reacted.to_string();
  ASSERT_TRUE(engine.wait_durable(Receipt{.last_sequence = engine.last_sequence()}, Engine::Clock::now() + 120s).ok());

  std::map<std::uint64_t, int> follow_ups;  // trigger sequence -> follow-ups
  counts = {};
  for (std::uint64_t from = 1;;) {
    const auto events = engine.read_all(from, 4096);
    ASSERT_TRUE(events.ok()) << events.status().to_string();
    if (events.value().empty()) break;
    for (const Event& event : events.value()) {
      if (event.header.type == "Triggered") {
        ++counts.triggers;
        follow_ups.try_emplace(event.header.sequence, 0);
      } else {
        ASSERT_EQ(event.header.type, "FollowedUp");
        ASSERT_EQ(event.header.event_id.hi, kFollowUpIdHi);
        const std::uint64_t trigger = event.header.event_id.lo;
        ASSERT_LT(trigger, event.header.sequence);
        const auto found = follow_ups.find(trigger);
        ASSERT_NE(found, follow_ups.end()) << "follow-up at " << event.header.sequence << " of no trigger " << trigger;
        ++found->second;
        ++counts.follow_ups;
      }
    }
    from = events.value().back().header.sequence + 1;
  }
  for (const auto& [trigger, n] : follow_ups) {
    ASSERT_EQ(n, 1) << "trigger at sequence " << trigger << " has " << n << " follow-ups";
  }
  ASSERT_TRUE(engine.projection_status("manager").value().error.ok());
  ASSERT_TRUE(engine.close().ok());
}

TEST(ProcessManagerCrash, EveryTriggerGetsExactlyOneFollowUp) {
  const auto kills = static_cast<int>(annal::test::env_or("ANNAL_PM_CRASH_KILLS", 16));
  const std::uint64_t seed = annal::test::env_or("ANNAL_PM_CRASH_SEED", std::random_device{}());
  std::printf("seed %llu (ANNAL_PM_CRASH_SEED repeats it)\n", static_cast<unsigned long long>(seed));
  std::fflush(stdout);  // before any fork
  SCOPED_TRACE("seed " + std::to_string(seed));
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("annal-pm-crash-" + std::to_string(::getpid()))).string();
  std::filesystem::remove_all(dir);
  annal::test::KillTiming timing(seed, 20ms);
  Counts counts;
  int durable_rounds = 0;
  for (int kill = 0; kill < kills; ++kill) {
    SCOPED_TRACE("kill " + std::to_string(kill) + " in " + dir);
    const annal::test::Watchdog watchdog("process manager crash round " + std::to_string(kill), 600s);
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(fds[0]);
      if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != parent) _exit(6);
      child(dir, fds[1]);
    }
    ::close(fds[1]);
    const auto forked = annal::test::KillTiming::Clock::now();
    const std::string wrong = annal::test::kill_at_point(timing, kill, pid, fds[0], forked, 300s);
    ASSERT_TRUE(wrong.empty()) << wrong;
    durable_rounds += timing.point(kill) == annal::test::KillPoint::after_durable ? 1 : 0;
    ::close(fds[0]);
    ASSERT_NO_FATAL_FAILURE(reopen_and_check(dir, counts));
  }
  std::printf("%d kills (%d after a durable trigger): %llu triggers, %llu follow-ups\n", kills, durable_rounds,
              static_cast<unsigned long long>(counts.triggers), static_cast<unsigned long long>(counts.follow_ups));
  EXPECT_GT(counts.triggers, 0u);  // what makes the test bite: the children appended something
  EXPECT_EQ(counts.follow_ups, counts.triggers);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace annal::engine
