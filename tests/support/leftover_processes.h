// Finding the processes a test started, from /proc, for the tests that check none outlives the
// process that started them. A process is picked by what only ours carry (a HOME or working
// directory inside a directory of the test's own), never by a program's name: other people's
// servers of the same programs may run on this machine at the same time.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

namespace annal::test {

// The NUL-separated entries of /proc/PID/FILE (environ, cmdline); none if the process is gone, is
// a zombie, or is not ours to read.
inline std::vector<std::string> proc_entries(pid_t pid, const char* file) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/" + file, std::ios::binary);
  std::vector<std::string> entries;
  for (std::string entry; std::getline(in, entry, '\0');) entries.push_back(entry);
  return entries;
}

// The value of NAME in the process's environment, "" if it has none.
inline std::string environment_value(pid_t pid, const std::string& name) {
  for (const std::string& entry : proc_entries(pid, "environ")) {
    if (entry.starts_with(name + "=")) return entry.substr(name.size() + 1);
  }
  return "";
}

// The process's working directory, "" if it cannot be read.
inline std::string working_directory(pid_t pid) {
  std::error_code error;
  return std::filesystem::read_symlink("/proc/" + std::to_string(pid) + "/cwd", error).string();
}

// The live processes for which `ours` holds.
inline std::vector<pid_t> processes_where(const std::function<bool(pid_t)>& ours) {
  std::vector<pid_t> found;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", error)) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const auto pid = static_cast<pid_t>(std::stol(name));
    if (ours(pid)) found.push_back(pid);
  }
  return found;
}

// "PID: command line" for each, for a failure message.
inline std::string describe(const std::vector<pid_t>& pids) {
  std::ostringstream out;
  for (const pid_t pid : pids) {
    out << pid << ":";
    for (const std::string& arg : proc_entries(pid, "cmdline")) out << " " << arg;
    out << "\n";
  }
  return out.str();
}

}  // namespace annal::test
