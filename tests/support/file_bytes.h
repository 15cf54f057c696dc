// Reading what a test left on disk: a file's bytes, every file's under a directory (to compare
// before and after), and whether any file under a directory holds a given string (the encryption
// tests' proof that no plaintext reached the disk).
#pragma once

#include <algorithm>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace annal::test {

// In one read: a journal segment is preallocated to tens of MiB, too many to take a byte at a time.
inline std::vector<std::byte> read_file_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<std::byte> bytes(std::filesystem::file_size(path));
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  bytes.resize(static_cast<std::size_t>(in.gcount()));
  return bytes;
}

inline void write_file_bytes(const std::filesystem::path& path, std::span<const std::byte> bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// Every regular file under `directory`, at any depth, by path, with its bytes.
inline std::map<std::string, std::vector<std::byte>> files_with_bytes(const std::filesystem::path& directory) {
  std::map<std::string, std::vector<std::byte>> out;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(directory)) {
    if (entry.is_regular_file()) out[entry.path().string()] = read_file_bytes(entry.path());
  }
  return out;
}

// Whether any regular file under `directory`, at any depth, holds `needle`.
inline bool any_file_contains(const std::filesystem::path& directory, std::string_view needle) {
  const auto as_bytes = std::as_bytes(std::span(needle));
  for (const auto& entry : std::filesystem::recursive_directory_iterator(directory)) {
    if (!entry.is_regular_file()) continue;
    const std::vector<std::byte> bytes = read_file_bytes(entry.path());
    if (std::search(bytes.begin(), bytes.end(), as_bytes.begin(), as_bytes.end()) != bytes.end()) return true;
  }
  return false;
}

}  // namespace annal::test
