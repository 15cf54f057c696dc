// Encryption at rest through the engine (Options::encryption): nothing of an event, a name or a
// snapshot reaches the disk in clear; a store reopened with its keys reads back what it wrote; a
// store opened without them, with other ones, or with its key file missing or rolled back, is
// refused with the reason and left as it was.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "annal/engine/engine.h"
#include "file_bytes.h"
#include "master_keys.h"
#include "temp_directory.h"

namespace annal::engine {
namespace {

constexpr std::string_view kMarker = "PLAINTEXT-MARKER-7Q2";

// Keeps the last payload it saw, as its whole state: a snapshot in clear would hold the marker.
struct LastPayload final : Projection {
  std::string last;
  void apply(const EventView& event) override {
    last.assign(reinterpret_cast<const char*>(event.payload.data()), event.payload.size());
  }
  std::uint32_t schema() const override { return 1; }
  std::vector<std::byte> snapshot() const override {
    const auto bytes = std::as_bytes(std::span(last));
    return {bytes.begin(), bytes.end()};
  }
  Status restore(std::span<const std::byte> state) override {
    last.assign(reinterpret_cast<const char*>(state.data()), state.size());
    return {};
  }
};

class EncryptionTest : public ::testing::Test {
 protected:
  Options encrypted() const {
    Options options;
    options.encryption = keys_;
    return options;
  }

  // Appends `count` events carrying the marker, to a stream and of a type whose names carry it
  // too, with a projection that snapshots the last payload; then closes (the engine's state
  // snapshot is written at close).
  void write_marked(const Options& options, int count, const std::string& tag) {
    auto opened = Engine::open(dir_.path(), options);
    ASSERT_TRUE(opened.ok()) << opened.status().to_string();
    auto projection = std::make_shared<LastPayload>();
    ASSERT_TRUE(opened.value()->add_projection("last", projection, {.snapshot_every_events = 5}).ok());
    Receipt last;
    const std::string type = std::string(kMarker) + "-type";
    for (int i = 0; i < count; ++i) {
      const std::string payload = std::string(kMarker) + "-payload-" + tag + "-" + std::to_string(i);
      const EventData event{.type = type, .payload = std::as_bytes(std::span(payload))};
      auto appended = opened.value()->append(std::string(kMarker) + "-stream-" + tag, ExpectedVersion::any(), {&event, 1});
      ASSERT_TRUE(appended.ok()) << appended.status().to_string();
      last = appended.value();
    }
    ASSERT_TRUE(opened.value()->wait_durable(last, Engine::Clock::now() + std::chrono::minutes(1)).ok());
    ASSERT_TRUE(opened.value()->close().ok());
  }

  // Every file of the store, by name, with its bytes.
  std::map<std::string, std::vector<std::byte>> files() const { return annal::test::files_with_bytes(dir_.path()); }

