// A copy of a closed store's directory, put back on demand: a backup and its restore, as an
// operator makes them (the store must be closed at both).
#pragma once

#include <filesystem>
#include <string>
#include <utility>

#include "temp_directory.h"

namespace annal::test {

class DirectoryBackup {
 public:
  explicit DirectoryBackup(std::string directory) : directory_(std::move(directory)) {
    std::filesystem::copy(directory_, copy_.path(), std::filesystem::copy_options::recursive);
  }

  // The directory as it was when the backup was taken; whatever came since is gone.
  void restore() const {
    for (const auto& entry : std::filesystem::directory_iterator(directory_)) std::filesystem::remove_all(entry.path());
    std::filesystem::copy(copy_.path(), directory_, std::filesystem::copy_options::recursive);
  }

 private:
  std::string directory_;
  TempDirectory copy_;
};

}  // namespace annal::test
