// annal rekey's engine half (annal/engine/rekey.h): a store written under master key version 1,
// then 2, rekeyed, opens and reads every event with version 2 alone; no record sealed under 1
// remains but an erased stream's; the chain verifies under version 2's chain key; a second rekey
// writes nothing; a locked store, a store in clear, other keys and a broken chain are refused; a
// power cut before any write or sync of a rekey leaves every event readable and the next rekey
// finishes the work.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "annal/base/little_endian.h"
#include "annal/crypto/hkdf.h"
#include "annal/engine/engine.h"
#include "annal/engine/rekey.h"
#include "annal/journal/chain.h"
#include "annal/journal/format.h"
#include "annal/journal/reseal.h"
#include "engine_fixture.h"
#include "rekey_fixture.h"
#include "file_bytes.h"
#include "fault_backend.h"
#include "master_keys.h"
#include "temp_directory.h"

namespace annal::engine::test {
namespace {

using journal::FaultBackend;
using journal::IoBackend;

class RekeyTest : public ::testing::Test {
 protected:
  std::shared_ptr<IoBackend> io_ = journal::make_posix_backend();
  annal::test::TempDirectory dir_;
  std::shared_ptr<annal::test::MasterKeys> keys_ = std::make_shared<annal::test::MasterKeys>();
  std::shared_ptr<crypto::KeyProvider> newest_only_ = std::make_shared<SomeVersions>(keys_, std::set<std::uint32_t>{2});
};

TEST_F(RekeyTest, AfterARekeyTheNewestMasterVersionAloneReadsEverything) {
  const std::uint64_t gone = write_two_versions(dir_.path(), *keys_, rekey_options(keys_), io_);
  ASSERT_FALSE(HasFailure());
  const auto before = sealed_versions(*io_, dir_.path());
  ASSERT_GT(before.count({gone, 1}), 0u);
  std::size_t old_records = 0;
  for (const auto& [key, count] : before) old_records += key.second == 1 ? count : 0;
  // Without the rekey, version 2 alone cannot read the store's first events.
  {
    auto engine = Engine::open(dir_.path(), rekey_options(newest_only_));
    if (engine.ok()) {
      EXPECT_FALSE(engine.value()->read_stream("alpha", {}, soon()).ok());
      EXPECT_TRUE(engine.value()->close().ok());
    }
  }

  const auto done = rekey(dir_.path(), rekey_options(keys_));
  ASSERT_TRUE(done.ok()) << done.status().to_string();
  const RekeyReport& report = done.value();
  EXPECT_TRUE(report.changed());
  EXPECT_EQ(report.key_version, 2u);
  EXPECT_GT(report.segments, 3u);
  EXPECT_GE(report.segments_rewritten, 3u);
  EXPECT_EQ(report.records_resealed, old_records - before.at({gone, 1}));
  EXPECT_EQ(report.records_erased_left, before.at({gone, 1}));
  EXPECT_EQ(report.snapshots_resealed, 1u);  // the engine's state at the first close
  EXPECT_TRUE(report.chain_rewritten);
  ASSERT_TRUE(report.head_before && report.head_after);
  EXPECT_EQ(report.head_before->sequence, report.head_after->sequence);
  EXPECT_NE(report.head_before->link, report.head_after->link);

  // No record under version 1 but the erased stream's, which nobody can open: those unchanged.
  expect_rekeyed(*io_, dir_.path(), nullptr, newest_only_, gone);
  EXPECT_EQ(sealed_versions(*io_, dir_.path()).at({gone, 1}), before.at({gone, 1}));
  const auto keys_file = file_of(*io_, dir_.path() + "/KEYS");
  ASSERT_GE(keys_file.size(), 16u);
  EXPECT_EQ(load_le<std::uint32_t>(keys_file, 12), 2u) << "KEYS is still sealed under version 1";
  auto chain = chain_under(*io_, dir_.path(), newest_only_);
  ASSERT_TRUE(chain.ok() && chain.value().head) << chain.status().to_string();
  EXPECT_EQ(chain.value().head->link, report.head_after->link);
}

TEST_F(RekeyTest, ASecondRekeyFindsNothingToDoAndWritesNothing) {
  const std::uint64_t gone = write_two_versions(dir_.path(), *keys_, rekey_options(keys_), io_);
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(rekey(dir_.path(), rekey_options(keys_)).ok());
  const auto files = files_of(*io_, dir_.path());
  const auto again = rekey(dir_.path(), rekey_options(keys_));
  ASSERT_TRUE(again.ok()) << again.status().to_string();
  EXPECT_FALSE(again.value().changed());
  EXPECT_EQ(again.value().head_before->link, again.value().head_after->link);
  for (const auto& [name, bytes] : files_of(*io_, dir_.path())) {
    EXPECT_TRUE(files.contains(name) && files.at(name) == bytes) << name << ": a rekey with nothing to do changed it";
    if (files.contains(name) && files.at(name) != bytes) {
      const auto& was = files.at(name);
      std::size_t first = 0;
      while (first < std::min(was.size(), bytes.size()) && was[first] == bytes[first]) ++first;
      std::string a, b;
      for (std::size_t i = first; i < std::min<std::size_t>(first + 64, bytes.size()); ++i) {
        a += std::to_string(int(was[i])) + " ";
        b += std::to_string(int(bytes[i])) + " ";
      }
      ADD_FAILURE() << "sizes " << was.size() << " " << bytes.size() << " first difference at " << first << "\n" << a << "\n" << b;
    }
  }
  EXPECT_EQ(files_of(*io_, dir_.path()).size(), files.size());
  // With only the newest version too: nothing under the old one is left to open.
  const auto newest = rekey(dir_.path(), rekey_options(newest_only_));
  ASSERT_TRUE(newest.ok()) << newest.status().to_string();
  EXPECT_FALSE(newest.value().changed());
  EXPECT_EQ(read_everything(dir_.path(), rekey_options(newest_only_), nullptr, gone), expected_events());
}

TEST_F(RekeyTest, AStoreOpenElsewhereInClearOrUnderOtherOrTooFewKeysIsRefusedAndLeftAsItWas) {
  (void)write_two_versions(dir_.path(), *keys_, rekey_options(keys_), io_);
  ASSERT_FALSE(HasFailure());
  const auto files = files_of(*io_, dir_.path());
  {
    auto engine = Engine::open(dir_.path(), rekey_options(keys_));
    ASSERT_TRUE(engine.ok()) << engine.status().to_string();
    const auto locked = rekey(dir_.path(), rekey_options(keys_));
    EXPECT_EQ(locked.code(), ErrorCode::locked) << locked.status().to_string();
    EXPECT_NE(locked.status().message().find("close that first"), std::string::npos) << locked.status().to_string();
    ASSERT_TRUE(engine.value()->close().ok());
  }
  const auto reopened = files_of(*io_, dir_.path());  // the engine's open and close wrote KEYS and a snapshot
  const auto other = rekey(dir_.path(), rekey_options(std::make_shared<annal::test::MasterKeys>()));
  EXPECT_FALSE(other.ok());
  EXPECT_NE(other.status().message().find("KEYS"), std::string::npos) << other.status().to_string();
  // Version 2 alone opens KEYS (the last open saved it under 2), but not the records under 1.
  const auto lacking = rekey(dir_.path(), rekey_options(newest_only_));
  EXPECT_EQ(lacking.code(), ErrorCode::invalid_argument) << lacking.status().to_string();
  EXPECT_NE(lacking.status().message().find("the keys given lack"), std::string::npos)
      << lacking.status().to_string();
  const auto none = rekey(dir_.path(), rekey_options(nullptr));
  EXPECT_EQ(none.code(), ErrorCode::invalid_argument);
  EXPECT_NE(none.status().message().find("master keys"), std::string::npos) << none.status().to_string();
  EXPECT_TRUE(files_of(*io_, dir_.path()) == reopened);

  annal::test::TempDirectory clear;
  {
    auto engine = Engine::open(clear.path(), small_options());
    ASSERT_TRUE(engine.ok());
    ASSERT_TRUE(engine.value()->close().ok());
  }
  const auto plain = rekey(clear.path(), rekey_options(keys_));
  EXPECT_EQ(plain.code(), ErrorCode::invalid_argument);
  EXPECT_NE(plain.status().message().find("not encrypted"), std::string::npos) << plain.status().to_string();
}

// A store a crash left with work for its next open (a torn write after the tail's last record,
// CHAIN's last entry torn as an append cut short leaves it) is recovered first, as an open would,
// then rekeyed.
TEST_F(RekeyTest, WhatACrashLeftIsRecoveredFirst) {
  const std::uint64_t gone = write_two_versions(dir_.path(), *keys_, rekey_options(keys_), io_);
  ASSERT_FALSE(HasFailure());
  const std::string chain = dir_.path() + "/" + std::string(journal::kChainFileName);
  const auto entries = std::filesystem::file_size(chain) / journal::kChainEntryBytes;
  ASSERT_GT(entries, 2u);
  std::filesystem::resize_file(chain, std::filesystem::file_size(chain) - 10);
  std::uint64_t tail = 0;
  for (const auto& [name, bytes] : files_of(*io_, dir_.path())) tail = std::max(tail, journal::parse_segment_file_name(name).value_or(0));
  const std::string tail_path = dir_.path() + "/" + journal::segment_file_name(tail);
  auto bytes = file_of(*io_, tail_path);
  const auto header = journal::decode_segment_header(bytes, tail_path);
  ASSERT_TRUE(header.ok());
  std::size_t end = journal::kSegmentHeaderBytes;
  for (;;) {
    const auto record = journal::decode_record(std::span(bytes).subspan(end), header.value().salt);
    if (record.status != journal::RecordStatus::ok) break;
    end += record.padded_bytes;
  }
  ASSERT_LT(end + 100, bytes.size());
  std::fill_n(bytes.begin() + static_cast<std::ptrdiff_t>(end), 100, std::byte{0x5a});  // a write torn by the crash
  annal::test::write_file_bytes(tail_path, bytes);
  auto needed = journal::needs_recovery(*io_, dir_.path());
  ASSERT_TRUE(needed.ok() && needed.value());
  const auto done = rekey(dir_.path(), rekey_options(keys_));
  ASSERT_TRUE(done.ok()) << done.status().to_string();
  EXPECT_EQ(std::filesystem::file_size(chain) / journal::kChainEntryBytes, entries);
  expect_rekeyed(*io_, dir_.path(), nullptr, newest_only_, gone);
}

// The first segment's file with its first record's last payload byte flipped and its checksum
// recomputed, as someone editing the log would.
std::vector<std::byte> first_record_edited(IoBackend& io, const std::string& directory) {
  const std::string path = directory + "/" + journal::segment_file_name(1);
  auto bytes = file_of(io, path);
  const auto header = journal::decode_segment_header(bytes, path);
  EXPECT_TRUE(header.ok());
  if (!header.ok()) return bytes;
  const auto record = journal::decode_record(std::span(bytes).subspan(journal::kSegmentHeaderBytes), header.value().salt);
  EXPECT_EQ(record.status, journal::RecordStatus::ok);
  std::vector<std::byte> payload(record.payload.begin(), record.payload.end());
  payload.back() ^= std::byte{1};
  journal::encode_record(record.header, payload, header.value().salt,
                         std::span(bytes).subspan(journal::kSegmentHeaderBytes, record.padded_bytes));
  return bytes;
}

// Someone edited a sealed segment and recomputed its checksums: the chain shows it, and the rekey
// refuses before writing anything (rewriting would bless the edit with new links and tags).
TEST_F(RekeyTest, ABrokenChainIsRefusedBeforeAnythingIsWritten) {
  (void)write_two_versions(dir_.path(), *keys_, rekey_options(keys_), io_);
  ASSERT_FALSE(HasFailure());
  annal::test::write_file_bytes(dir_.path() + "/" + journal::segment_file_name(1), first_record_edited(*io_, dir_.path()));
  const auto files = files_of(*io_, dir_.path());
  const auto refused = rekey(dir_.path(), rekey_options(keys_));
  EXPECT_EQ(refused.code(), ErrorCode::corruption) << refused.status().to_string();
  EXPECT_NE(refused.status().message().find("chain breaks at 00000000000000000001.log"), std::string::npos)
      << refused.status().to_string();
  EXPECT_TRUE(files_of(*io_, dir_.path()) == files);
}

// A store written under versions 1 and 2 on a fault backend, then a rekey of it cut by a power cut
// before its write or sync `cut` (the cut not reached: it finished), the power back.
struct CutRekey {
  std::shared_ptr<FaultBackend> io;
  std::shared_ptr<annal::test::MasterKeys> keys;
  std::shared_ptr<crypto::KeyProvider> newest_only;  // version 2 alone
  std::uint64_t gone = 0;                            // the erased stream's id
  bool finished = false;
};
CutRekey rekey_cut_at(std::uint64_t cut, const std::string& directory) {
  CutRekey run;
  run.io = std::make_shared<FaultBackend>(cut);
  run.keys = std::make_shared<annal::test::MasterKeys>();
  run.newest_only = std::make_shared<SomeVersions>(run.keys, std::set<std::uint32_t>{2});
  run.gone = write_two_versions(directory, *run.keys, rekey_options(run.keys), run.io);
  run.io->crash_before(cut);
  run.finished = rekey(directory, rekey_options(run.keys), run.io).ok();
  run.io->crash();
  run.io->revive();
  return run;
}

// Calls `check(run)` after a rekey cut by a power cut before its write or sync 1, 2, 3 ... in
// turn, up to the first cut it did not reach (it finished: every point of it was tried).
template <class Check>
void for_each_cut(const std::string& directory, Check&& check) {
  for (std::uint64_t cut = 1;; ++cut) {
    SCOPED_TRACE("power cut before the rekey's write or sync " + std::to_string(cut));
    ASSERT_LT(cut, 1000u) << "the rekey never finished before the cut";
    const CutRekey run = rekey_cut_at(cut, directory);
    ASSERT_FALSE(::testing::Test::HasFailure());
    check(run);
    if (::testing::Test::HasFatalFailure() || run.finished) return;
  }
}

// A power cut before each write and sync of a rekey in turn (the fault backend keeps what was
// synced): the store then opens with both versions and reads every event, and the next rekey,
// run with no cut, finishes: version 2 alone reads everything and the chain verifies under it.
TEST(RekeyFaults, APowerCutAnywhereInARekeyLeavesEveryEventReadableAndTheNextRekeyFinishes) {
  constexpr const char* kDir = "/rekeyed";
  std::size_t cut_short = 0;  // cuts after which REKEY was left: segments rewritten, CHAIN not yet
  for_each_cut(kDir, [&](const CutRekey& run) {
    const auto& [io, keys, newest_only, gone, finished] = run;
    const bool left_rekey = journal::rekey_cut_short(*io, kDir);
    if (left_rekey) {
      ++cut_short;
      auto chain = chain_under(*io, kDir, keys);
      ASSERT_TRUE(chain.ok()) << chain.status().to_string();
      if (!chain.value().sound()) {
        EXPECT_NE(chain.value().problems.front().find("a rekey (annal rekey) was cut short"), std::string::npos)
            << chain.value().problems.front();
      }
    }
    testing::internal::CaptureStderr();
    const auto events = read_everything(kDir, rekey_options(keys), io, gone);
    const std::string said = testing::internal::GetCapturedStderr();
    ASSERT_EQ(events, expected_events());
    // An engine opened meanwhile says why the chain does not verify, and what finishes it.
    EXPECT_EQ(said.find("a rekey (annal rekey) was cut short here") != std::string::npos, left_rekey) << said;
    const auto again = rekey(kDir, rekey_options(keys), io);
    ASSERT_TRUE(again.ok()) << again.status().to_string();
    EXPECT_FALSE(journal::rekey_cut_short(*io, kDir));
    expect_rekeyed(*io, kDir, io, newest_only, gone);
  });
  EXPECT_GT(cut_short, 2u) << "no cut fell between the first segment rewritten and CHAIN";
}

// A write that fails (EIO) at each point of a rekey in turn: the rekey fails with it and leaves no
// copy of a segment behind (a *.rekey.tmp used to stay until the next open), and the next rekey
// finishes.
TEST(RekeyFaults, ARekeyStoppedByAFailedWriteLeavesNoCopyBehindAndTheNextFinishes) {
  constexpr const char* kDir = "/rekeyed";
  std::size_t failed = 0;
  for (std::uint64_t nth = 1;; ++nth) {
    SCOPED_TRACE("the rekey's write " + std::to_string(nth) + " fails");
    ASSERT_LT(nth, 1000u) << "the rekey never finished before the failure";
    const auto io = std::make_shared<FaultBackend>(nth);
    const auto keys = std::make_shared<annal::test::MasterKeys>();
    const std::uint64_t gone = write_two_versions(kDir, *keys, rekey_options(keys), io);
    io->fail_write(nth, EIO);
    const auto stopped = rekey(kDir, rekey_options(keys), io);
    if (stopped.ok()) break;
    ++failed;
    EXPECT_EQ(stopped.code(), ErrorCode::io_error) << stopped.status().to_string();
    for (const auto& [name, bytes] : files_of(*io, kDir)) EXPECT_FALSE(name.ends_with(".rekey.tmp")) << name;
    const auto again = rekey(kDir, rekey_options(keys), io);
    ASSERT_TRUE(again.ok()) << again.status().to_string();
    expect_rekeyed(*io, kDir, io, std::make_shared<SomeVersions>(keys, std::set<std::uint32_t>{2}), gone);
    if (HasFatalFailure()) return;
  }
  EXPECT_GT(failed, 2u);
}

// Retention between a rekey cut short and the next: the segments it removed may be ones the
// first rewrote (their new links only in REKEY) or not; either way the next rekey finishes, and
// the chain verifies under the newest version alone.
TEST(RekeyFaults, RetentionBetweenARekeyCutShortAndTheNextLeavesAChainThatVerifies) {
  constexpr const char* kDir = "/rekeyed";
  std::size_t trimmed = 0;
  for_each_cut(kDir, [&](const CutRekey& run) {
    const auto& [io, keys, newest_only, gone, finished] = run;
    if (finished || !journal::rekey_cut_short(*io, kDir)) return;
    {
      auto engine = Engine::open(kDir, rekey_options(keys), io);
      ASSERT_TRUE(engine.ok()) << engine.status().to_string();
      const auto first = engine.value()->trim_journal();
      ASSERT_TRUE(first.ok()) << first.status().to_string();
      ASSERT_GT(first.value(), 1u) << "retention removed nothing";
      ASSERT_TRUE(engine.value()->close().ok());
    }
    ++trimmed;
    const auto again = rekey(kDir, rekey_options(keys), io);
    ASSERT_TRUE(again.ok()) << again.status().to_string();
    expect_resealed(*io, kDir, newest_only, gone);  // what retention left: the events it kept
  });
  EXPECT_GT(trimmed, 2u);
}

// After a rekey cut short, CHAIN no longer vouches for the segments it rewrote; REKEY does: one
// of them edited then (its checksums recomputed) matches neither, and the next rekey refuses it.
TEST(RekeyFaults, ASegmentEditedAfterARekeyCutShortIsRefusedByTheNext) {
  constexpr const char* kDir = "/rekeyed";
  for (std::uint64_t cut = 1;; ++cut) {
    SCOPED_TRACE("power cut before the rekey's write or sync " + std::to_string(cut));
    ASSERT_LT(cut, 1000u) << "no cut left the rekey cut short";
    const CutRekey run = rekey_cut_at(cut, kDir);
    ASSERT_FALSE(HasFailure());
    const auto& [io, keys, newest_only, gone, finished] = run;
    if (!journal::rekey_cut_short(*io, kDir)) continue;
    const auto edited = first_record_edited(*io, kDir);  // the first segment: rewritten first
    auto file = io->open(std::string(kDir) + "/" + journal::segment_file_name(1), journal::OpenMode::read_write);
    ASSERT_TRUE(file.ok());
    ASSERT_TRUE(io->write(file.value(), 0, edited).ok());
    ASSERT_TRUE(io->close(file.value()).ok());
    const auto refused = rekey(kDir, rekey_options(keys), io);
    EXPECT_EQ(refused.code(), ErrorCode::corruption) << refused.status().to_string();
    EXPECT_NE(refused.status().message().find("chain breaks at 00000000000000000001.log"), std::string::npos)
        << refused.status().to_string();
    EXPECT_NE(refused.status().message().find("matches neither"), std::string::npos) << refused.status().to_string();
    EXPECT_TRUE(journal::rekey_cut_short(*io, kDir));
    return;
  }
}


// Someone without the master key edits a sealed segment (an erased stream's record, which no key
// opens any more, so only the chain can show the edit), recomputes every link of CHAIN (SHA-256,
// no key needed) and marks each entry tagged under a master version the key file lacks (a retired
// one would do), its tag anything. verify_chain only notes such tags as not checked, so the rekey
// takes the chain as sound and tags every entry anew under version 2: the edit is laundered, and
// the chain then verifies with every tag checked. A rekey re-tags only what it could check.
TEST_F(RekeyTest, ChainEntriesWhoseTagsTheKeysCannotCheckAreNotTaggedAnew) {
  const std::uint64_t gone = write_two_versions(dir_.path(), *keys_, rekey_options(keys_), io_);
  ASSERT_FALSE(HasFailure());
  const std::string first = dir_.path() + "/" + journal::segment_file_name(1);
  auto bytes = file_of(*io_, first);
  const auto header = journal::decode_segment_header(bytes, first);
  ASSERT_TRUE(header.ok());
  bool edited = false;
  for (std::size_t at = journal::kSegmentHeaderBytes; at < bytes.size() && !edited;) {
    const auto record = journal::decode_record(std::span(bytes).subspan(at), header.value().salt);
    ASSERT_EQ(record.status, journal::RecordStatus::ok);
    if (record.header.stream_id == gone && (record.header.flags & journal::kFlagSealed) != 0) {
      std::vector<std::byte> payload(record.payload.begin(), record.payload.end());
      payload.back() ^= std::byte{1};
      journal::encode_record(record.header, payload, header.value().salt,
                             std::span(bytes).subspan(at, record.padded_bytes));
      edited = true;
    }
    at += record.padded_bytes;
  }
  ASSERT_TRUE(edited) << "no record of the erased stream in the first segment";
  annal::test::write_file_bytes(first, bytes);
  const std::string chain_path = dir_.path() + "/" + std::string(journal::kChainFileName);
  auto chain = file_of(*io_, chain_path);
  ASSERT_GT(chain.size(), 0u);
  crypto::Digest previous{};
  for (std::size_t at = 0; at + journal::kChainEntryBytes <= chain.size(); at += journal::kChainEntryBytes) {
    auto entry = journal::decode_chain_entry(std::span(chain).subspan(at));
    ASSERT_TRUE(entry.has_value());
    const auto link = journal::segment_link(*io_, dir_.path() + "/" + journal::segment_file_name(entry->base), previous,
                                            entry->last);
    ASSERT_TRUE(link.ok()) << link.status().to_string();
    entry->link = link.value().link;
    entry->key_version = 9;
    entry->tag = {};
    journal::encode_chain_entry(*entry, std::span(chain).subspan(at).first<journal::kChainEntryBytes>());
    previous = entry->link;
  }
  annal::test::write_file_bytes(chain_path, chain);

  const auto refused = rekey(dir_.path(), rekey_options(keys_));
  EXPECT_FALSE(refused.ok()) << "CHAIN's entries, none of whose tags the keys could check, were tagged anew";
  if (refused.ok()) {
    auto after = chain_under(*io_, dir_.path(), newest_only_);
    ASSERT_TRUE(after.ok());
    EXPECT_FALSE(after.value().sound() && after.value().tags_checked == after.value().entries)
        << "the edited segment now verifies, every entry's tag checked under version 2";
  }
}

// A rekey refused because it could not read the store (here CHAIN, a directory in its place)
// lets go of the LOCK it took: with the store put right, the same backend rekeys it (an
// application that passes its own backend would otherwise find the store locked until it ends).
TEST_F(RekeyTest, ARekeyThatFailsBeforeItsWorkLetsGoOfTheLock) {
  (void)write_two_versions(dir_.path(), *keys_, rekey_options(keys_), io_);
  ASSERT_FALSE(HasFailure());
  const std::string chain = dir_.path() + "/" + std::string(journal::kChainFileName);
  const auto saved = file_of(*io_, chain);
  ASSERT_TRUE(std::filesystem::remove(chain));
  ASSERT_TRUE(std::filesystem::create_directory(chain));
  const auto failed = rekey(dir_.path(), rekey_options(keys_), io_);
  ASSERT_FALSE(failed.ok());
  ASSERT_TRUE(std::filesystem::remove(chain));
  annal::test::write_file_bytes(chain, saved);
  const auto again = rekey(dir_.path(), rekey_options(keys_), io_);
  EXPECT_TRUE(again.ok()) << "after a refusal (" << failed.status().to_string() << "): " << again.status().to_string();
}

// The (base, last) of each entry of the REKEY a rekey cut short left in `directory` (reseal.h has
// the layout); empty if there is none.
std::vector<std::pair<std::uint64_t, std::uint64_t>> rekey_file_entries(IoBackend& io, const std::string& directory) {
  const auto bytes = file_of(io, directory + "/" + std::string(journal::kRekeyFileName));
  std::vector<std::pair<std::uint64_t, std::uint64_t>> entries;
  if (bytes.size() < 64) return entries;
  const auto count = load_le<std::uint32_t>(bytes, 56);
  for (std::size_t i = 0; i < count && 64 + (i + 1) * 48 <= bytes.size(); ++i) {
    entries.emplace_back(load_le<std::uint64_t>(bytes, 64 + i * 48), load_le<std::uint64_t>(bytes, 64 + i * 48 + 8));
  }
  return entries;
}

// A rekey under version 2 cut short after it rewrote several segments, then master version 3
// added (annal masterkey --rotate) and a rekey under it cut short in turn, before each of its
// writes and syncs: the next rekey must still finish. The second rekey rewrites the first segment
// again (its records are under 2, no longer the newest) and drops every REKEY entry from there on,
// so the segments the first rekey rewrote after it match neither their old link in CHAIN nor any
// link in REKEY, and every later rekey refuses the store ("matches neither ... it was changed").
TEST(RekeyFaults, ARekeyCutShortThenOneUnderANewerVersionCutShortTooCanStillBeFinished) {
  constexpr const char* kDir = "/rekeyed";
  std::uint64_t chosen = 0;  // the cut that leaves REKEY with the most entries
  std::size_t most = 0;
  for (std::uint64_t cut = 1;; ++cut) {
    ASSERT_LT(cut, 1000u) << "the rekey never finished before the cut";
    const CutRekey run = rekey_cut_at(cut, kDir);
    ASSERT_FALSE(HasFailure());
    if (run.finished) break;
    if (const std::size_t entries = rekey_file_entries(*run.io, kDir).size(); entries > most) {
      most = entries;
      chosen = cut;
    }
  }
  ASSERT_GE(most, 2u) << "no cut left REKEY with two rewritten segments";
  for (std::uint64_t cut = 1;; ++cut) {
    SCOPED_TRACE("the first rekey cut before its write or sync " + std::to_string(chosen) + " (REKEY with " +
                 std::to_string(most) + " entries); the one under version 3 before its write or sync " +
                 std::to_string(cut));
    ASSERT_LT(cut, 1000u) << "the rekey under version 3 never finished before the cut";
    const CutRekey run = rekey_cut_at(chosen, kDir);
    ASSERT_FALSE(HasFailure());
    ASSERT_TRUE(journal::rekey_cut_short(*run.io, kDir));
    run.keys->add(3);
    run.io->crash_before(cut);
    const bool finished = rekey(kDir, rekey_options(run.keys), run.io).ok();
    run.io->crash();
    run.io->revive();
    const auto again = rekey(kDir, rekey_options(run.keys), run.io);
    ASSERT_TRUE(again.ok()) << again.status().to_string();
    const auto newest_only = std::make_shared<SomeVersions>(run.keys, std::set<std::uint32_t>{3});
    expect_rekeyed(*run.io, kDir, run.io, newest_only, run.gone);
    if (HasFatalFailure() || finished) return;
  }
}

// Whether a sealed segment of `directory` (not the tail) holds a record of a stream other than
// `gone` sealed under master version 1: one the next rekey rewrites.
bool a_sealed_segment_holds_version_1(IoBackend& io, const std::string& directory, std::uint64_t gone) {
  std::vector<std::uint64_t> bases;
  const auto names = io.list(directory);
  if (!names.ok()) return false;
  for (const std::string& name : names.value()) {
    if (const auto base = journal::parse_segment_file_name(name)) bases.push_back(*base);
  }
  std::sort(bases.begin(), bases.end());
  for (std::size_t i = 0; i + 1 < bases.size(); ++i) {
    const std::string path = directory + "/" + journal::segment_file_name(bases[i]);
    const auto bytes = file_of(io, path);
    const auto header = journal::decode_segment_header(bytes, path);
    if (!header.ok()) continue;
    for (std::size_t at = journal::kSegmentHeaderBytes; at < bytes.size();) {
      const auto record = journal::decode_record(std::span(bytes).subspan(at), header.value().salt);
      if (record.status != journal::RecordStatus::ok) break;
      at += record.padded_bytes;
      if (record.header.type == journal::kTypePadding || (record.header.flags & journal::kFlagSealed) == 0) continue;
      const bool names_stream = record.header.stream_id == 0 && record.header.type == 1;
      const std::uint64_t stream = names_stream ? record.header.stream_version : record.header.stream_id;
      if (stream != gone && load_le<std::uint32_t>(record.payload, 0) == 1) return true;
    }
  }
  return false;
}

// Retention between a rekey cut short and the next removed a segment the first rewrote, right
// before the first segment kept: the next rekey links the segments it rewrites from CHAIN's old
// link of the removed segment (start_link), but records them in REKEY beside the first rekey's
// entries, whose links run from the removed segment's copy (REKEY). Cut short in turn, it leaves a
// store the rekey after it refuses: the first segment it rewrote matches neither CHAIN nor REKEY
// when checked from the copy's link (check_cut_short), so no rekey ever finishes.
TEST(RekeyFaults, RetentionThenASecondRekeyCutShortLeavesAStoreTheNextRekeyFinishes) {
  constexpr const char* kDir = "/rekeyed";
  const auto trim = [&](const CutRekey& run) {
    auto engine = Engine::open(kDir, rekey_options(run.keys), run.io);
    ASSERT_TRUE(engine.ok()) << engine.status().to_string();
    ASSERT_TRUE(engine.value()->trim_journal().ok());
    ASSERT_TRUE(engine.value()->close().ok());
  };
  // A first cut after which retention removes a segment the first rekey rewrote, right before
  // the first kept one, and keeps a sealed segment the second rekey has to rewrite.
  std::uint64_t chosen = 0;
  for (std::uint64_t cut = 1; chosen == 0; ++cut) {
    ASSERT_LT(cut, 1000u) << "no cut left such a store";
    const CutRekey run = rekey_cut_at(cut, kDir);
    ASSERT_FALSE(HasFailure());
    ASSERT_FALSE(run.finished) << "no cut left such a store";
    if (!journal::rekey_cut_short(*run.io, kDir)) continue;
    trim(run);
    ASSERT_FALSE(HasFailure());
    std::uint64_t first = UINT64_MAX;
    const auto names = run.io->list(kDir);
    ASSERT_TRUE(names.ok());
    for (const std::string& name : names.value()) {
      first = std::min(first, journal::parse_segment_file_name(name).value_or(UINT64_MAX));
    }
    const auto entries = rekey_file_entries(*run.io, kDir);
    const bool removed_rewritten =
        std::any_of(entries.begin(), entries.end(), [&](const auto& entry) { return entry.second + 1 == first; });
    if (removed_rewritten && a_sealed_segment_holds_version_1(*run.io, kDir, run.gone)) chosen = cut;
  }
  for (std::uint64_t cut = 1;; ++cut) {
    SCOPED_TRACE("the first rekey cut before its write or sync " + std::to_string(chosen) +
                 ", retention, the second rekey cut before its write or sync " + std::to_string(cut));
    ASSERT_LT(cut, 1000u) << "the second rekey never finished before the cut";
    const CutRekey run = rekey_cut_at(chosen, kDir);
    ASSERT_FALSE(HasFailure());
    trim(run);
    ASSERT_FALSE(HasFailure());
    run.io->crash_before(cut);
    const bool finished = rekey(kDir, rekey_options(run.keys), run.io).ok();
    run.io->crash();
    run.io->revive();
    const auto again = rekey(kDir, rekey_options(run.keys), run.io);
    ASSERT_TRUE(again.ok()) << again.status().to_string();
    expect_resealed(*run.io, kDir, run.newest_only, run.gone);
    if (HasFatalFailure() || finished) return;
  }
}

// A store written in clear, then encrypted (its first sealed segments chained untagged, as no
// chain key existed then), then rotated to version 2: the rekey finishes, and afterwards the chain
// verifies under version 2 (every entry tagged under it). The rekey refuses it instead: the check
// before rewriting calls the entries from before encryption "untagged (written without the chain
// key)", so a store encrypted after it was created can never be rekeyed.
TEST_F(RekeyTest, AStoreEncryptedAfterItWasWrittenInClearCanBeRekeyed) {
  {
    auto engine = Engine::open(dir_.path(), rekey_options(nullptr));
    ASSERT_TRUE(engine.ok()) << engine.status().to_string();
    append_round(*engine.value(), 0, 40, kStreams);
    ASSERT_TRUE(engine.value()->close().ok());
  }
  for (const std::uint32_t version : {1u, 2u}) {
    if (version == 2) keys_->add(2);
    auto engine = Engine::open(dir_.path(), rekey_options(keys_));
    ASSERT_TRUE(engine.ok()) << engine.status().to_string();
    append_round(*engine.value(), 40 * version, 40, kStreams);
    ASSERT_TRUE(engine.value()->close().ok());
  }
  const auto done = rekey(dir_.path(), rekey_options(keys_));
  ASSERT_TRUE(done.ok()) << done.status().to_string();
  auto chain = chain_under(*io_, dir_.path(), newest_only_);
  ASSERT_TRUE(chain.ok()) << chain.status().to_string();
  EXPECT_TRUE(chain.value().sound()) << chain.value().problems.front();
}

}  // namespace
}  // namespace annal::engine::test
