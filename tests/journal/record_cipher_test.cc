// Encryption at rest at the journal's level (record_cipher.h): records appended through a cipher
// are stored sealed and read back plain; nothing of a payload is left on disk in clear; a reader
// without the key, or with another key, fails naming the record; a record altered or moved fails
// to open even when its checksum is redone; plain and sealed records live in one journal.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "annal/base/little_endian.h"
#include "annal/crypto/aead.h"
#include "annal/crypto/key.h"
#include "annal/journal/crc32c.h"
#include "annal/journal/journal.h"
#include "annal/journal/reader.h"
#include "file_bytes.h"
#include "journal_fixture.h"
#include "test_cipher.h"

namespace annal::journal {
namespace {

using test::soon;
using test::TempDirectory;

std::shared_ptr<RecordCipher> cipher_with(const crypto::Key& key, std::uint64_t sealed_from = 1) {
  return std::make_shared<TestCipher>(key.clone(), sealed_from);
}

constexpr std::string_view kMarker = "MARKER-4f1c-PLAINTEXT";

std::vector<std::byte> marked_payload(int i) {
  const std::string text = std::string(kMarker) + " record " + std::to_string(i);
  std::vector<std::byte> out(text.size());
  std::memcpy(out.data(), text.data(), text.size());
  return out;
}

Options options_with(std::shared_ptr<RecordCipher> cipher) {
  Options options;
  options.io = IoKind::posix;
  options.cipher = std::move(cipher);
  // Small segments: the tests read whole files, and a loaded machine zero-fills slowly.
  options.commit_bytes_max = 64u << 10;
  options.record_bytes_max = 64u << 10;
  options.segment_bytes_max = 256u << 10;
  return options;
}

std::unique_ptr<Journal> open_journal(const std::string& directory, const Options& options) {
  auto opened = Journal::open(directory, options);
  EXPECT_TRUE(opened.ok()) << opened.status().to_string();
  return opened.ok() ? std::move(opened).value() : nullptr;
}

// Appends `count` marked records, one per append, stream = i + 1, and waits until durable.
void append_marked(Journal& journal, int first, int count) {
  Receipt last;
  for (int i = first; i < first + count; ++i) {
    const auto payload = marked_payload(i);
    const RecordInput input{.stream_id = static_cast<std::uint64_t>(i + 1), .payload = payload};
    auto appended = journal.append({&input, 1});
    ASSERT_TRUE(appended.ok()) << appended.status().to_string();
    last = appended.value();
  }
  ASSERT_TRUE(journal.wait_durable(last.last, soon()).ok());
}

// Every record from 1, or the first error.
Result<std::vector<Record>> read_all(Journal& journal) { return journal.read(1, 1'000'000); }

TEST(RecordCipher, SealedRecordsReadBackPlainAndLeaveNoPlaintextOnDisk) {
  const auto key = crypto::Key::random().value();
  TempDirectory sealed_dir;
  TempDirectory plain_dir;
  for (const bool sealed : {true, false}) {
    const std::string dir = sealed ? sealed_dir.path() : plain_dir.path();
    const auto journal = open_journal(dir, options_with(sealed ? cipher_with(key) : nullptr));
    ASSERT_NE(journal, nullptr);
    append_marked(*journal, 0, 50);
    const auto records = read_all(*journal);
    ASSERT_TRUE(records.ok()) << records.status().to_string();
    ASSERT_EQ(records.value().size(), 50u);
    for (int i = 0; i < 50; ++i) {
      const Record& record = records.value()[static_cast<std::size_t>(i)];
      EXPECT_EQ(record.payload, marked_payload(i)) << i;
      EXPECT_EQ((record.header.flags & kFlagSealed) != 0, sealed) << i;
    }
    ASSERT_TRUE(journal->close().ok());
  }
  EXPECT_FALSE(annal::test::any_file_contains(sealed_dir.path(), kMarker));
  EXPECT_TRUE(annal::test::any_file_contains(plain_dir.path(), kMarker));  // the search does find it when it is there
}

// A record whose key the opener says was destroyed on purpose (an erased stream) is returned,
// flagged erased, with only the part the cipher leaves in clear; the others read as before.
TEST(RecordCipher, ARecordOfAnErasedKeyIsReturnedFlaggedWithItsClearPartOnly) {
  const auto key = crypto::Key::random().value();
  TempDirectory dir;
  {
    const auto journal = open_journal(dir.path(), options_with(cipher_with(key)));
    ASSERT_NE(journal, nullptr);
    append_marked(*journal, 0, 10);  // streams 1 to 10
    ASSERT_TRUE(journal->close().ok());
  }
  constexpr std::uint64_t kErased = 4;
  const auto journal = open_journal(dir.path(), options_with(std::make_shared<TestCipher>(key.clone(), 1, kErased)));
  ASSERT_NE(journal, nullptr);
  const auto records = read_all(*journal);
  ASSERT_TRUE(records.ok()) << records.status().to_string();
  ASSERT_EQ(records.value().size(), 10u);
  for (int i = 0; i < 10; ++i) {
    const Record& record = records.value()[static_cast<std::size_t>(i)];
    const bool erased = record.header.stream_id == kErased;
    EXPECT_EQ(record.erased, erased) << i;
    EXPECT_EQ(record.payload.size(), erased ? kSaltBytes : marked_payload(i).size()) << i;
    if (!erased) {
      EXPECT_EQ(record.payload, marked_payload(i)) << i;
    }
  }
}

TEST(RecordCipher, ReopenedWithTheKeyEverythingReadsAndWithoutItOpenWorksButReadsSaySo) {
  const auto key = crypto::Key::random().value();
  TempDirectory dir;
  {
    const auto journal = open_journal(dir.path(), options_with(cipher_with(key)));
    ASSERT_NE(journal, nullptr);
    append_marked(*journal, 0, 10);
    ASSERT_TRUE(journal->close().ok());
  }
  {
    const auto journal = open_journal(dir.path(), options_with(cipher_with(key)));
    ASSERT_NE(journal, nullptr);
    const auto records = read_all(*journal);
    ASSERT_TRUE(records.ok()) << records.status().to_string();
    EXPECT_EQ(records.value().size(), 10u);
    ASSERT_TRUE(journal->close().ok());
  }
  // Recovery needs no key: the journal opens, and says what it cannot do at the first read.
  const auto journal = open_journal(dir.path(), options_with(nullptr));
  ASSERT_NE(journal, nullptr);
  EXPECT_EQ(journal->durable_sequence(), 10u);
  const auto records = read_all(*journal);
  ASSERT_FALSE(records.ok());
  EXPECT_EQ(records.status().code(), ErrorCode::invalid_argument);
  const std::string message = records.status().message();
  EXPECT_NE(message.find("encrypted"), std::string::npos) << message;
  EXPECT_NE(message.find("00000000000000000001.log offset 4096 sequence 1"), std::string::npos) << message;
}

TEST(RecordCipher, AnotherKeyFailsNamingFileOffsetAndSequence) {
  TempDirectory dir;
  {
    const auto journal = open_journal(dir.path(), options_with(cipher_with(crypto::Key::random().value())));
    ASSERT_NE(journal, nullptr);
    append_marked(*journal, 0, 3);
    ASSERT_TRUE(journal->close().ok());
  }
  const auto journal = open_journal(dir.path(), options_with(cipher_with(crypto::Key::random().value())));
  ASSERT_NE(journal, nullptr);
  const auto records = read_all(*journal);
  ASSERT_FALSE(records.ok());
  EXPECT_EQ(records.status().code(), ErrorCode::corruption);
  const std::string message = records.status().message();
  EXPECT_NE(message.find("offset 4096 sequence 1: cannot open the sealed record"), std::string::npos) << message;
}

// The segment's bytes, to alter by hand, and the record offsets in it (all records the same size).
struct Segment {
  std::filesystem::path path;
  std::vector<std::byte> bytes;
  std::uint32_t salt = 0;

