// Real crashes: a child process appends with group commit, keeping several appends in flight so
// that rounds overlap, while a second thread reports that it is open and then every durable
// sequence through a pipe; the parent SIGKILLs it at a random moment timed from those reports
// (kill_timing.h), reopens the journal and checks that every reported sequence is there, byte for
// byte, in order, with whole batches; then the next child carries on from there. Every open draws
// its options (options_for), so journals pass between direct and buffered I/O, segment sizes and
// record limits. The second half of the kills runs encrypted (test_cipher.h: AES-256-GCM), the
// journal turning from clear to sealed as a store does when encryption is turned on, and the
// parent opens every sealed record it checks. ANNAL_CRASH_KILLS sets the number of kills (default
// 100).
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "annal/journal/chain.h"
#include "annal/journal/journal.h"
#include "kill_timing.h"
#include "test_cipher.h"

namespace annal::journal {
namespace {

using namespace std::chrono_literals;

// Each open, the children's and the parent's, draws its own options: direct I/O or not, segments
// of 1 or 2 MiB, records of up to 4 or 64 KiB. A child allowed large records writes one every 16th
// version, so the next open often has a smaller limit than the records it recovers: options limit
// appends, never what is read back.
//
// From the first sequence sealed on (0: not yet), every open seals with one key, fixed so that the
// children and the parent share it; set by the test between kills, before the fork.
std::uint64_t sealed_from = 0;

Options options_for(std::uint64_t draw) {
  const std::uint64_t bits = (draw + 1) * 0x9E3779B97F4A7C15ULL;
  Options options{.direct_io = (bits >> 60 & 1) != 0,
                  .segment_bytes_max = (bits >> 61 & 1) != 0 ? 2u << 20 : 1u << 20,
                  .record_bytes_max = (bits >> 62 & 1) != 0 ? 64u << 10 : 4096,
                  .commit_bytes_max = 256 << 10};
  if (sealed_from != 0) options.cipher = std::make_shared<TestCipher>(test_key(), sealed_from);
  return options;
}

// What sealing adds to a record: a large record's payload must still fit a limit of 64 KiB.
constexpr std::size_t kSealedBytesMax = kSaltBytes + crypto::kTagBytes;

constexpr std::size_t kLargePayloadBytes = 40'000;

std::size_t small_payload_bytes(std::uint64_t version) { return 24 + version % 200; }

std::vector<std::byte> payload_for(std::uint64_t version, std::size_t bytes) {
  std::vector<std::byte> out(bytes);
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::byte>((version * 131 + i) & 0xFF);
  return out;
}

// What a writer under `options` appends as `version`.
std::vector<std::byte> payload_for(std::uint64_t version, const Options& options) {
  const bool large =
      version % 16 == 0 && kRecordHeaderBytes + kLargePayloadBytes + kSealedBytesMax <= options.record_bytes_max;
  return payload_for(version, large ? kLargePayloadBytes : small_payload_bytes(version));
}

// Whether `payload` is what some writer appended as `version`.
bool written_as(std::uint64_t version, const std::vector<std::byte>& payload) {
  const bool size_ok = payload.size() == small_payload_bytes(version) ||
                       (version % 16 == 0 && payload.size() == kLargePayloadBytes);
  return size_ok && payload == payload_for(version, payload.size());
}

// Appends at most this many records ahead of the durable sequence: several rounds in flight, and
// a journal that grows by a few thousand records per kill, not millions.
constexpr std::uint64_t kAheadMax = 48;

[[noreturn]] void child(const std::string& dir, const Options& options, int report_fd) {
  auto opened = Journal::open(dir, options);
  if (!opened.ok()) {
    std::fprintf(stderr, "child: %s\n", opened.status().to_string().c_str());
    _exit(2);
  }
  Journal& journal = *opened.value();
  std::thread reporter([&] {
    for (std::uint64_t reported = journal.durable_sequence();;) {  // the first report: open
      if (::write(report_fd, &reported, sizeof(reported)) != sizeof(reported)) _exit(5);
      if (!journal.wait_durable(reported + 1, Journal::Clock::now() + 60s).ok()) _exit(4);
      reported = journal.durable_sequence();
    }
  });
  std::uint64_t version = journal.last_sequence() + 1;  // one stream, one appender: version = sequence
  for (;;) {
    if (version > kAheadMax && !journal.wait_durable(version - kAheadMax, Journal::Clock::now() + 60s).ok()) {
      _exit(4);
    }
    std::vector<std::vector<std::byte>> payloads;
    std::vector<RecordInput> batch;
    const std::uint64_t size = 1 + version % 3;
    for (std::uint64_t i = 0; i < size; ++i) payloads.push_back(payload_for(version + i, options));
    for (std::uint64_t i = 0; i < size; ++i) {
      batch.push_back({.stream_id = 1, .stream_version = version + i, .payload = payloads[i]});
    }
    const auto receipt = journal.append(batch);
    if (!receipt.ok()) _exit(3);
    version += size;
  }
}

// A killed process's io_uring may hold its files (and the lock) for a moment after it dies.
Result<std::unique_ptr<Journal>> open_after_kill(const std::string& dir, const Options& options) {
  const auto deadline = std::chrono::steady_clock::now() + 60s;  // a hang guard
  for (;;) {
    auto journal = Journal::open(dir, options);
    const bool retry = journal.status().code() == ErrorCode::locked && std::chrono::steady_clock::now() < deadline;
    if (journal.ok() || !retry) return journal;
    std::this_thread::sleep_for(10ms);
  }
}

TEST(JournalCrash, SigkillAtRandomMomentsLosesNoAcknowledgedRecord) {
  const char* configured = std::getenv("ANNAL_CRASH_KILLS");
  const int kills = configured != nullptr ? std::atoi(configured) : 100;
  const std::string dir = (std::filesystem::temp_directory_path() /
                           ("annal-crash-" + std::to_string(::getpid()))).string();
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  annal::test::KillTiming timing(12345, std::chrono::milliseconds(20));
  std::uint64_t acknowledged = 0, repaired = 0;
  int while_opening = 0;
  std::size_t chained = 0;

  for (int kill = 0; kill < kills; ++kill) {
    SCOPED_TRACE("kill " + std::to_string(kill));
    // Everything up to what the last open recovered is in clear; sealed from the next one on.
    if (kill == kills / 2) sealed_from = acknowledged + 1;
    int pipe_fds[2];
    ASSERT_EQ(::pipe(pipe_fds), 0);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(pipe_fds[0]);
      child(dir, options_for(kill), pipe_fds[1]);
    }
    ::close(pipe_fds[1]);
    const auto forked = annal::test::KillTiming::Clock::now();
    const annal::test::KillPoint point = timing.point(kill);
    if (point == annal::test::KillPoint::while_opening) {
      ++while_opening;
      std::this_thread::sleep_for(timing.into_open());
    } else {
      std::uint64_t reported = 0;
      bool heard = annal::test::read_exactly(pipe_fds[0], &reported, sizeof(reported), forked + 120s);
      if (heard) timing.opened_after(annal::test::KillTiming::Clock::now() - forked);
      if (heard && point == annal::test::KillPoint::after_durable) {
        heard = annal::test::read_exactly(pipe_fds[0], &reported, sizeof(reported), forked + 120s);
        acknowledged = std::max(acknowledged, reported);
      }
      if (!heard) ::kill(pid, SIGKILL);
      ASSERT_TRUE(heard) << "the child reported neither its open nor a durable sequence within 120 s";
      std::this_thread::sleep_for(timing.delay());
    }
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the child exited by itself with " << WEXITSTATUS(status);
    std::uint64_t reported = 0;
    while (::read(pipe_fds[0], &reported, sizeof(reported)) == sizeof(reported)) {
      acknowledged = std::max(acknowledged, reported);
    }
    ::close(pipe_fds[0]);

    auto journal = open_after_kill(dir, options_for(kills + kill));
    ASSERT_TRUE(journal.ok()) << journal.status().to_string();
    repaired += !journal.value()->recovery().message.empty();
    const std::uint64_t recovered = journal.value()->durable_sequence();
    ASSERT_GE(recovered, acknowledged);
    const auto records = journal.value()->read(1, recovered);
    ASSERT_TRUE(records.ok()) << records.status().to_string();
    ASSERT_EQ(records.value().size(), recovered);
    for (std::uint64_t i = 0; i < recovered; ++i) {
      const Record& record = records.value()[i];
      ASSERT_EQ(record.header.sequence, i + 1);
      ASSERT_EQ(record.header.stream_version, i + 1);
      ASSERT_TRUE(written_as(i + 1, record.payload)) << "sequence " << i + 1;
    }
    if (recovered > 0) {
      ASSERT_NE(records.value().back().header.flags & kFlagBatchEnd, 0);
    }
    acknowledged = recovered;  // recovered records are durable now: the next child builds on them
    ASSERT_TRUE(journal.value()->close().ok());
    // Whatever the kill cut (an entry half appended, segments sealed and never chained), the open
    // set CHAIN right, and its close chained every sealed segment.
    const auto chain = verify_chain(dir, {});
    ASSERT_TRUE(chain.ok()) << chain.status().to_string();
    ASSERT_TRUE(chain.value().sound()) << chain.value().problems.front();
    ASSERT_TRUE(chain.value().notes.empty()) << chain.value().notes.front();
    chained = chain.value().entries;
  }
  std::printf("%d kills (%d timed to land while opening), %llu records at the end (sealed from %llu), %llu "
              "recoveries repaired a torn tail, %zu segments chained\n", kills, while_opening,
              static_cast<unsigned long long>(acknowledged), static_cast<unsigned long long>(sealed_from),
              static_cast<unsigned long long>(repaired), chained);
  EXPECT_GT(acknowledged, 0u);
  EXPECT_GT(acknowledged + 1, sealed_from) << "no sealed record was recovered";
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace annal::journal
