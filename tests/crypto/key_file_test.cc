// KeyFile: one named test per refusal (loose mode, another owner, not a file, bad line, repeated
// version, no key), then the round trips of generate_key_file and add_key_version: through a
// link, as root for another account, and two at once.
#include "annal/crypto/key_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

#include "temp_directory.h"

namespace annal::crypto {
namespace {

constexpr const char* kHex1 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
constexpr const char* kHex2 = "60303AE22B998861BCE3B28F33EEC1BE758A213C86C93C076DBE9F558C11C752";
constexpr uid_t kOtherUid = 12345;  // an account that is neither root nor the test's

class KeyFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Resolved, as add_key_version resolves the paths its messages name.
    char* resolved = ::realpath(temp_.path().c_str(), nullptr);
    ASSERT_NE(resolved, nullptr);
    dir_ = resolved;
    std::free(resolved);
    path_ = dir_ + "/master.keys";
  }

  void write(const std::string& text, mode_t mode = 0600) {
    std::ofstream(path_, std::ios::trunc) << text;
    ASSERT_EQ(::chmod(path_.c_str(), mode), 0);
  }
  std::string read() const {
    std::ostringstream text;
    text << std::ifstream(path_).rdbuf();
    return text.str();
  }
  mode_t mode() const {
    struct stat st {};
    EXPECT_EQ(::stat(path_.c_str(), &st), 0);
    return st.st_mode & 07777;
  }
  Status load_error() {
    Result<std::unique_ptr<KeyFile>> file = KeyFile::load(path_);
    EXPECT_FALSE(file.ok());
    return file.status();
  }
  std::unique_ptr<KeyFile> load() {
    Result<std::unique_ptr<KeyFile>> file = KeyFile::load(path_);
    EXPECT_TRUE(file.ok()) << file.status().to_string();
    return file.ok() ? std::move(file).value() : nullptr;
  }

  annal::test::TempDirectory temp_;
  std::string dir_;  // temp_, resolved
  std::string path_;
};

TEST_F(KeyFileTest, GroupReadableFileIsRefusedWithPathModeAndFix) {
  write(std::string("1 ") + kHex1 + "\n", 0644);
  const Status refused = load_error();
  EXPECT_EQ(refused.code(), ErrorCode::invalid_argument);
  EXPECT_NE(refused.message().find(path_), std::string::npos) << refused.message();
  EXPECT_NE(refused.message().find("0644"), std::string::npos) << refused.message();
  EXPECT_NE(refused.message().find("chmod 600 " + path_), std::string::npos) << refused.message();
}

TEST_F(KeyFileTest, OthersWritableFileIsRefused) {
  write(std::string("1 ") + kHex1 + "\n", 0602);
  EXPECT_NE(load_error().message().find("0602"), std::string::npos);
}

TEST_F(KeyFileTest, OwnerOnlyModesAreAccepted) {
  for (const mode_t mode : {0600, 0400, 0700}) {
    write(std::string("1 ") + kHex1 + "\n", mode);
    EXPECT_NE(load(), nullptr) << std::oct << mode;
  }
}

// The owner of a 0600 file can still replace its keys with ones it knows: only our own file or
// root's is trusted. Run as root, as CI does; elsewhere the file cannot be given away.
TEST_F(KeyFileTest, FileOwnedByAnotherAccountIsRefusedWithOwnerAndFix) {
  if (::geteuid() != 0) GTEST_SKIP() << "chown to another account needs root";
  write(std::string("1 ") + kHex1 + "\n");
  ASSERT_EQ(::chown(path_.c_str(), kOtherUid, kOtherUid), 0);
  const Status refused = load_error();
  EXPECT_EQ(refused.code(), ErrorCode::invalid_argument);
  EXPECT_NE(refused.message().find(path_ + " belongs to uid 12345"), std::string::npos) << refused.message();
  EXPECT_NE(refused.message().find("runs as uid 0"), std::string::npos) << refused.message();
  EXPECT_NE(refused.message().find("chown 0 " + path_), std::string::npos) << refused.message();
}

TEST_F(KeyFileTest, DirectoryIsRefused) {
  ASSERT_EQ(::mkdir(path_.c_str(), 0700), 0);
  EXPECT_NE(load_error().message().find("not a regular file"), std::string::npos);
}

TEST_F(KeyFileTest, MissingFileIsNotFound) { EXPECT_EQ(load_error().code(), ErrorCode::not_found); }

TEST_F(KeyFileTest, CommentsBlanksTabsCarriageReturnsAndEitherCaseAreAccepted) {
  write(std::string("# annal master keys\n\n  # indented comment\n2\t") + kHex2 + "\r\n \n1 " + kHex1);
  const auto file = load();
  ASSERT_NE(file, nullptr);
  EXPECT_EQ(file->current_version(), 2u);  // the highest, not the last
  Result<Key> one = file->master_key(1);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(std::to_integer<int>(one.value().bytes()[0]), 0x9f);
  Result<Key> two = file->master_key(2);
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(std::to_integer<int>(two.value().bytes()[31]), 0x52);
}

