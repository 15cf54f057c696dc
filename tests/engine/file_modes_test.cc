// Who may read a store: every file and directory the engine makes (segments, LOCK, state and
// projection snapshots, the directory and its missing parents) is its owner's alone by default,
// whatever the process's umask lets through; Options widen it; a mode that would let others write
// is refused.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "annal/engine/engine.h"
#include "counter_projection.h"
#include "eventually.h"
#include "temp_directory.h"

namespace annal::engine {
namespace {

// The umask a test needs, and the one before it back at the end.
class Umask {
 public:
  explicit Umask(mode_t mask) : before_(::umask(mask)) {}
  ~Umask() { ::umask(before_); }
  Umask(const Umask&) = delete;
  Umask& operator=(const Umask&) = delete;

 private:
  mode_t before_;
};

std::uint32_t mode_of(const std::filesystem::path& path) {
  struct stat info {};
  EXPECT_EQ(::stat(path.c_str(), &info), 0) << path;
  return info.st_mode & 07777;
}

// Opens a store at `directory`, appends, lets a snapshotted projection write snapshots, closes:
// the kinds of file the engine writes are then there (segments small enough to roll over, so
// sealed ones have their index files).
void fill_store(const std::string& directory, Options options) {
  options.event_bytes_max = 8u << 10;
  options.journal.commit_bytes_max = 16u << 10;
  options.journal.segment_bytes_max = 64u << 10;
  auto opened = Engine::open(directory, options);
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  const std::unique_ptr<Engine> engine = std::move(opened).value();
  ASSERT_TRUE(engine->add_projection("counter", std::make_shared<test::Counter>(), {.snapshot_every_events = 5}).ok());
  const std::vector<std::byte> payload(4u << 10, std::byte{'x'});
  Receipt last;
  for (int i = 0; i < 40; ++i) {
    const EventData event{.type = "Counted", .payload = payload};
    auto appended = engine->append("s" + std::to_string(i % 3), ExpectedVersion::any(), {&event, 1});
    ASSERT_TRUE(appended.ok()) << appended.status().to_string();
    last = appended.value();
  }
  ASSERT_TRUE(engine->wait_durable(last, Engine::Clock::now() + std::chrono::minutes(1)).ok());
  // Snapshots are written by another thread: wait for one to be there.
  ASSERT_TRUE(annal::test::eventually([&] {
    const auto status = engine->projection_status("counter");
    return status.ok() && status.value().snapshots_written > 0;
  }));
  ASSERT_TRUE(engine->close().ok());
}

// Each file's and directory's mode under `root`, by kind.
struct Modes {
  std::map<std::string, std::uint32_t> files;
  std::map<std::string, std::uint32_t> directories;
};
Modes modes_under(const std::filesystem::path& root) {
  Modes modes;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(root)) {
    const std::string name = std::filesystem::relative(entry.path(), root).string();
    (entry.is_directory() ? modes.directories : modes.files)[name] = mode_of(entry.path());
  }
  return modes;
}

void expect_all(const Modes& modes, std::uint32_t file_mode, std::uint32_t directory_mode) {
  // The kinds the claim is about are all there: the log, a sealed segment's index, its LOCK, the
  // engine's state snapshot and the projection's.
  bool segment = false;
  bool index = false;
  bool snapshot = false;
  for (const auto& [name, mode] : modes.files) {
    EXPECT_EQ(mode, file_mode) << name;
    segment = segment || name.ends_with(".log");
    index = index || name.ends_with(".idx");
    snapshot = snapshot || name.find("counter") != std::string::npos;
  }
  EXPECT_TRUE(modes.files.contains("store/nested/LOCK"));
  EXPECT_TRUE(segment && index && snapshot) << modes.files.size() << " files";
  ASSERT_EQ(modes.directories.size(), 2u);  // store and store/nested, both made by open
  for (const auto& [name, mode] : modes.directories) EXPECT_EQ(mode, directory_mode) << name;
}

TEST(FileModes, OwnerOnlyByDefaultWhateverTheUmaskAllows) {
  const Umask open_umask(0);  // lets everything through: the modes are the engine's own doing
  annal::test::TempDirectory dir;
  const std::string store = dir.path() + "/store/nested";
  fill_store(store, {});
  expect_all(modes_under(dir.path()), 0600, 0700);
}

TEST(FileModes, OptionsWidenThemForTheOwnersGroup) {
  const Umask open_umask(0);
  annal::test::TempDirectory dir;
  Options options;
  options.journal.file_mode = 0640;
  fill_store(dir.path() + "/store/nested", options);
  expect_all(modes_under(dir.path()), 0640, 0750);
}

TEST(FileModes, TheUmaskStillNarrowsAWidenedMode) {
  const Umask narrow(0077);
  annal::test::TempDirectory dir;
  Options options;
  options.journal.file_mode = 0644;
  fill_store(dir.path() + "/store/nested", options);
  expect_all(modes_under(dir.path()), 0600, 0700);
}

TEST(FileModes, AModeLettingOthersWriteOrTheOwnerNotIsRefused) {
  annal::test::TempDirectory dir;
  for (const std::uint32_t mode : {0666u, 0400u, 01600u}) {
    Options options;
    options.journal.file_mode = mode;
    auto opened = Engine::open(dir.path() + "/store", options);
    ASSERT_FALSE(opened.ok()) << std::oct << mode;
    EXPECT_EQ(opened.status().code(), ErrorCode::invalid_argument);
    EXPECT_NE(opened.status().message().find("file_mode"), std::string::npos) << opened.status().to_string();
  }
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/store"));  // nothing made for a refused open
}

// A cipher handed to the journal underneath the engine would neither be sized for (records,
// batches) nor seal snapshots: the engine refuses it, and opens nothing.
class UnusedCipher final : public journal::RecordCipher {
 public:
  std::size_t overhead() const noexcept override { return 16; }
  void seal(const journal::RecordHeader&, std::span<const std::byte>, std::span<const std::byte>,
            std::span<const std::byte>, std::span<std::byte>) override {
    ADD_FAILURE() << "sealed";
  }
  std::unique_ptr<journal::RecordOpener> opener() const override { return nullptr; }
};

TEST(EngineOptions, AJournalCipherIsTheEnginesToSet) {
  annal::test::TempDirectory dir;
  Options options;
  options.journal.cipher = std::make_shared<UnusedCipher>();
  const auto opened = Engine::open(dir.path() + "/store", options);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), ErrorCode::invalid_argument);
  EXPECT_NE(opened.status().message().find("journal.cipher"), std::string::npos) << opened.status().message();
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/store"));
}

TEST(FileModes, AnExistingDirectoryAndItsFilesKeepTheirModes) {
  annal::test::TempDirectory dir;
  const std::string store = dir.path() + "/store";
  {
    const Umask open_umask(0);
    Options wide;
    wide.journal.file_mode = 0644;
    fill_store(store, wide);
  }
  const Modes before = modes_under(store);
  fill_store(store, {});  // reopened with the default: what exists stays readable by its readers
  for (const auto& [name, mode] : before.files) {
    // (Snapshots past those kept are removed, not rewritten.)
    if (std::filesystem::exists(store + "/" + name)) {
      EXPECT_EQ(mode_of(store + "/" + name), mode) << name;
    }
  }
  EXPECT_EQ(mode_of(store + "/LOCK"), 0644u);
  EXPECT_EQ(mode_of(store), 0755u);
}

}  // namespace
}  // namespace annal::engine
