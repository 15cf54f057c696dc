// The events the connector tests export: type Counted, payload {"n":N} with N counting from 0
// across calls, spread over 13 streams order-0 ... order-12.
#pragma once

#include <gtest/gtest.h>

#include <span>
#include <string>

#include "annal/engine/engine.h"

namespace annal::test {

// Appends `count` such events to `engine`, `appended` counting them all; the last receipt.
inline engine::Receipt append_counted(engine::Engine& engine, int count, int& appended) {
  engine::Receipt last;
  for (int i = 0; i < count; ++i) {
    const std::string payload = "{\"n\":" + std::to_string(appended++) + "}";
    const auto bytes = std::as_bytes(std::span(payload));
    const engine::EventData event{.type = "Counted", .payload = {bytes.begin(), bytes.end()}};
    auto receipt = engine.append("order-" + std::to_string(appended % 13), engine::ExpectedVersion::any(), {&event, 1});
    EXPECT_TRUE(receipt.ok()) << receipt.status().to_string();
    if (receipt.ok()) last = receipt.value();
  }
  return last;
}

}  // namespace annal::test
