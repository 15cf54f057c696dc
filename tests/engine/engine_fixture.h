// What the engine's tests share: a store in a fresh directory, reopenable, and events whose bytes
// say which (stream, version) they are.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "annal/engine/engine.h"
#include "temp_directory.h"

namespace annal::engine::test {

inline Engine::Clock::time_point soon() { return Engine::Clock::now() + std::chrono::seconds(30); }

inline std::vector<std::byte> bytes_of(std::string_view text) {
  const auto bytes = std::as_bytes(std::span(text));
  return {bytes.begin(), bytes.end()};
}

inline std::string text_of(std::span<const std::byte> bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

// Small segments so that a few hundred events roll over a few times.
inline Options small_options() {
  Options options;
  options.journal.segment_bytes_max = 64u << 10;
  options.journal.commit_bytes_max = 16u << 10;
  options.event_bytes_max = 4u << 10;
  options.ring_capacity = 1u << 12;
  return options;
}

class EngineTest : public ::testing::Test {
 protected:
  void open(const Options& options = small_options()) {
    engine_.reset();
    auto opened = Engine::open(dir_.path(), options);
    ASSERT_TRUE(opened.ok()) << opened.status().to_string();
    engine_ = std::move(opened.value());
  }
  void SetUp() override { open(); }

  // Appends one event whose payload is `text`, at whatever version; returns its receipt.
  Receipt append_text(const StreamRef& stream, std::string_view text, std::string_view type = "Noted") {
    const auto payload = bytes_of(text);
    const EventData event{.type = type, .payload = payload};
    const auto receipt = engine_->append(stream, ExpectedVersion::any(), {&event, 1});
    EXPECT_TRUE(receipt.ok()) << receipt.status().to_string();
    return receipt.ok() ? receipt.value() : Receipt{};
  }

  std::vector<std::string> texts(const StreamRef& stream, const ReadStreamOptions& options = {}) {
    auto events = engine_->read_stream(stream, options, soon());
    EXPECT_TRUE(events.ok()) << events.status().to_string();
    std::vector<std::string> out;
    if (events.ok()) {
      for (const Event& event : events.value()) out.push_back(text_of(event.payload));
    }
    return out;
  }

  annal::test::TempDirectory dir_;
  std::unique_ptr<Engine> engine_;
};

}  // namespace annal::engine::test
