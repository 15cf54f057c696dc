// What the rekey tests share (rekey_test.cc, rekey_kill_test.cc): a store written under master key
// version 1, then 2, with one stream erased, and what reading it back must give.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "annal/base/little_endian.h"
#include "annal/crypto/hkdf.h"
#include "annal/engine/engine.h"
#include "annal/journal/chain.h"
#include "annal/journal/format.h"
#include "engine_fixture.h"
#include "master_keys.h"

namespace annal::engine::test {


// Some of another provider's versions: the key file once the older versions are retired.
class SomeVersions final : public crypto::KeyProvider {
 public:
  SomeVersions(std::shared_ptr<crypto::KeyProvider> all, std::set<std::uint32_t> kept)
      : all_(std::move(all)), kept_(std::move(kept)) {}
  std::uint32_t current_version() override { return *kept_.rbegin(); }
  Result<crypto::Key> master_key(std::uint32_t version) override {
    if (!kept_.contains(version)) return Status(ErrorCode::not_found, "no master key version " + std::to_string(version));
    return all_->master_key(version);
  }

 private:
  const std::shared_ptr<crypto::KeyProvider> all_;
  const std::set<std::uint32_t> kept_;
};

inline Options rekey_options(std::shared_ptr<crypto::KeyProvider> keys) {
  Options options = small_options();
  options.journal.segment_bytes_max = 16384;  // a few hundred events make several segments
  options.journal.commit_bytes_max = 4096;
  options.event_bytes_max = 512;
  options.encryption = std::move(keys);
  return options;
}

inline const std::vector<std::string> kStreams = {"alpha", "beta", "gone", "delta"};

inline std::string text(const std::string& stream, std::size_t i) { return stream + " event " + std::to_string(i); }

// Appends `count` events to each of `streams`, numbered from `from`.
inline void append_round(Engine& engine, std::size_t from, std::size_t count, const std::vector<std::string>& streams) {
  Receipt last;
  for (std::size_t i = from; i < from + count; ++i) {
    for (const std::string& stream : streams) {
      const auto payload = bytes_of(text(stream, i) + std::string(60, '.'));
      const EventData event{.type = "Noted", .payload = payload};
      const auto receipt = engine.append(stream, ExpectedVersion::any(), {&event, 1});
      ASSERT_TRUE(receipt.ok()) << receipt.status().to_string();
      last = receipt.value();
    }
  }
  ASSERT_TRUE(engine.wait_durable(last, soon()).ok());
}

// 60 events a stream under version 1, "gone" erased, then 30 more a stream under version 2 but
// "gone". Returns gone's id.
inline std::uint64_t write_two_versions(const std::string& directory, annal::test::MasterKeys& keys, Options options,
                                 const std::shared_ptr<journal::IoBackend>& io) {
  std::uint64_t gone = 0;
  {
    auto engine = Engine::open(directory, options, io);
    EXPECT_TRUE(engine.ok()) << engine.status().to_string();
    if (!engine.ok()) return 0;
    append_round(*engine.value(), 0, 60, kStreams);
    gone = engine.value()->find_stream("gone").value_or(0);
    EXPECT_TRUE(engine.value()->erase_stream("gone").ok());
    EXPECT_TRUE(engine.value()->close().ok());  // the engine's state snapshot, under version 1 (after the erasure)
  }
  keys.add(2);
  auto engine = Engine::open(directory, options, io);
  EXPECT_TRUE(engine.ok()) << engine.status().to_string();
  if (!engine.ok()) return 0;
  append_round(*engine.value(), 60, 30, {"alpha", "beta", "delta"});
  EXPECT_TRUE(engine.value()->close().ok());
  return gone;
}

inline std::vector<std::byte> file_of(journal::IoBackend& io, const std::string& path) {
  auto file = io.open(path, journal::OpenMode::read_only);
  if (!file.ok()) return {};
  const auto size = io.size(file.value());
  std::vector<std::byte> bytes(size.ok() ? size.value() : 0);
  const auto read = io.read(file.value(), 0, bytes);
  (void)io.close(file.value());
  bytes.resize(read.ok() ? read.value() : 0);
  return bytes;
}

// Every file of the directory, by name, with its bytes.
inline std::map<std::string, std::vector<std::byte>> files_of(journal::IoBackend& io, const std::string& directory) {
  std::map<std::string, std::vector<std::byte>> files;
  const auto names = io.list(directory);
  EXPECT_TRUE(names.ok()) << names.status().to_string();
  if (!names.ok()) return files;
  for (const std::string& name : names.value()) files[name] = file_of(io, directory + "/" + name);
  return files;
}

// The master key version of each sealed record, read from the bytes: (stream id, version) -> count.
inline std::map<std::pair<std::uint64_t, std::uint32_t>, std::size_t> sealed_versions(journal::IoBackend& io, const std::string& directory) {
  std::map<std::pair<std::uint64_t, std::uint32_t>, std::size_t> counts;
  for (const auto& [name, bytes] : files_of(io, directory)) {
    if (!journal::parse_segment_file_name(name)) continue;
    const auto header = journal::decode_segment_header(bytes, name);
    EXPECT_TRUE(header.ok()) << header.status().to_string();
    if (!header.ok()) continue;
    for (std::size_t at = journal::kSegmentHeaderBytes; at < bytes.size();) {
      const auto record = journal::decode_record(std::span(bytes).subspan(at), header.value().salt);
      if (record.status != journal::RecordStatus::ok) break;
      at += record.padded_bytes;
      if (record.header.type == journal::kTypePadding || (record.header.flags & journal::kFlagSealed) == 0) continue;
      // A stream's name record is sealed under the named stream's key (store_cipher.h).
      const bool names_stream = record.header.stream_id == 0 && record.header.type == 1;
      const std::uint64_t stream = names_stream ? record.header.stream_version : record.header.stream_id;
      ++counts[{stream, load_le<std::uint32_t>(record.payload, 0)}];
    }
  }
  return counts;
}

// Reads every stream with `options`' keys: each event's text, or "erased".
inline std::map<std::string, std::vector<std::string>> read_everything(const std::string& directory, const Options& options,
                                                                const std::shared_ptr<journal::IoBackend>& io,
                                                                std::uint64_t gone) {
  std::map<std::string, std::vector<std::string>> out;
  auto engine = Engine::open(directory, options, io);
  EXPECT_TRUE(engine.ok()) << engine.status().to_string();
  if (!engine.ok()) return out;
  for (const std::string& stream : kStreams) {
    const StreamRef ref = stream == "gone" ? StreamRef::id(gone) : StreamRef(stream);
    const auto events = engine.value()->read_stream(ref, {}, soon());
    EXPECT_TRUE(events.ok()) << stream << ": " << events.status().to_string();
    if (!events.ok()) continue;
    for (const Event& event : events.value()) {
      out[stream].push_back(event.header.erased ? "erased" : text_of(event.payload).substr(0, text(stream, 0).size() + 2));
    }
  }
  const auto snapshots = engine.value()->inspect_snapshots(true);
  EXPECT_TRUE(snapshots.ok()) << snapshots.status().to_string();
  if (snapshots.ok()) {
    for (const auto& snapshot : snapshots.value()) {
      EXPECT_TRUE(snapshot.status.ok() || snapshot.status.code() == ErrorCode::not_found)
          << snapshot.file << ": " << snapshot.status.to_string();
    }
  }
  EXPECT_TRUE(engine.value()->close().ok());
  return out;
}

// What read_everything returns for the store write_two_versions made.
inline std::map<std::string, std::vector<std::string>> expected_events() {
  std::map<std::string, std::vector<std::string>> out;
  for (const std::string& stream : kStreams) {
    for (std::size_t i = 0; i < (stream == "gone" ? 60u : 90u); ++i) {
      const std::string whole = text(stream, i) + "..";
      out[stream].push_back(stream == "gone" ? "erased" : whole.substr(0, text(stream, 0).size() + 2));
    }
  }
  return out;
}

inline Result<journal::ChainReport> chain_under(journal::IoBackend& io, const std::string& directory,
                                         std::shared_ptr<crypto::KeyProvider> keys) {
  return journal::verify_chain(io, directory, journal::ChainCheck{.keys = crypto::chain_keys(std::move(keys)), .expected = {}});
}

// After a rekey has finished: the chain verifies under `newest_only`'s chain key, and no record
// is left under another version but the erased stream's (`gone`). `io` reads the files.
inline void expect_resealed(journal::IoBackend& io, const std::string& directory,
                            const std::shared_ptr<crypto::KeyProvider>& newest_only, std::uint64_t gone) {
  auto chain = chain_under(io, directory, newest_only);
  ASSERT_TRUE(chain.ok()) << chain.status().to_string();
  ASSERT_TRUE(chain.value().sound()) << chain.value().problems.front();
  EXPECT_EQ(chain.value().tags_checked, chain.value().entries);
  for (const auto& [key, count] : sealed_versions(io, directory)) {
    if (key.first != gone) {
      EXPECT_EQ(key.second, newest_only->current_version()) << "stream " << key.first << ": " << count << " records";
    }
  }
}

// The same, and `newest_only` reads every event (`engine_io`: the engine's backend; null: the
// files themselves).
inline void expect_rekeyed(journal::IoBackend& io, const std::string& directory,
                           const std::shared_ptr<journal::IoBackend>& engine_io,
                           const std::shared_ptr<crypto::KeyProvider>& newest_only, std::uint64_t gone) {
  expect_resealed(io, directory, newest_only, gone);
  if (::testing::Test::HasFatalFailure()) return;
  ASSERT_EQ(read_everything(directory, rekey_options(newest_only), engine_io, gone), expected_events());
}

}  // namespace annal::engine::test