  annal::test::TempDirectory dir_;
  std::shared_ptr<annal::test::MasterKeys> keys_ = std::make_shared<annal::test::MasterKeys>();
};

TEST_F(EncryptionTest, NoPlaintextReachesTheDisk) {
  write_marked(encrypted(), 40, "a");
  EXPECT_TRUE(std::filesystem::exists(dir_.path() + "/KEYS"));
  EXPECT_FALSE(annal::test::any_file_contains(dir_.path(), kMarker));
  // The search finds the marker where it is in clear: the same writes without encryption.
  annal::test::TempDirectory plain;
  {
    auto opened = Engine::open(plain.path(), {});
    ASSERT_TRUE(opened.ok());
    const std::string payload(kMarker);
    const EventData event{.type = "T", .payload = std::as_bytes(std::span(payload))};
    ASSERT_TRUE(opened.value()->append("s", ExpectedVersion::any(), {&event, 1}).ok());
    ASSERT_TRUE(opened.value()->close().ok());
  }
  EXPECT_TRUE(annal::test::any_file_contains(plain.path(), kMarker));
}

TEST_F(EncryptionTest, ReopenedWithItsKeysItReadsBackWhatItWrote) {
  write_marked(encrypted(), 12, "a");
  write_marked(encrypted(), 12, "b");  // a second open: its own open number, the same stream keys
  auto opened = Engine::open(dir_.path(), encrypted());
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  for (const char* tag : {"a", "b"}) {
    auto events = opened.value()->read_stream(std::string(kMarker) + "-stream-" + tag, {});
    ASSERT_TRUE(events.ok()) << events.status().to_string();
    ASSERT_EQ(events.value().size(), 12u);
    for (std::size_t i = 0; i < events.value().size(); ++i) {
      const Event& event = events.value()[i];
      EXPECT_EQ(std::string(reinterpret_cast<const char*>(event.payload.data()), event.payload.size()),
                std::string(kMarker) + "-payload-" + tag + "-" + std::to_string(i));
      EXPECT_EQ(event.header.type, std::string(kMarker) + "-type");
    }
  }
  // The projection resumes from its sealed snapshot.
  auto projection = std::make_shared<LastPayload>();
  ASSERT_TRUE(opened.value()->add_projection("last", projection, {}).ok());
  EXPECT_GT(opened.value()->projection_status("last").value().restored_from, 0u);
  ASSERT_TRUE(opened.value()->close().ok());
  auto read_only = Engine::open_read_only(dir_.path(), encrypted());
  ASSERT_TRUE(read_only.ok()) << read_only.status().to_string();
  EXPECT_EQ(read_only.value()->read_stream(std::string(kMarker) + "-stream-b", {}).value().size(), 12u);
}

TEST_F(EncryptionTest, WithoutItsKeysOrWithOthersItIsRefusedAndLeftAsItWas) {
  write_marked(encrypted(), 10, "a");
  const auto before = files();
  const auto plain = Engine::open(dir_.path(), {});
  ASSERT_FALSE(plain.ok());
  EXPECT_NE(plain.status().message().find("is encrypted"), std::string::npos) << plain.status().to_string();
  Options others;
  others.encryption = std::make_shared<annal::test::MasterKeys>();
  const auto wrong = Engine::open(dir_.path(), others);
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), ErrorCode::corruption) << wrong.status().to_string();
  EXPECT_NE(wrong.status().message().find("KEYS"), std::string::npos) << wrong.status().to_string();
  EXPECT_EQ(files(), before);
  // The key file lost: the sealed records cannot be opened, and no new key file is made.
  const auto keys_file = annal::test::read_file_bytes(dir_.path() + "/KEYS");
  std::filesystem::remove(dir_.path() + "/KEYS");
  const auto lost = Engine::open(dir_.path(), encrypted());
  ASSERT_FALSE(lost.ok());
  EXPECT_NE(lost.status().message().find("no key file"), std::string::npos) << lost.status().to_string();
  EXPECT_FALSE(std::filesystem::exists(dir_.path() + "/KEYS"));
  annal::test::write_file_bytes(dir_.path() + "/KEYS", keys_file);
  std::filesystem::permissions(dir_.path() + "/KEYS", std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  const auto after = files();
  for (const auto& [name, bytes] : before) EXPECT_TRUE(after.contains(name) && after.at(name) == bytes) << name;
  EXPECT_EQ(after.size(), before.size());
  EXPECT_TRUE(Engine::open(dir_.path(), encrypted()).ok());
}

// A key file put back from before the journal's last writes would give the next open a number an
// earlier one used, and so repeat nonces: refused.
TEST_F(EncryptionTest, AKeyFileOlderThanTheJournalIsRefused) {
  write_marked(encrypted(), 5, "a");
  const auto old_keys = annal::test::read_file_bytes(dir_.path() + "/KEYS");
  write_marked(encrypted(), 5, "b");
  annal::test::write_file_bytes(dir_.path() + "/KEYS", old_keys);
  const auto refused = Engine::open(dir_.path(), encrypted());
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("older than the journal"), std::string::npos) << refused.status().to_string();
}

// A store written in clear, then opened with keys: what it had stays readable in clear, what comes
// after is sealed.
TEST_F(EncryptionTest, AStoreInClearSealsWhatComesAfter) {
  write_marked({}, 5, "clear");
  EXPECT_TRUE(annal::test::any_file_contains(dir_.path(), "payload-clear"));
  write_marked(encrypted(), 5, "sealed");
  EXPECT_FALSE(annal::test::any_file_contains(dir_.path(), "payload-sealed"));
  auto opened = Engine::open(dir_.path(), encrypted());
  ASSERT_TRUE(opened.ok()) << opened.status().to_string();
  EXPECT_EQ(opened.value()->read_stream(std::string(kMarker) + "-stream-clear", {}).value().size(), 5u);
  EXPECT_EQ(opened.value()->read_stream(std::string(kMarker) + "-stream-sealed", {}).value().size(), 5u);
  ASSERT_TRUE(opened.value()->close().ok());
}

}  // namespace
}  // namespace annal::engine
