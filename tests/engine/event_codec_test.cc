#include "event_codec.h"

#include <gtest/gtest.h>

#include <array>
#include <vector>

namespace annal::engine {
namespace {

std::vector<std::byte> stored(const Metadata& metadata, std::string_view payload) {
  std::array<std::byte, kMetadataBytesMax> header{};
  const std::size_t used = encode_metadata(metadata, header);
  std::vector<std::byte> out(header.begin(), header.begin() + static_cast<std::ptrdiff_t>(used));
  for (const char c : payload) out.push_back(static_cast<std::byte>(c));
  return out;
}

TEST(EventCodec, TheWorkedExampleOfFormatMdIsWhatTheEncoderWrites) {
  const auto bytes = stored({.prev = 41, .event_id = {7, 1}}, R"({"amount":100})");
  ASSERT_EQ(bytes.size(), 39u);
  const std::vector<std::uint8_t> head = {0x01, 41, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0};
  for (std::size_t i = 0; i < head.size(); ++i) EXPECT_EQ(static_cast<std::uint8_t>(bytes[i]), head[i]) << "byte " << i;
}

TEST(EventCodec, EveryCombinationOfIdsRoundTrips) {
  for (int flags = 0; flags < 8; ++flags) {
    const Metadata metadata{.prev = 5,
                            .event_id = (flags & 1) != 0 ? Id128{1, 2} : Id128{},
                            .correlation_id = (flags & 2) != 0 ? Id128{3, 4} : Id128{},
                            .causation_id = (flags & 4) != 0 ? Id128{5, 6} : Id128{}};
    const auto bytes = stored(metadata, "payload");
    const auto decoded = decode_event(bytes, 9);
    ASSERT_TRUE(decoded.ok()) << decoded.status().to_string();
    EXPECT_EQ(decoded.value().metadata.prev, 5u);
    EXPECT_EQ(decoded.value().metadata.event_id, metadata.event_id);
    EXPECT_EQ(decoded.value().metadata.correlation_id, metadata.correlation_id);
    EXPECT_EQ(decoded.value().metadata.causation_id, metadata.causation_id);
    EXPECT_EQ(decoded.value().payload.size(), 7u);
    EXPECT_EQ(bytes.size(), kMetadataBytesMin + 16u * static_cast<unsigned>(__builtin_popcount(flags)) + 7);
  }
}

TEST(EventCodec, DamagedMetadataIsCorruptionNamingTheSequence) {
  const auto good = stored({.prev = 5, .event_id = {1, 2}}, "");
  const auto expect_corrupt = [](std::span<const std::byte> bytes, std::uint64_t sequence) {
    const auto decoded = decode_event(bytes, sequence);
    ASSERT_FALSE(decoded.ok());
    EXPECT_EQ(decoded.status().code(), ErrorCode::corruption);
    EXPECT_NE(decoded.status().message().find(std::to_string(sequence)), std::string::npos);
  };
  expect_corrupt(std::span(good).first(kMetadataBytesMin - 1), 9);  // shorter than its header
  expect_corrupt(std::span(good).first(good.size() - 1), 9);        // cut inside the event id
  auto unknown = good;
  unknown[0] = std::byte{0x80};
  expect_corrupt(unknown, 9);  // a flag no version of the engine wrote
  expect_corrupt(good, 5);     // points at itself: prev must be an earlier sequence
}

TEST(EventCodec, NameRecordsRoundTripAndRefuseImpossibleSizes) {
  std::array<std::byte, kNamePrefixBytesMax> prefix{};
  const std::size_t used = encode_name_prefix(kTypeStreamNamed, kNamedStreamBit | 3, prefix);
  std::vector<std::byte> bytes(prefix.begin(), prefix.begin() + static_cast<std::ptrdiff_t>(used));
  for (const char c : std::string_view("order-1")) bytes.push_back(static_cast<std::byte>(c));
  const auto stream = decode_name(kTypeStreamNamed, bytes, 1);
  ASSERT_TRUE(stream.ok());
  EXPECT_EQ(stream.value().id, kNamedStreamBit | 3);
  EXPECT_EQ(stream.value().name, "order-1");

  const std::size_t type_used = encode_name_prefix(kTypeEventTypeNamed, 17, prefix);
  ASSERT_EQ(type_used, 2u);
  std::vector<std::byte> type(prefix.begin(), prefix.begin() + 2);
  type.push_back(std::byte{'X'});
  const auto named = decode_name(kTypeEventTypeNamed, type, 2);
  ASSERT_TRUE(named.ok());
  EXPECT_EQ(named.value().id, 17u);
  EXPECT_EQ(named.value().name, "X");

  EXPECT_EQ(decode_name(kTypeEventTypeNamed, std::span(type).first(2), 2).status().code(), ErrorCode::corruption);
  EXPECT_EQ(decode_name(kTypeStreamNamed, std::vector<std::byte>(8 + kNameBytesMax + 1), 2).status().code(),
            ErrorCode::corruption);
  EXPECT_EQ(decode_name(3, bytes, 2).status().code(), ErrorCode::corruption);  // not a name type
}

}  // namespace
}  // namespace annal::engine
