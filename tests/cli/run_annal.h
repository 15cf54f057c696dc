// Running the annal tool as a user runs it, for the CLI tests: a child process with arguments,
// judged by its exit code and output; and the stores those tests start from.
#pragma once

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string_view>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "annal/engine/engine.h"
#include "served.h"

namespace annal::cli::test {

struct Ran {
  int exit_code = -1;
  std::string out;
  std::string err;
};

inline std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

using annal::test::argv_of;
inline std::vector<char*> argv_of(const std::vector<std::string>& args) { return argv_of(ANNAL_CLI, args); }

// This process's environment with `extra` ("NAME=VALUE" each) added, each replacing a variable of
// its name: for execve, made before the fork (the child only execs).
inline std::vector<char*> environment_with(const std::vector<std::string>& extra) {
  std::vector<char*> out;
  for (char** variable = environ; *variable != nullptr; ++variable) {
    const std::string_view name(*variable, std::strcspn(*variable, "="));
    const bool replaced = std::any_of(extra.begin(), extra.end(), [&](const std::string& set) {
      return set.size() > name.size() && set.compare(0, name.size(), name) == 0 && set[name.size()] == '=';
    });
    if (!replaced) out.push_back(*variable);
  }
  for (const std::string& set : extra) out.push_back(const_cast<char*>(set.c_str()));
  out.push_back(nullptr);
  return out;
}

// Runs `PROGRAM ARGS...` (a path) to its end, stdin from `input` (a file path) if given, with
// `environment` ("NAME=VALUE" each) added to this process's.
inline Ran run_program(const char* program, const std::vector<std::string>& args, const std::string& input = "/dev/null",
                       const std::vector<std::string>& environment = {}) {
  static std::atomic<std::uint64_t> runs{0};  // several threads may run programs at once
  const std::string out = std::filesystem::temp_directory_path() /
                          ("annal-cli-out-" + std::to_string(getpid()) + "-" + std::to_string(runs.fetch_add(1)));
  const std::string err = out + ".err";
  std::vector<char*> argv = argv_of(program, args);
  std::vector<char*> envp = environment_with(environment);
  const pid_t child = fork();
  if (child == 0) {
    const int in_fd = open(input.c_str(), O_RDONLY);
    const int out_fd = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const int err_fd = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(in_fd, 0);
    dup2(out_fd, 1);
    dup2(err_fd, 2);
    execve(program, argv.data(), envp.data());
    _exit(127);
  }
  int status = 0;
  waitpid(child, &status, 0);
  Ran ran{WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), read_file(out), read_file(err)};
  std::filesystem::remove(out);
  std::filesystem::remove(err);
  return ran;
}

// Runs `annal ARGS...` to its end.
inline Ran run(const std::vector<std::string>& args, const std::string& input = "/dev/null",
               const std::vector<std::string>& environment = {}) {
  return run_program(ANNAL_CLI, args, input, environment);
}

inline std::size_t lines(const std::string& text) { return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n')); }

// Flips the bits of one byte of `file`, as a bad disk or a stray write would.
inline void flip_byte(const std::string& file, std::streamoff offset) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(offset);
  const int byte = f.get();
  ASSERT_NE(byte, std::char_traits<char>::eof()) << file << " has no byte at " << offset;
  f.seekp(offset);
  f.put(static_cast<char>(~byte));
}

// 64 KiB segments, so that a few thousand small events fill several, and state snapshots often.
inline engine::Options small_segments() {
  engine::Options options;
  options.journal.segment_bytes_max = 64u << 10;
  options.journal.commit_bytes_max = 16u << 10;
  options.event_bytes_max = 4u << 10;  // a commit of one event fits in 16 KiB
  options.state_snapshot_every_events = 200;
  return options;
}

// Appends `count` events of 200 bytes over three streams, through the engine, and closes it.
inline void append_events(const std::string& directory, const engine::Options& options, int count) {
  auto store = engine::Engine::open(directory, options);
  ASSERT_TRUE(store.ok()) << store.status().to_string();
  const std::string payload(200, 'x');
  for (int i = 0; i < count; ++i) {
    const engine::EventData event{.type = "T", .payload = std::as_bytes(std::span(payload))};
    ASSERT_TRUE(store.value()->append("s" + std::to_string(i % 3), engine::ExpectedVersion::any(), {&event, 1}).ok());
  }
  ASSERT_TRUE(store.value()->close().ok());
}

}  // namespace annal::cli::test
