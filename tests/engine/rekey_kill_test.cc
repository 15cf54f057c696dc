// annal rekey killed at random moments: a child process rekeys a copy of a store written under
// master key versions 1 and 2 (one stream erased); the parent SIGKILLs it a random delay after
// the child reports that it is about to begin, the delays drawn from how long a whole rekey took
// here (the shortest of the first two rounds, which are not killed), so the kills spread over its steps:
// the key store, each segment's copy, REKEY, the renames, CHAIN, the snapshots. After every kill
// the store opens with both versions and reads every event, and a second rekey finishes the work:
// version 2 alone then reads everything and the chain verifies under it. ANNAL_REKEY_KILLS rounds
// (12 by default, 2 of them measuring).
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <thread>

#include "annal/engine/rekey.h"
#include "annal/journal/reseal.h"
#include "kill_timing.h"
#include "rekey_fixture.h"
#include "temp_directory.h"
#include "watchdog.h"

namespace annal::engine::test {
namespace {

using Clock = std::chrono::steady_clock;

// Rounds not killed, that measure how long a whole rekey takes here.
constexpr int kMeasuringRounds = 2;

// The child: says it begins ('o'), rekeys, says whether it finished ('r') or failed ('f'). Never returns.
[[noreturn]] void rekey_in_child(const std::string& directory, const Options& options, int report) {
  const char about = 'o';
  if (::write(report, &about, 1) != 1) _exit(4);
  const char done = rekey(directory, options).ok() ? 'r' : 'f';
  if (::write(report, &done, 1) != 1) _exit(4);
  _exit(0);
}

TEST(RekeyKillTest, AKilledRekeyLeavesEveryEventReadableAndTheNextOneFinishes) {
  annal::test::Watchdog watchdog("rekey killed at random moments", std::chrono::seconds(900));
  const auto rounds = static_cast<int>(annal::test::env_or("ANNAL_REKEY_KILLS", 12));
  const unsigned seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 random(seed);
  annal::test::TempDirectory dir;
  const auto keys = std::make_shared<annal::test::MasterKeys>();
  const auto newest_only = std::make_shared<SomeVersions>(keys, std::set<std::uint32_t>{2});
  const std::string original = dir.path() + "/original";
  const std::uint64_t gone = write_two_versions(original, *keys, rekey_options(keys), nullptr);
  ASSERT_FALSE(HasFailure());
  const auto posix = journal::make_posix_backend();
  Clock::duration whole{};  // a rekey's length here, from the child's report to its end
  int finished = 0, cut_short = 0;
  for (int round = 0; round < rounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    const std::string store = dir.path() + "/round-" + std::to_string(round);
    std::filesystem::copy(original, store, std::filesystem::copy_options::recursive);
    const Options options = rekey_options(keys);  // made before fork: the child must not allocate first
    const auto [pid, reports] = annal::test::fork_child([&](int report) { rekey_in_child(store, options, report); });
    ASSERT_GE(pid, 0);
    char said = 0;
    pollfd ready{.fd = reports, .events = POLLIN, .revents = 0};
    ASSERT_EQ(::poll(&ready, 1, 120'000), 1);  // a limit only against a child that never begins
    ASSERT_EQ(::read(reports, &said, 1), 1);
    ASSERT_EQ(said, 'o');
    const Clock::time_point began = Clock::now();
    if (round < kMeasuringRounds) {
      ASSERT_EQ(::poll(&ready, 1, 300'000), 1);  // a measuring round: the rekey runs to its end
      const Clock::duration took = Clock::now() - began;
      whole = round == 0 ? took : std::min(whole, took);  // the first is slower (a cold cache)
    } else {
      std::this_thread::sleep_for(Clock::duration(std::uniform_int_distribution<Clock::rep>(0, whole.count())(random)));
      ::kill(pid, SIGKILL);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    const bool done = ::read(reports, &said, 1) == 1 && said == 'r';
    ::close(reports);
    ASSERT_TRUE(WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) == 0)) << "child status " << status;
    ASSERT_TRUE(round >= kMeasuringRounds || done) << "a measuring round's rekey failed";
    finished += done ? 1 : 0;
    cut_short += journal::rekey_cut_short(*posix, store) ? 1 : 0;

    ASSERT_EQ(read_everything(store, rekey_options(keys), nullptr, gone), expected_events());
    const auto again = rekey(store, rekey_options(keys));
    ASSERT_TRUE(again.ok()) << again.status().to_string();
    EXPECT_TRUE(!done || !again.value().changed()) << "a finished rekey left work for the next";
    expect_rekeyed(*posix, store, nullptr, newest_only, gone);
    ASSERT_FALSE(HasFatalFailure());
    std::filesystem::remove_all(store);
  }
  std::printf("%d rounds, %d of them measuring (a rekey takes %lld us here): %d finished before the kill, %d cut short "
              "between its first segment and CHAIN, %d killed elsewhere\n",
              rounds, kMeasuringRounds,
              static_cast<long long>(std::chrono::duration_cast<std::chrono::microseconds>(whole).count()),
              finished - kMeasuringRounds, cut_short, rounds - finished - cut_short);
}

}  // namespace
}  // namespace annal::engine::test