  static Segment load(const std::string& directory) {
    Segment segment;
    segment.path = std::filesystem::path(directory) / segment_file_name(1);
    segment.bytes = annal::test::read_file_bytes(segment.path);
    segment.salt = load_le<std::uint32_t>(segment.bytes, 12);
    return segment;
  }
  [[nodiscard]] std::span<std::byte> record(std::size_t index, std::size_t padded) {
    return std::span<std::byte>(bytes).subspan(kSegmentHeaderBytes + index * padded, padded);
  }
  // Redoes a record's checksum, as an attacker who knows the format would.
  void rechecksum(std::span<std::byte> record) const {
    const std::size_t size = load_le<std::uint32_t>(record, 4);
    store_le<std::uint32_t>(record, 0, crc32c_extend(salt, record.subspan(4, size - 4)));
  }
  void save() const { annal::test::write_file_bytes(path, bytes); }
};

TEST(RecordCipher, AnAlteredOrMovedRecordFailsToOpenEvenWithItsChecksumRedone) {
  const auto key = crypto::Key::random().value();
  const std::size_t payload = marked_payload(0).size();  // records 0..9 have equal lengths
  const std::size_t padded = padded_record_bytes(payload + kSaltBytes + crypto::kTagBytes);
  const auto tamper_with = [&](const std::string& what, const auto& edit) {
    TempDirectory dir;
    {
      const auto journal = open_journal(dir.path(), options_with(cipher_with(key)));
      ASSERT_NE(journal, nullptr);
      append_marked(*journal, 0, 3);
      ASSERT_TRUE(journal->close().ok());
    }
    Segment segment = Segment::load(dir.path());
    edit(segment);
    segment.save();
    const auto journal = open_journal(dir.path(), options_with(cipher_with(key)));
    ASSERT_NE(journal, nullptr) << what;  // every checksum holds: recovery sees nothing wrong
    const auto records = read_all(*journal);
    ASSERT_FALSE(records.ok()) << what;
    EXPECT_EQ(records.status().code(), ErrorCode::corruption) << what;
    EXPECT_NE(records.status().message().find("sequence 2: cannot open the sealed record"), std::string::npos)
        << what << ": " << records.status().message();
  };
  tamper_with("a bit of the ciphertext flipped", [&](Segment& segment) {
    const auto record = segment.record(1, padded);
    record[kRecordHeaderBytes + kSaltBytes + 3] ^= std::byte{0x10};
    segment.rechecksum(record);
  });
  tamper_with("moved to another stream", [&](Segment& segment) {
    const auto record = segment.record(1, padded);
    store_le<std::uint64_t>(record, 16, 99);
    segment.rechecksum(record);
  });
  tamper_with("retyped", [&](Segment& segment) {
    const auto record = segment.record(1, padded);
    store_le<std::uint16_t>(record, 40, 7);
    segment.rechecksum(record);
  });
  tamper_with("given another stream version", [&](Segment& segment) {
    const auto record = segment.record(1, padded);
    store_le<std::uint64_t>(record, 24, 5);
    segment.rechecksum(record);
  });
  tamper_with("restamped", [&](Segment& segment) {
    const auto record = segment.record(1, padded);
    store_le<std::uint64_t>(record, 32, load_le<std::uint64_t>(record, 32) + 1);
    segment.rechecksum(record);
  });
  tamper_with("made the end of its batch", [&](Segment& segment) {
    const auto record = segment.record(1, padded);
    store_le<std::uint16_t>(record, 42, static_cast<std::uint16_t>(load_le<std::uint16_t>(record, 42) ^ kFlagBatchEnd));
    segment.rechecksum(record);
  });
  tamper_with("record 3's sealed payload put in record 2's place", [&](Segment& segment) {
    const auto second = segment.record(1, padded);
    const auto third = segment.record(2, padded);
    std::copy(third.begin() + kRecordHeaderBytes, third.end(), second.begin() + kRecordHeaderBytes);
    segment.rechecksum(second);
  });
}

TEST(RecordCipher, TheAssociatedDataIsTheRecordsHeaderFieldsAsStored) {
  const RecordHeader header{.sequence = 0x0102030405060708, .stream_id = 0x1112131415161718,
                            .stream_version = 0x2122232425262728, .timestamp_ns = 0x3132333435363738,
                            .type = 0x4142, .flags = kFlagSealed | kFlagBatchEnd, .commit_lag = 0x51525354};
  std::vector<std::byte> record(padded_record_bytes(8));
  encode_record(header, std::vector<std::byte>(8, std::byte{0}), 0x5A17, record);
  const auto associated = associated_data(header);
  EXPECT_TRUE(std::equal(associated.begin(), associated.end(), record.begin() + 8));  // bytes +8..+44
  EXPECT_EQ(associated.size(), 36u);
}

TEST(RecordCipher, PlainRecordsFromBeforeTheKeyAndSealedOnesAfterReadTogether) {
  const auto key = crypto::Key::random().value();
  TempDirectory dir;
  {
    const auto journal = open_journal(dir.path(), options_with(nullptr));
    ASSERT_NE(journal, nullptr);
    append_marked(*journal, 0, 2);
    ASSERT_TRUE(journal->close().ok());
  }
  const auto journal = open_journal(dir.path(), options_with(cipher_with(key, 3)));
  ASSERT_NE(journal, nullptr);
  append_marked(*journal, 2, 2);
  const auto records = read_all(*journal);
  ASSERT_TRUE(records.ok()) << records.status().to_string();
  ASSERT_EQ(records.value().size(), 4u);
  for (int i = 0; i < 4; ++i) {
    const Record& record = records.value()[static_cast<std::size_t>(i)];
    EXPECT_EQ(record.payload, marked_payload(i)) << i;
    EXPECT_EQ((record.header.flags & kFlagSealed) != 0, i >= 2) << i;
  }
}

TEST(RecordCipher, ARecordDowngradedToClearIsRefused) {
  const auto key = crypto::Key::random().value();
  TempDirectory dir;
  {
    const auto journal = open_journal(dir.path(), options_with(cipher_with(key)));
    ASSERT_NE(journal, nullptr);
    append_marked(*journal, 0, 3);
    ASSERT_TRUE(journal->close().ok());
  }
  // Record 2 rewritten in clear, at its size, its flag cleared, its checksum redone: to recovery
  // and the checksum a sound record, and nothing authenticates it.
  const std::size_t padded = padded_record_bytes(marked_payload(0).size() + kSaltBytes + crypto::kTagBytes);
  Segment segment = Segment::load(dir.path());
  const auto record = segment.record(1, padded);
  const std::size_t size = load_le<std::uint32_t>(record, 4);
  std::fill(record.begin() + kRecordHeaderBytes, record.begin() + static_cast<std::ptrdiff_t>(size), std::byte{'A'});
  store_le<std::uint16_t>(record, 42, static_cast<std::uint16_t>(load_le<std::uint16_t>(record, 42) & ~kFlagSealed));
  segment.rechecksum(record);
  segment.save();
  const auto journal = open_journal(dir.path(), options_with(cipher_with(key)));
  ASSERT_NE(journal, nullptr);
  const auto records = read_all(*journal);
  ASSERT_FALSE(records.ok());
  EXPECT_EQ(records.status().code(), ErrorCode::corruption);
  EXPECT_NE(records.status().message().find("sequence 2: a record in clear where the store seals everything"),
            std::string::npos)
      << records.status().message();
}

TEST(RecordCipher, WhatSealingAddsCountsAgainstRecordBytesMax) {
  const auto key = crypto::Key::random().value();
  for (const bool sealed : {false, true}) {
    TempDirectory dir;
    Options options = options_with(sealed ? cipher_with(key) : nullptr);
    options.record_bytes_max = kRecordHeaderBytes + 100;
    const auto journal = open_journal(dir.path(), options);
    ASSERT_NE(journal, nullptr);
    const std::vector<std::byte> payload(100, std::byte{'x'});
    const RecordInput input{.stream_id = 1, .payload = payload};
    const auto appended = journal->append({&input, 1});
    EXPECT_EQ(appended.ok(), !sealed);
    if (sealed) {
      EXPECT_EQ(appended.status().code(), ErrorCode::invalid_argument);
      EXPECT_NE(appended.status().message().find("sealing adds"), std::string::npos) << appended.status().message();
    }
  }
}

}  // namespace
}  // namespace annal::journal