TEST_F(KeyFileTest, AbsentVersionIsNotFound) {
  write(std::string("1 ") + kHex1 + "\n");
  const auto file = load();
  ASSERT_NE(file, nullptr);
  Result<Key> absent = file->master_key(7);
  EXPECT_EQ(absent.code(), ErrorCode::not_found);
  EXPECT_NE(absent.status().message().find("version 7"), std::string::npos) << absent.status().message();
}

// Each malformed line is named by its number and what is wrong, and no part of a key is echoed.
TEST_F(KeyFileTest, MalformedLinesAreNamedWithoutEchoingKeyBytes) {
  const std::string good = std::string("1 ") + kHex1 + "\n";
  const std::string hex = kHex1;
  struct Case {
    std::string line;
    const char* says;
  };
  const Case cases[] = {
      {"2 " + hex.substr(0, 63), "has 63 characters"},
      {"2 " + hex + "0", "has 65 characters"},
      {"2 " + hex.substr(0, 40) + "g" + hex.substr(41), "not a hex digit at position 41"},
      {"0 " + hex, "decimal number from 1"},
      {"4294967296 " + hex, "decimal number from 1"},
      {"-2 " + hex, "decimal number from 1"},
      {"two " + hex, "decimal number from 1"},
      {hex, "found one field"},
      {"2 " + hex + " extra", "more than two fields"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.line);
    write("# keys\n" + good + c.line + "\n");
    const Status refused = load_error();
    EXPECT_EQ(refused.code(), ErrorCode::invalid_argument);
    EXPECT_NE(refused.message().find(path_ + " line 3: "), std::string::npos) << refused.message();
    EXPECT_NE(refused.message().find(c.says), std::string::npos) << refused.message();
    for (std::size_t at = 0; at + 8 <= hex.size(); at += 4) {
      EXPECT_EQ(refused.message().find(hex.substr(at, 8)), std::string::npos) << refused.message();
    }
  }
}

TEST_F(KeyFileTest, RepeatedVersionIsRefused) {
  write(std::string("1 ") + kHex1 + "\n# rotated\n1 " + kHex2 + "\n");
  const Status refused = load_error();
  EXPECT_EQ(refused.code(), ErrorCode::invalid_argument);
  EXPECT_NE(refused.message().find("line 3: version 1 appears again (first on line 1)"), std::string::npos)
      << refused.message();
}

TEST_F(KeyFileTest, FileWithoutKeysIsRefused) {
  for (const char* text : {"", "# only a comment\n\n"}) {
    write(text);
    EXPECT_NE(load_error().message().find("holds no key"), std::string::npos) << '"' << text << '"';
  }
}

TEST_F(KeyFileTest, GeneratedFileLoadsWithVersionOneAndMode0600) {
  const mode_t umask_before = ::umask(0);  // a permissive umask must not loosen the file
  const Status generated = generate_key_file(path_);
  ::umask(umask_before);
  ASSERT_TRUE(generated.ok()) << generated.to_string();
  EXPECT_EQ(mode(), 0600u);
  const auto file = load();
  ASSERT_NE(file, nullptr);
  EXPECT_EQ(file->current_version(), 1u);
  EXPECT_TRUE(file->master_key(1).ok());
}

TEST_F(KeyFileTest, GenerateNeverOverwritesAKeyFile) {
  ASSERT_TRUE(generate_key_file(path_).ok());
  const std::string before = read();
  const Status again = generate_key_file(path_);
  EXPECT_EQ(again.code(), ErrorCode::invalid_argument);
  EXPECT_NE(again.message().find("already exists"), std::string::npos) << again.message();
  EXPECT_EQ(read(), before);
}

TEST_F(KeyFileTest, AddKeyVersionMakesTwoCurrentAndKeepsOne) {
  ASSERT_TRUE(generate_key_file(path_).ok());
  Result<Key> one = load()->master_key(1);
  ASSERT_TRUE(one.ok());

  Result<std::uint32_t> added = add_key_version(path_);
  ASSERT_TRUE(added.ok()) << added.status().to_string();
  EXPECT_EQ(added.value(), 2u);
  EXPECT_EQ(mode(), 0600u);
  EXPECT_NE(::access((path_ + ".tmp").c_str(), F_OK), 0);

  const auto file = load();
  ASSERT_NE(file, nullptr);
  EXPECT_EQ(file->current_version(), 2u);
  Result<Key> still_one = file->master_key(1);
  Result<Key> two = file->master_key(2);
  ASSERT_TRUE(still_one.ok() && two.ok());
  EXPECT_TRUE(still_one.value() == one.value());
  EXPECT_FALSE(two.value() == one.value());
}

