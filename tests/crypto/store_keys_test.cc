// The store's key file (KEYS): what is saved loads back under the same master key; another key,
// a changed byte, or a version the provider lacks each fail saying which; a rotation seals it
// under the new version; the file is its owner's alone and replaced atomically.
#include "annal/crypto/store_keys.h"
#include "annal/crypto/key_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>

#include "large_seed_tree.h"
#include "master_keys.h"
#include "temp_directory.h"

namespace annal::crypto {
namespace {

StoreKeys some_state() {
  StoreKeys state{.opens = 7, .sealed_from = 1234, .seeds = SeedTree::create().value()};
  state.seeds.puncture(42);
  return state;
}

std::string seed_of(const StoreKeys& state, std::uint64_t id) {
  const auto seed = state.seeds.seed(id);
  return seed.ok() ? std::string(reinterpret_cast<const char*>(seed.value().bytes().data()), kKeyBytes) : "gone";
}

void flip_byte(const std::string& path, std::size_t at) {
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  file.seekg(static_cast<std::streamoff>(at));
  char byte = 0;
  file.get(byte);
  file.seekp(static_cast<std::streamoff>(at));
  file.put(static_cast<char>(byte ^ 0x01));
}

TEST(StoreKeys, WhatIsSavedLoadsBackUnderTheSameMasterKey) {
  annal::test::TempDirectory dir;
  const std::string path = dir.path() + "/KEYS";
  annal::test::MasterKeys keys;
  const StoreKeys state = some_state();
  ASSERT_TRUE(save_store_keys(path, state, keys).ok());
  const auto loaded = load_store_keys(path, keys);
  ASSERT_TRUE(loaded.ok() && loaded.value()) << loaded.status().to_string();
  EXPECT_EQ(loaded.value()->opens, 7u);
  EXPECT_EQ(loaded.value()->sealed_from, 1234u);
  EXPECT_TRUE(loaded.value()->seeds.punctured(42));
  for (const std::uint64_t id : {0u, 41u, 43u, 99999u}) EXPECT_EQ(seed_of(*loaded.value(), id), seed_of(state, id)) << id;
  struct stat info {};
  ASSERT_EQ(::stat(path.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST(StoreKeys, NoFileIsToldApartFromAMissingMasterKey) {
  annal::test::TempDirectory dir;
  annal::test::MasterKeys keys;
  const auto none = load_store_keys(dir.path() + "/KEYS", keys);
  ASSERT_TRUE(none.ok()) << none.status().to_string();
  EXPECT_FALSE(none.value());  // no file: the one case where a new key store may be made
  ASSERT_TRUE(save_store_keys(dir.path() + "/KEYS", some_state(), keys).ok());
  annal::test::MasterKeys lacking;
  lacking.add(2);
  lacking.drop(1);
  const auto missing = load_store_keys(dir.path() + "/KEYS", lacking);
  ASSERT_FALSE(missing.ok());  // an error, never "no key store", which would make a new one
  EXPECT_EQ(missing.status().code(), ErrorCode::not_found);
}

TEST(StoreKeys, AnotherMasterKeyOrAChangedByteFailsNamingTheFileAndVersion) {
  annal::test::TempDirectory dir;
  const std::string path = dir.path() + "/KEYS";
  annal::test::MasterKeys keys;
  ASSERT_TRUE(save_store_keys(path, some_state(), keys).ok());
  annal::test::MasterKeys other;
  const auto wrong = load_store_keys(path, other);
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), ErrorCode::corruption);
  EXPECT_NE(wrong.status().message().find(path + ": does not open under master key version 1"), std::string::npos)
      << wrong.status().message();
  const auto size = std::filesystem::file_size(path);
  for (const std::size_t at : {std::size_t{8}, std::size_t{20}, std::size_t{40}, static_cast<std::size_t>(size - 1)}) {
    flip_byte(path, at);
    const auto altered = load_store_keys(path, keys);
    EXPECT_FALSE(altered.ok()) << "byte " << at;
    flip_byte(path, at);
  }
  EXPECT_TRUE(load_store_keys(path, keys).ok());  // the flips were undone: nothing else changed
}

TEST(StoreKeys, TheMasterVersionItNamesIsAuthenticated) {
  annal::test::TempDirectory dir;
  const std::string path = dir.path() + "/KEYS";
  annal::test::MasterKeys keys;
  keys.add(3);  // current
  ASSERT_TRUE(save_store_keys(path, some_state(), keys).ok());
  // Relabelled as sealed under version 1, which the provider has: the key derived from it does
  // not open the file, and the version is in the additional data too.
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  file.seekp(12);
  file.put(static_cast<char>(1));  // version 1: present, but the file was sealed under 3
  file.close();
  const auto relabelled = load_store_keys(path, keys);
  ASSERT_FALSE(relabelled.ok());
  EXPECT_EQ(relabelled.status().code(), ErrorCode::corruption) << relabelled.status().to_string();
}

// A key store past a key file's 1 MiB (the tree of tens of thousands of erasures) is saved and read
// back whole.
TEST(StoreKeys, ATreeOfManyErasuresLoadsBack) {
  annal::test::TempDirectory dir;
  const std::string path = dir.path() + "/KEYS";
  annal::test::MasterKeys keys;
  const StoreKeys state{.opens = 3, .sealed_from = 9, .seeds = annal::test::large_seed_tree(200'000)};
  ASSERT_TRUE(save_store_keys(path, state, keys).ok());
  EXPECT_GT(std::filesystem::file_size(path), 4 * kKeyFileBytesMax);
  const auto loaded = load_store_keys(path, keys);
  ASSERT_TRUE(loaded.ok() && loaded.value()) << loaded.status().to_string();
  EXPECT_EQ(loaded.value()->seeds.nodes(), state.seeds.nodes());
  const std::uint64_t leaves = std::uint64_t{1} << 62;
  for (const std::uint64_t id : {std::uint64_t{5}, leaves, leaves + 1, leaves + 399'998, std::uint64_t{1} << 63}) {
    EXPECT_EQ(seed_of(*loaded.value(), id), seed_of(state, id)) << id;
  }
}

TEST(StoreKeys, ATreeTooLargeToReadBackIsRefusedBeforeAnythingIsWritten) {
  annal::test::TempDirectory dir;
  const std::string path = dir.path() + "/KEYS";
  annal::test::MasterKeys keys;
  StoreKeys state = some_state();
  ASSERT_TRUE(save_store_keys(path, state, keys).ok());
  const auto before = std::filesystem::file_size(path);
  state.seeds = annal::test::large_seed_tree(kStoreKeysBytesMax / 41);
  const Status refused = save_store_keys(path, state, keys);
  EXPECT_EQ(refused.code(), ErrorCode::invalid_argument) << refused.to_string();
  EXPECT_NE(refused.message().find("a key store may hold"), std::string::npos) << refused.to_string();
  EXPECT_EQ(std::filesystem::file_size(path), before);  // the old file, untouched
  EXPECT_TRUE(load_store_keys(path, keys).ok());
}

TEST(StoreKeys, ARotationSealsItUnderTheNewVersionAndOnlyThatOneIsNeeded) {
  annal::test::TempDirectory dir;
  const std::string path = dir.path() + "/KEYS";
  annal::test::MasterKeys keys;
  ASSERT_TRUE(save_store_keys(path, some_state(), keys).ok());
  keys.add(2);
  auto state = load_store_keys(path, keys);  // still sealed under 1
  ASSERT_TRUE(state.ok() && state.value());
  ASSERT_TRUE(save_store_keys(path, *state.value(), keys).ok());  // now under 2
  keys.drop(1);
  EXPECT_TRUE(load_store_keys(path, keys).ok());
  keys.add(3);
  keys.drop(2);
  const auto lacking = load_store_keys(path, keys);
  ASSERT_FALSE(lacking.ok());
  EXPECT_EQ(lacking.status().code(), ErrorCode::not_found);
  EXPECT_NE(lacking.status().message().find("sealed under master key version 2"), std::string::npos)
      << lacking.status().message();
}

TEST(StoreKeys, ALeftoverTemporaryFileFromACrashIsReplaced) {
  annal::test::TempDirectory dir;
  const std::string path = dir.path() + "/KEYS";
  std::ofstream(path + ".tmp") << "half-written";
  ::chmod((path + ".tmp").c_str(), 0600);
  annal::test::MasterKeys keys;
  ASSERT_TRUE(save_store_keys(path, some_state(), keys).ok());
  EXPECT_TRUE(load_store_keys(path, keys).ok());
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

}  // namespace
}  // namespace annal::crypto
