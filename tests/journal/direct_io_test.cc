// Options::direct_io: every write whole, aligned blocks (FaultBackend fails a misaligned one with
// EINVAL, as O_DIRECT does), padding records stepped over, and journals moving between the modes.
// Power loss with direct I/O is part of JournalFaults.SimulatedPowerLossKeepsEveryAcknowledgedRecord.
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "annal/journal/journal.h"
#include "journal_fixture.h"

namespace annal::journal {
namespace {


using test::soon;

// Payload sizes vary so that rounds end anywhere inside a block.
std::vector<std::byte> payload_of(std::uint64_t version) {
  std::vector<std::byte> out(version * 53 % 700);
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::byte>((version * 7 + i) & 0xFF);
  return out;
}

// Appends versions [from, to) in batches of 1-3, waiting for some of them to become durable.
void append_range(Journal& journal, std::uint64_t from, std::uint64_t to) {
  std::uint64_t last = 0;
  for (std::uint64_t v = from; v < to;) {
    std::vector<std::vector<std::byte>> payloads;
    std::vector<RecordInput> batch;
    for (std::uint64_t i = 0; i < 1 + v % 3 && v < to; ++i, ++v) payloads.push_back(payload_of(v));
    for (std::size_t i = 0; i < payloads.size(); ++i) {
      batch.push_back({.stream_id = 1, .stream_version = v - payloads.size() + i, .payload = payloads[i]});
    }
    const auto receipt = journal.append(batch);
    ASSERT_TRUE(receipt.ok()) << receipt.status().to_string();
    last = receipt.value().last;
    if (v % 5 == 0) {
      ASSERT_TRUE(journal.wait_durable(last, soon()).ok());
    }
  }
  ASSERT_TRUE(journal.wait_durable(last, soon()).ok());
}

void expect_versions(Journal& journal, std::uint64_t count) {
  const auto records = journal.read(1, count + 1);
  ASSERT_TRUE(records.ok()) << records.status().to_string();
  ASSERT_EQ(records.value().size(), count);
  for (std::uint64_t i = 0; i < count; ++i) {
    ASSERT_EQ(records.value()[i].header.sequence, i + 1);
    ASSERT_EQ(records.value()[i].header.stream_version, i);
    ASSERT_EQ(records.value()[i].payload, payload_of(i));
  }
}

const Options kSmallSegments{.segment_bytes_max = 64 << 10, .record_bytes_max = 1024, .commit_bytes_max = 8192};

Options with(Options options, bool direct, Durability durability = Durability::group_commit) {
  options.direct_io = direct;
  options.durability = durability;
  return options;
}

TEST(DirectIo, EveryWriteIsWholeAlignedBlocksAndPaddingIsSteppedOver) {
  auto io = std::make_shared<FaultBackend>(21);
  {
    auto journal = Journal::open("/journal", with(kSmallSegments, true), io);
    ASSERT_TRUE(journal.ok()) << journal.status().to_string();
    append_range(*journal.value(), 0, 1500);  // several segments
    expect_versions(*journal.value(), 1500);
    ASSERT_TRUE(journal.value()->close().ok());
  }
  for (const bool direct : {true, false}) {
    auto journal = Journal::open("/journal", with(kSmallSegments, direct), io);
    ASSERT_TRUE(journal.ok()) << journal.status().to_string();
    EXPECT_GE(journal.value()->recovery().segments, 3u);
    EXPECT_TRUE(journal.value()->recovery().message.empty()) << journal.value()->recovery().message;
    expect_versions(*journal.value(), 1500);
  }
}

TEST(DirectIo, ATailWrittenWithoutItIsPaddedToABlockThenContinued) {
  auto io = std::make_shared<FaultBackend>(22);
  {
    auto journal = Journal::open("/journal", with(kSmallSegments, false), io);
    ASSERT_TRUE(journal.ok());
    append_range(*journal.value(), 0, 7);  // ends inside a block
  }
  {
    auto journal = Journal::open("/journal", with(kSmallSegments, true), io);
    ASSERT_TRUE(journal.ok()) << journal.status().to_string();
    append_range(*journal.value(), 7, 400);
    expect_versions(*journal.value(), 400);
  }
  auto journal = Journal::open("/journal", with(kSmallSegments, false), io);
  ASSERT_TRUE(journal.ok()) << journal.status().to_string();
  append_range(*journal.value(), 400, 410);
  expect_versions(*journal.value(), 410);
}

template <class Backend>
using DirectIoOnDisk = test::JournalFixture<Backend>;
using DiskBackends = ::testing::Types<PosixBackend, UringBackend>;
TYPED_TEST_SUITE(DirectIoOnDisk, DiskBackends, test::BackendName);

TYPED_TEST(DirectIoOnDisk, EveryDurabilityModeRoundTripsThroughReopen) {
  for (const Durability mode : {Durability::none, Durability::group_commit, Durability::interval}) {
    const std::string dir = this->dir_.path() + "/" + std::to_string(static_cast<int>(mode));
    std::filesystem::create_directory(dir);
    {
      auto journal = Journal::open(dir, with(kSmallSegments, true, mode), this->backend());
      ASSERT_TRUE(journal.ok()) << journal.status().to_string();
      append_range(*journal.value(), 0, 800);
      ASSERT_TRUE(journal.value()->close().ok());
    }
    auto journal = Journal::open(dir, with(kSmallSegments, true, mode), this->backend());
    ASSERT_TRUE(journal.ok()) << journal.status().to_string();
    EXPECT_TRUE(journal.value()->recovery().message.empty()) << journal.value()->recovery().message;
    expect_versions(*journal.value(), 800);
  }
}

}  // namespace
}  // namespace annal::journal
