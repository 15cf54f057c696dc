// The damage matrix: a store damaged the ways disks, stray writes and hurried operators damage
// them, and what each tool and the writer's open make of it. Nothing may pass for sound that lost
// acknowledged events, and nothing that is sound may be refused.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "annal/journal/format.h"
#include "annal/journal/inspect.h"
#include "run_annal.h"
#include "temp_directory.h"

namespace annal::cli::test {
namespace {

namespace fs = std::filesystem;

struct Store {
  std::string dir;
  std::vector<journal::SegmentReport> segments;  // in log order
  std::string newest_state;                      // the engine's newest state snapshot file

  [[nodiscard]] std::string path(const journal::SegmentReport& segment) const { return dir + "/" + segment.file; }
  [[nodiscard]] const journal::SegmentReport& middle() const { return segments[segments.size() / 2]; }
};

// What each tool says of the damage: exit codes (0 sound, 1 damage found), and words that name it.
struct Case {
  const char* name;
  void (*damage)(const Store&);
  int verify;
  int inspect;
  int dump;
  int open;  // the writer's open (annal load), without --accept-data-loss
  const char* says;  // in what verify prints, and in what dump and the open print when they fail
};

void cut(const std::string& file, std::uint64_t bytes) { fs::resize_file(file, bytes); }

std::streamoff middle_of(const journal::SegmentReport& segment) {
  return static_cast<std::streamoff>(segment.used_bytes / 2);
}

// Every file of `directory`, names and bytes, as one string to compare. An empty LOCK is left out:
// an open creates one to take the lock.
std::string contents(const std::string& directory) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(directory)) {
    if (entry.path().filename() != "LOCK" || entry.file_size() != 0) names.push_back(entry.path().filename());
  }
  std::sort(names.begin(), names.end());
  std::string all;
  for (const std::string& name : names) all += name + "\n" + read_file(directory + "/" + name) + "\n";
  return all;
}

// The offset `bytes` before the end of what the newest segment holds.
std::streamoff before_end(const Store& store, std::uint64_t bytes) {
  return static_cast<std::streamoff>(store.segments.back().used_bytes - bytes);
}

const Case kCases[] = {
    {"Intact", [](const Store&) {}, 0, 0, 0, 0, "sound"},
    // A sealed segment with a valid index file is trusted at open and by inspect, and checked when
    // read: verify and dump find the damage.
    {"FlippedByteInTheOldestSegment", [](const Store& s) { flip_byte(s.path(s.segments.front()), middle_of(s.segments.front())); }, 1, 0, 1, 0,
     "checksum"},
    {"FlippedByteInAMiddleSegment", [](const Store& s) { flip_byte(s.path(s.middle()), middle_of(s.middle())); }, 1, 0, 1, 0,
     "checksum"},
    {"FlippedByteInASegmentHeader", [](const Store& s) { flip_byte(s.path(s.segments.front()), 10); }, 1, 1, 1, 1,
     "00000000000000000001.log"},
    {"FlippedByteInTheNewestSegment", [](const Store& s) { flip_byte(s.path(s.segments.back()), 4096 + 300); }, 1, 1, 1,
     1, "checksum"},
    // A clean close ends the log with a mark (a padding record, journal.cc mark_durable_end) that
    // tells damage to the last events from a torn write. The mark itself holds nothing.
    {"FlippedByteInTheCloseMark", [](const Store& s) { flip_byte(s.path(s.segments.back()), before_end(s, 20)); }, 0, 0,
     0, 0, "sound"},
    {"FlippedByteInTheLastEvent",
     [](const Store& s) { flip_byte(s.path(s.segments.back()), before_end(s, journal::kRecordHeaderBytes + 20)); }, 1, 1,
     1, 1, "checksum"},
    // Without the mark (as after a crash), damage to the last event looks like a torn write: the
    // LOCK notice says it was acknowledged.
    {"FlippedByteInTheLastEventAndTheCloseMark",
     [](const Store& s) {
       flip_byte(s.path(s.segments.back()), before_end(s, 20));
       flip_byte(s.path(s.segments.back()), before_end(s, journal::kRecordHeaderBytes + 20));
     },
     1, 1, 1, 1, "acknowledged events"},
    {"NewestSegmentCutShort",
     [](const Store& s) { cut(s.path(s.segments.back()), s.segments.back().used_bytes / 2 + 1000); }, 1, 1, 1, 1,
     "acknowledged events"},
    {"NewestSegmentCutInsideItsHeader", [](const Store& s) { cut(s.path(s.segments.back()), 100); }, 1, 1, 1, 1,
     "acknowledged events"},
    {"MiddleSegmentCutShort", [](const Store& s) { cut(s.path(s.middle()), s.middle().used_bytes / 2); }, 1, 1, 1, 1,
     "truncated record"},
    {"NewestSegmentDeleted", [](const Store& s) { fs::remove(s.path(s.segments.back())); }, 1, 1, 1, 1,
     "acknowledged events"},
    {"MiddleSegmentDeleted", [](const Store& s) { fs::remove(s.path(s.middle())); }, 1, 1, 1, 1, "a segment is missing"},
    {"OldestSegmentDeleted", [](const Store& s) { fs::remove(s.path(s.segments.front())); }, 1, 1, 1, 1,
     "retention floor"},
    {"EverySegmentDeleted",
     [](const Store& s) {
       for (const auto& segment : s.segments) fs::remove(s.path(segment));
     },
     1, 1, 1, 1, "acknowledged events"},
    // Without LOCK, the engine's state snapshot alone proves the loss.
    {"NewestSegmentAndLockDeleted",
     [](const Store& s) {
       fs::remove(s.path(s.segments.back()));
       fs::remove(s.dir + "/LOCK");
     },
     1, 1, 1, 1, "snapshot-_engine-"},
    // A damaged snapshot costs only a longer replay: the store is sound, verify names the file.
    {"NewestStateSnapshotDamaged", [](const Store& s) {
       const std::string file = s.dir + "/" + s.newest_state;
       flip_byte(file, static_cast<std::streamoff>(fs::file_size(file) - 10));
     },
     1, 0, 0, 0,
     "snapshot"},
    // LOCK's words are witnesses, not data: without them nothing is lost.
    {"LockNoticeDamaged", [](const Store& s) { flip_byte(s.dir + "/LOCK", 3); }, 0, 0, 0, 0, "sound"},
    {"LockDeleted", [](const Store& s) { fs::remove(s.dir + "/LOCK"); }, 0, 0, 0, 0, "sound"},
};

