// Encryption at rest through the engine (Options::encryption): nothing of an event, a name or a
// snapshot reaches the disk in clear; a store reopened with its keys reads back what it wrote; a
// store opened without them, with other ones, or with its key file missing or rolled back, is
// refused with the reason and left as it was.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "annal/base/little_endian.h"
#include "annal/crypto/hkdf.h"
#include "annal/engine/engine.h"
#include "annal/journal/chain.h"
#include "event_codec.h"
#include "eventually.h"
#include "file_bytes.h"
#include "master_keys.h"
#include "store_cipher.h"
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
    // Caught up before the close, whose last snapshot then holds every event.
    ASSERT_TRUE(annal::test::eventually(
        [&] { return opened.value()->projection_status("last").value().applied >= last.last_sequence; }));
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

// KEYS is made 0600 whatever mode the store's files are given, and refused when group or others
// may read or write it: whoever could write it could put back an older one (nonces would repeat).
TEST_F(EncryptionTest, AKeyStoreOthersMayReachIsRefused) {
  Options options = encrypted();
  options.journal.file_mode = 0644;
  write_marked(options, 3, "a");
  const std::string keys = dir_.path() + "/KEYS";
  EXPECT_EQ(std::filesystem::status(keys).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  std::filesystem::permissions(keys, std::filesystem::perms::group_read, std::filesystem::perm_options::add);
  const auto before = files();
  const auto refused = Engine::open(dir_.path(), options);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), ErrorCode::invalid_argument) << refused.status().to_string();
  EXPECT_NE(refused.status().message().find("chmod 600"), std::string::npos) << refused.status().to_string();
  EXPECT_EQ(files(), before);
  std::filesystem::permissions(keys, std::filesystem::perms::group_read, std::filesystem::perm_options::remove);
  EXPECT_TRUE(Engine::open(dir_.path(), options).ok());
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

// The engine's state snapshot past the log's end proves that acknowledged events were lost (here:
// every segment and LOCK removed). Sealed, it proves it all the same: its checksums hold, and the
// key is not needed to see that.
TEST_F(EncryptionTest, ASealedStateSnapshotStillWitnessesALoss) {
  for (const bool sealed : {false, true}) {
    SCOPED_TRACE(sealed ? "sealed" : "in clear");
    annal::test::TempDirectory dir;
    const Options options = sealed ? encrypted() : Options{};
    {
      auto opened = Engine::open(dir.path(), options);
      ASSERT_TRUE(opened.ok());
      const std::string payload(kMarker);
      const EventData event{.type = "T", .payload = std::as_bytes(std::span(payload))};
      for (int i = 0; i < 20; ++i) ASSERT_TRUE(opened.value()->append("s", ExpectedVersion::any(), {&event, 1}).ok());
      ASSERT_TRUE(opened.value()->close().ok());  // the state snapshot at the end
    }
    for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
      const std::string name = entry.path().filename().string();
      if (entry.path().extension() == ".log" || entry.path().extension() == ".idx" || name == "LOCK") {
        std::filesystem::remove(entry.path());
      }
    }
    const auto reopened = Engine::open(dir.path(), options);
    ASSERT_FALSE(reopened.ok());
    EXPECT_NE(reopened.status().message().find("snapshot-_engine-"), std::string::npos) << reopened.status().to_string();
  }
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

// Two stores of one service sharing a master key: a snapshot sealed by one does not open in the
// other (each store's snapshot key is salted with a seed of its own).
TEST_F(EncryptionTest, StoresSharingAMasterKeyDoNotOpenEachOthersSnapshots) {
  annal::test::TempDirectory other;
  auto first = StoreCipher::open(dir_.path(), keys_);
  auto second = StoreCipher::open(other.path(), keys_);
  ASSERT_TRUE(first.ok() && second.ok());
  const std::string state = "the same state, the same name and sequence";
  const auto associated = std::as_bytes(std::span(std::string_view("projection last, schema 1, sequence 40")));
  const auto sealer = first.value()->states();
  std::vector<std::byte> sealed(state.size() + sealer->overhead());
  ASSERT_TRUE(sealer->seal(associated, std::as_bytes(std::span(state)), sealed).ok());
  std::vector<std::byte> opened(state.size());
  EXPECT_TRUE(first.value()->states()->open(associated, sealed, opened).ok());
  const Status moved = second.value()->states()->open(associated, sealed, opened);
  EXPECT_EQ(moved.code(), ErrorCode::corruption) << moved.to_string();
}

