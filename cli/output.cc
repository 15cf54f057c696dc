#include "output.h"

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "annal/base/wall_clock.h"

namespace annal::cli {

int fail(std::string_view command, std::string_view what) {
  std::fprintf(stderr, "annal %.*s: %.*s\n", static_cast<int>(command.size()), command.data(),
               static_cast<int>(what.size()), what.data());
  return kFailed;
}

int fail(std::string_view command, const Status& status) { return fail(command, status.to_string()); }

std::string grouped(std::uint64_t n) {
  const std::string digits = std::to_string(n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i != 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string human_bytes(std::uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  std::size_t unit = 0;
  while (value >= 1024 && unit + 1 < std::size(kUnits)) {
    value /= 1024;
    ++unit;
  }
  char out[32];
  std::snprintf(out, sizeof(out), unit == 0 ? "%.0f %s" : "%.1f %s", value, kUnits[unit]);
  return out;
}

std::string human_age(std::uint64_t then_unix_ns) {
  const std::uint64_t now = wall_clock_ns();
  const std::uint64_t s = now > then_unix_ns ? (now - then_unix_ns) / 1'000'000'000 : 0;
  if (s < 120) return std::to_string(s) + "s";
  if (s < 7200) return std::to_string(s / 60) + "m";
  if (s < 172800) return std::to_string(s / 3600) + "h";
  return std::to_string(s / 86400) + "d";
}

std::vector<std::byte> load_payload(std::string_view stream, std::uint64_t version, std::size_t bytes) {
  // FNV-1a of the name, then splitmix64 from (name, version): cheap, and every pair differs.
  std::uint64_t state = 0xcbf29ce484222325ull;
  for (const char c : stream) state = (state ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
  state ^= version * 0x9e3779b97f4a7c15ull;
  std::vector<std::byte> out(bytes);
  for (std::size_t i = 0; i < bytes; i += 8) {
    state += 0x9e3779b97f4a7c15ull;
    std::uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    std::memcpy(out.data() + i, &z, std::min<std::size_t>(8, bytes - i));
  }
  return out;
}

Progress::Progress(std::string label, std::uint64_t total)
    : label_(std::move(label)), total_(total), shown_(isatty(STDERR_FILENO) == 1) {}

void Progress::update(std::uint64_t done) {
  done_ = done;
  if (!shown_) return;
  const auto now = std::chrono::steady_clock::now();
  if (now - drawn_ < std::chrono::milliseconds(100)) return;
  drawn_ = now;
  draw(done);
}

void Progress::draw(std::uint64_t done) {
  constexpr int kWidth = 30;
  const double fraction = total_ == 0 ? 1.0 : std::min(1.0, static_cast<double>(done) / static_cast<double>(total_));
  const int filled = static_cast<int>(fraction * kWidth);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = seconds > 0 ? static_cast<double>(done) / seconds : 0;
  std::fprintf(stderr, "\r%s [%.*s%.*s] %3d%%  %s/s ", label_.c_str(), filled, "##############################",
               kWidth - filled, "..............................", static_cast<int>(fraction * 100),
               grouped(static_cast<std::uint64_t>(rate)).c_str());
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (!shown_) return;
  draw(done_);
  std::fputc('\n', stderr);
}

void ProgressLines::report(const std::string& line, bool now, const std::string& suffix) {
  const auto at = std::chrono::steady_clock::now();
  if (line == shown_ || (!now && at - shown_at_ < std::chrono::seconds(1))) return;
  std::fprintf(stderr, "%s: %s%s\n", label_.c_str(), line.c_str(), suffix.c_str());
  shown_ = line;
  shown_at_ = at;
}

StopSignals::StopSignals() {
  sigemptyset(&signals_);
  sigaddset(&signals_, SIGINT);
  sigaddset(&signals_, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals_, nullptr);
}

bool StopSignals::stopped(std::chrono::milliseconds wait) {
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(wait);
  const timespec timeout{static_cast<time_t>(seconds.count()),
                         static_cast<long>(std::chrono::nanoseconds(wait - seconds).count())};
  return sigtimedwait(&signals_, nullptr, &timeout) > 0;
}

Result<std::map<std::string, std::string>> key_values(std::string_view option, const std::vector<std::string>& given) {
  std::map<std::string, std::string> settings;
  for (const std::string& setting : given) {
    const auto equals = setting.find('=');
    if (equals == std::string::npos || equals == 0) {
      return Status(ErrorCode::invalid_argument, std::string(option) + " " + setting + ": a setting is key=value");
    }
    settings[setting.substr(0, equals)] = setting.substr(equals + 1);
  }
  return settings;
}

}  // namespace annal::cli