class DamageTest : public ::testing::TestWithParam<Case> {
 protected:
  // A store of several 64 KiB segments (each sealed one with its index file), state snapshots
  // every 200 events, closed cleanly.
  Store make_store() {
    append_events(dir_.path(), small_segments(), 2000);
    Store store{.dir = dir_.path(), .segments = {}, .newest_state = {}};
    const auto report = journal::inspect_directory(store.dir, true);
    EXPECT_TRUE(report.ok() && report.value().sound());
    if (report.ok()) store.segments = report.value().segments;
    for (const auto& entry : fs::directory_iterator(store.dir)) {
      const std::string file = entry.path().filename();
      if (file.starts_with("snapshot-_engine-")) store.newest_state = std::max(store.newest_state, file);
    }
    EXPECT_GE(store.segments.size(), 5u);
    EXPECT_FALSE(store.newest_state.empty());
    return store;
  }

  annal::test::TempDirectory dir_;
};

TEST_P(DamageTest, EveryToolAndTheWritersOpenGiveTheirVerdict) {
  const Case& damage = GetParam();
  const Store store = make_store();
  ASSERT_FALSE(HasFailure());
  damage.damage(store);
  const Ran verified = run({"verify", store.dir});
  EXPECT_EQ(verified.exit_code, damage.verify) << verified.out << verified.err;
  EXPECT_NE((verified.out + verified.err).find(damage.says), std::string::npos) << verified.out << verified.err;
  const Ran inspected = run({"inspect", store.dir});
  EXPECT_EQ(inspected.exit_code, damage.inspect) << inspected.out << inspected.err;
  const Ran dumped = run({"dump", store.dir});
  EXPECT_EQ(dumped.exit_code, damage.dump) << dumped.err;
  if (damage.dump != 0) {
    EXPECT_NE(dumped.err.find(damage.says), std::string::npos) << dumped.err;
  }
  // Last: the writer's open may repair what it may (a torn tail), and refuses what it must,
  // changing nothing then: the evidence stays for the operator.
  const std::string before = contents(store.dir);
  const Ran opened = run({"load", store.dir, "--events", "1"});
  EXPECT_EQ(opened.exit_code, damage.open) << opened.out << opened.err;
  if (damage.open != 0) {
    EXPECT_NE(opened.err.find(damage.says), std::string::npos) << opened.err;
    EXPECT_EQ(contents(store.dir), before) << "a refused open changed the directory";
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, DamageTest, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& each) { return std::string(each.param.name); });

// Told to accept the loss, the writer's open goes on after what the log holds, keeps the
// evidence aside and says what it did; the tools then find the store sound again.
TEST(DataLossTest, AcceptedLossKeepsTheEvidenceAndTheLogGoesOn) {
  annal::test::TempDirectory dir;
  append_events(dir.path(), small_segments(), 2000);
  auto report = journal::inspect_directory(dir.path(), true);
  ASSERT_TRUE(report.ok());
  const journal::SegmentReport newest = report.value().segments.back();
  fs::remove(dir.path() + "/" + newest.file);
  ASSERT_EQ(run({"load", dir.path(), "--events", "1"}).exit_code, 1);
  ASSERT_EQ(run({"load", dir.path(), "--events", "1"}).exit_code, 1) << "a refused open must not clear the evidence";
  const Ran left = run({"dump", dir.path()});  // what the log still holds, and a failure: not all of it
  ASSERT_EQ(left.exit_code, 1);

  const Ran accepted = run({"load", dir.path(), "--events", "10", "--accept-data-loss"});
  ASSERT_EQ(accepted.exit_code, 0) << accepted.err;
  EXPECT_NE(accepted.err.find("accepted (accept_data_loss)"), std::string::npos) << accepted.err;
  const std::string range = std::to_string(newest.base) + "-" + std::to_string(report.value().last_sequence);
  EXPECT_TRUE(fs::exists(dir.path() + "/data-loss-" + range + ".txt")) << range;
  std::size_t set_aside = 0;
  for (const auto& entry : fs::directory_iterator(dir.path())) {
    if (entry.path().filename().string().find(".lost-after-" + std::to_string(newest.base - 1)) != std::string::npos) {
      ++set_aside;
    }
  }
  EXPECT_GE(set_aside, 1u) << "the state snapshots past the log are kept aside";

  const Ran verified = run({"verify", dir.path()});
  EXPECT_EQ(verified.exit_code, 0) << verified.out << verified.err;
  const Ran dumped = run({"dump", dir.path()});
  ASSERT_EQ(dumped.exit_code, 0) << dumped.err;
  EXPECT_EQ(lines(dumped.out), lines(left.out) + 10);
}

}  // namespace
}  // namespace annal::cli::test
