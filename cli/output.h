// What every command shares: error lines, JSON text, numbers for people, a progress bar, and the
// payloads `annal load` writes and `annal verify --payloads` checks.
#pragma once

#include <signal.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "annal/base/status.h"
#include "annal/server/event_json.h"

namespace annal::cli {

// Exit codes: 0 all well, 1 the command found or hit a problem, 2 bad usage (CLI11's).
inline constexpr int kOk = 0;
inline constexpr int kFailed = 1;
inline constexpr int kUsage = 2;

// "annal <command>: <what>" on stderr, one line; returns kFailed.
int fail(std::string_view command, std::string_view what);
int fail(std::string_view command, const Status& status);

using server::base64;       // the JSON form of events, shared with the HTTP server
using server::json_string;
// 1234567 -> "1,234,567"; 1536 bytes -> "1.5 KiB".
[[nodiscard]] std::string grouped(std::uint64_t n);
[[nodiscard]] std::string human_bytes(std::uint64_t bytes);
[[nodiscard]] std::string human_age(std::uint64_t then_unix_ns);

// The payload `annal load` gives event `version` of stream `stream`: `bytes` bytes that only that
// pair produces, so `annal verify --payloads` can check every byte of every event.
[[nodiscard]] std::vector<std::byte> load_payload(std::string_view stream, std::uint64_t version, std::size_t bytes);

// "label [#####.....]  45%  1.2M/s" on stderr, redrawn at most ten times a second, and only when
// stderr is a terminal: in a pipe or a log it stays quiet.
class Progress {
 public:
  Progress(std::string label, std::uint64_t total);
  ~Progress() { finish(); }
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  void update(std::uint64_t done);
  void finish();

 private:
  void draw(std::uint64_t done);
  const std::string label_;
  const std::uint64_t total_;
  const bool shown_;
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point drawn_{};
  std::uint64_t done_ = 0;
  bool finished_ = false;
};

// A long-running command's progress as lines on stderr (a terminal's or a log's): a line when what
// it says changed, a second apart at most, and at once when `now` (caught up, say).
class ProgressLines {
 public:
  explicit ProgressLines(std::string label) : label_(std::move(label)) {}
  // `line` is compared with the last one shown; `suffix` (a rate) is shown after it, not compared.
  void report(const std::string& line, bool now, const std::string& suffix = {});

 private:
  const std::string label_;
  std::string shown_;
  std::chrono::steady_clock::time_point shown_at_ = std::chrono::steady_clock::now();
};

// SIGINT and SIGTERM for a command that runs until told to stop: blocked from construction (make
// it before any thread starts, so that every thread inherits the mask) and taken by stopped().
class StopSignals {
 public:
  StopSignals();
  // Whether one came within `wait`.
  bool stopped(std::chrono::milliseconds wait);

 private:
  sigset_t signals_;
};

// librdkafka settings given as --set key=value, or which one is malformed.
[[nodiscard]] Result<std::map<std::string, std::string>> key_values(std::string_view option,
                                                                    const std::vector<std::string>& given);

}  // namespace annal::cli