TEST_F(KeyFileTest, AddKeyVersionKeepsCommentsAndEndsAnUnterminatedLine) {
  const std::string before = std::string("# production\n5 ") + kHex1;  // no final newline
  write(before);
  Result<std::uint32_t> added = add_key_version(path_);
  ASSERT_TRUE(added.ok()) << added.status().to_string();
  EXPECT_EQ(added.value(), 6u);
  const std::string after = read();
  EXPECT_EQ(after.substr(0, before.size() + 1), before + "\n");
  EXPECT_EQ(after.substr(before.size() + 1, 2), "6 ");
  EXPECT_EQ(after.size(), before.size() + 1 + 2 + 64 + 1);
}

TEST_F(KeyFileTest, AddKeyVersionRefusesALooseFile) {
  write(std::string("1 ") + kHex1 + "\n", 0640);
  const std::string before = read();
  EXPECT_NE(add_key_version(path_).status().message().find("chmod 600"), std::string::npos);
  EXPECT_EQ(read(), before);
}

// Root rotating a service account's key file must leave it the account's: a file of root's, mode
// 0600, would lock the service out of its own keys.
TEST_F(KeyFileTest, AddKeyVersionAsRootKeepsTheFilesOwner) {
  if (::geteuid() != 0) GTEST_SKIP() << "chown to another account needs root";
  ASSERT_TRUE(generate_key_file(path_).ok());
  ASSERT_EQ(::chown(path_.c_str(), kOtherUid, kOtherUid), 0);
  Result<std::uint32_t> added = add_key_version(path_);
  ASSERT_TRUE(added.ok()) << added.status().to_string();
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, kOtherUid);
  EXPECT_EQ(st.st_gid, kOtherUid);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

// load() follows a link, so rotation must too: renaming over the link would turn it into a
// regular file and leave the file it points to (the one other links or mounts share) without
// the new version.
TEST_F(KeyFileTest, AddKeyVersionThroughASymlinkRotatesItsTarget) {
  const std::string target = dir_ + "/real.keys";
  ASSERT_TRUE(generate_key_file(target).ok());
  ASSERT_EQ(::symlink("real.keys", path_.c_str()), 0);  // relative, as ln -s makes them
  Result<std::uint32_t> added = add_key_version(path_);
  ASSERT_TRUE(added.ok()) << added.status().to_string();
  EXPECT_EQ(added.value(), 2u);

  struct stat st {};
  ASSERT_EQ(::lstat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode)) << "the link was replaced";
  const Result<std::unique_ptr<KeyFile>> through_target = KeyFile::load(target);
  ASSERT_TRUE(through_target.ok()) << through_target.status().to_string();
  EXPECT_EQ(through_target.value()->current_version(), 2u);
  EXPECT_NE(::access((target + ".tmp").c_str(), F_OK), 0);
  EXPECT_NE(::access((path_ + ".tmp").c_str(), F_OK), 0);
}

// Two rotations at once: without a lock both read version N and one N + 1 is written over the
// other (or one finds the other's PATH.tmp). Each round starts both together.
TEST_F(KeyFileTest, ConcurrentRotationsEachAddAVersion) {
  ASSERT_TRUE(generate_key_file(path_).ok());
  constexpr std::uint32_t kRounds = 10;
  for (std::uint32_t round = 0; round < kRounds; ++round) {
    std::atomic<int> ready{0};
    std::optional<Result<std::uint32_t>> added[2];
    const auto rotate = [&](int i) {
      ready.fetch_add(1, std::memory_order_relaxed);
      while (ready.load(std::memory_order_relaxed) < 2) {
      }
      added[i] = add_key_version(path_);
    };
    std::thread first(rotate, 0), second(rotate, 1);
    first.join();
    second.join();
    ASSERT_TRUE(added[0]->ok()) << added[0]->status().to_string();
    ASSERT_TRUE(added[1]->ok()) << added[1]->status().to_string();
    EXPECT_EQ(std::min(added[0]->value(), added[1]->value()), 2 * round + 2) << "round " << round;
    EXPECT_EQ(std::max(added[0]->value(), added[1]->value()), 2 * round + 3) << "round " << round;
  }
  const auto file = load();
  ASSERT_NE(file, nullptr);
  EXPECT_EQ(file->current_version(), 2 * kRounds + 1);
  for (std::uint32_t version = 1; version <= 2 * kRounds + 1; ++version) EXPECT_TRUE(file->master_key(version).ok()) << version;
}

TEST_F(KeyFileTest, AddKeyVersionRefusesWhileATemporaryFileExists) {
  ASSERT_TRUE(generate_key_file(path_).ok());
  std::ofstream(path_ + ".tmp") << "left by a crash";
  const Status refused = add_key_version(path_).status();
  EXPECT_EQ(refused.code(), ErrorCode::invalid_argument);
  EXPECT_NE(refused.message().find("remove " + path_ + ".tmp"), std::string::npos) << refused.message();
  EXPECT_EQ(load()->current_version(), 1u);
}

}  // namespace
}  // namespace annal::crypto