// A sealed event keeps its flags and back pointer in clear (what an erased stream's reads and
// recovery need), authenticated: one changed, even with everything else intact, fails to open;
// the application's bytes are not in clear.
TEST_F(EncryptionTest, AnEventsClearPartIsAuthenticated) {
  auto store = StoreCipher::open(dir_.path(), keys_);
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE(store.value()->begin_writing(1).ok());
  const auto sealer = store.value()->records();
  const journal::RecordHeader header{.sequence = 7, .stream_id = 3, .stream_version = 2, .timestamp_ns = 99, .type = 16};
  const auto associated = journal::associated_data(header);
  std::array<std::byte, kMetadataBytesMax> metadata{};
  const std::size_t used = encode_metadata({.prev = 5, .event_id = Id128{.hi = 1, .lo = 2}}, metadata);
  const std::string payload(kMarker);
  std::vector<std::byte> sealed(used + payload.size() + sealer->overhead());
  sealer->seal(header, associated, std::span(metadata).first(used), std::as_bytes(std::span(payload)), sealed);
  EXPECT_EQ(std::search(sealed.begin(), sealed.end(), std::as_bytes(std::span(payload)).begin(),
                        std::as_bytes(std::span(payload)).end()),
            sealed.end());
  const auto opener = sealer->opener();
  std::vector<std::byte> plain(used + payload.size());
  ASSERT_TRUE(opener->open(header, associated, sealed, plain).ok());
  EXPECT_TRUE(std::equal(metadata.begin(), metadata.begin() + static_cast<std::ptrdiff_t>(used), plain.begin()));
  EXPECT_EQ(load_le<std::uint64_t>(sealed, 8 + 1), 5u);  // the back pointer, in clear
  sealed[8 + 1] ^= std::byte{1};                          // another back pointer
  EXPECT_EQ(opener->open(header, associated, sealed, plain).code(), ErrorCode::corruption);
}

// Erasing a stream destroys its seed durably: its records then come back as erased with their
// clear part (an opener that had its key cached too), the others still open, and the key store
// read again says so. The store's own streams cannot be erased.
TEST_F(EncryptionTest, AnErasedStreamsRecordsOpenAsErasedOnly) {
  auto store = StoreCipher::open(dir_.path(), keys_);
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE(store.value()->begin_writing(1).ok());
  const auto sealer = store.value()->records();
  const auto opener = sealer->opener();
  std::array<std::byte, kMetadataBytesMax> metadata{};
  const std::size_t used = encode_metadata({.prev = 5}, metadata);
  const std::string payload(kMarker);
  std::map<std::uint64_t, std::vector<std::byte>> sealed;  // by stream
  const auto header_of = [](std::uint64_t stream) {
    return journal::RecordHeader{.sequence = 10 + stream, .stream_id = stream, .type = 16};
  };
  std::vector<std::byte> plain(used + payload.size());
  for (const std::uint64_t stream : {3, 4}) {
    const auto header = header_of(stream);
    sealed[stream].resize(used + payload.size() + sealer->overhead());
    sealer->seal(header, journal::associated_data(header), std::span(metadata).first(used),
                 std::as_bytes(std::span(payload)), sealed[stream]);
    ASSERT_TRUE(opener->open(header, journal::associated_data(header), sealed[stream], plain).ok());  // cached
  }
  EXPECT_EQ(store.value()->erase(kSystemStream).code(), ErrorCode::invalid_argument);
  ASSERT_TRUE(store.value()->erase(3).ok());
  ASSERT_TRUE(store.value()->erase(3).ok());  // again: nothing more to do
  const auto erased_header = header_of(3);
  EXPECT_FALSE(opener->open(erased_header, journal::associated_data(erased_header), sealed[3], plain).ok());
  const auto clear = opener->erased(erased_header, sealed[3], plain);
  ASSERT_EQ(clear, std::optional<std::size_t>(kMetadataBytesMin));
  EXPECT_EQ(load_le<std::uint64_t>(plain, 1), 5u);  // the back pointer survives
  const auto kept = header_of(4);
  EXPECT_TRUE(opener->open(kept, journal::associated_data(kept), sealed[4], plain).ok());
  EXPECT_EQ(opener->erased(kept, sealed[4], plain), std::nullopt);
  auto reopened = StoreCipher::open(dir_.path(), keys_);
  ASSERT_TRUE(reopened.ok());
  EXPECT_TRUE(reopened.value()->erased(3));
  EXPECT_FALSE(reopened.value()->erased(4));
}

// A stream's key is derived outside the store's lock: an erasure that lands meanwhile must leave it
// neither kept nor given. Two threads ask for a new stream's key as it is erased; once the erasure
// returned and they are done, no key of it is kept. (Without the check after the
// derivation, a key derived across the erasure is kept, and handed out after it.)
TEST_F(EncryptionTest, AKeyDerivedWhileItsStreamIsErasedIsNeitherKeptNorGivenAfterwards) {
  auto store = StoreCipher::open(dir_.path(), keys_);
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE(store.value()->begin_writing(1).ok());
  StoreCipher& cipher = *store.value();
  for (std::uint64_t stream = 100; stream < 200; ++stream) {
    // The first derivation is the one that can straddle the erasure (later ones find the key kept,
    // or the seed gone), so all three start together.
    std::atomic<int> ready{0};
    std::vector<std::thread> deriving;
    for (int t = 0; t < 2; ++t) {
      deriving.emplace_back([&] {
        ready.fetch_add(1);
        while (ready.load() < 3) std::this_thread::yield();
        (void)cipher.stream_key(stream, cipher.key_version());
      });
    }
    ready.fetch_add(1);
    while (ready.load() < 3) std::this_thread::yield();
    ASSERT_TRUE(cipher.erase(stream).ok());
    for (std::thread& thread : deriving) thread.join();
    EXPECT_EQ(cipher.stream_key(stream, cipher.key_version()).status().code(), ErrorCode::not_found) << stream;
  }
}

// An encrypted store's chain is tagged under the chain key of its master: the tags check with the
// master's, and a rewritten CHAIN could not be tagged by someone without it.
TEST_F(EncryptionTest, TheJournalsChainIsTaggedUnderTheMasterKey) {
  Options options = encrypted();
  options.event_bytes_max = 2048;
  options.journal.segment_bytes_max = 64u << 10;
  options.journal.commit_bytes_max = 8u << 10;
  write_marked(options, 1500, "a");
  const auto report = journal::verify_chain(dir_.path(), {.keys = crypto::chain_keys(keys_), .expected = std::nullopt});
  ASSERT_TRUE(report.ok()) << report.status().to_string();
  EXPECT_TRUE(report.value().sound()) << report.value().problems.front();
  EXPECT_GE(report.value().entries, 2u);
  EXPECT_EQ(report.value().tags_checked, report.value().entries);
  const auto other = std::make_shared<annal::test::MasterKeys>();
  const auto wrong = journal::verify_chain(dir_.path(), {.keys = crypto::chain_keys(other), .expected = std::nullopt});
  ASSERT_TRUE(wrong.ok());
  ASSERT_FALSE(wrong.value().sound());
  EXPECT_NE(wrong.value().problems.front().find("its tag is wrong"), std::string::npos) << wrong.value().problems.front();
}

}  // namespace
}  // namespace annal::engine
