#include "annal/journal/small_file.h"

#include "annal/base/assert.h"

namespace annal::journal {

Result<std::vector<std::byte>> read_small_file(IoBackend& io, const std::string& path, std::size_t bytes_max) {
  const auto file = io.open(path, OpenMode::read_only);
  if (!file.ok()) return file.status();
  const auto size = io.size(file.value());
  if (!size.ok() || size.value() > bytes_max) {
    (void)io.close(file.value());
    if (!size.ok()) return size.status();
    return Status(ErrorCode::invalid_argument, path + " holds " + std::to_string(size.value()) + " bytes, more than the " +
                                                   std::to_string(bytes_max) + " such a file may hold: not the file it "
                                                   "should be, or damaged");
  }
  std::vector<std::byte> bytes(static_cast<std::size_t>(size.value()));
  const auto read = io.read(file.value(), 0, bytes);
  const Status closed = io.close(file.value());
  if (!read.ok()) return read.status();
  if (!closed.ok()) return closed;
  bytes.resize(read.value());
  return bytes;
}

Status replace_small_file(IoBackend& io, const std::string& path, std::span<const std::byte> bytes, OpenMode create) {
  ANNAL_ASSERT(create == OpenMode::create_exclusive || create == OpenMode::create_private);
  const std::size_t slash = path.rfind('/');
  const std::string directory = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  const std::string temp = path + ".tmp";
  (void)io.remove(temp);  // left by a crash
  const auto file = io.open(temp, create);
  if (!file.ok()) return file.status();
  Status status = bytes.empty() ? Status() : io.write(file.value(), 0, bytes);
  if (status.ok()) status = io.sync(file.value());
  const Status closed = io.close(file.value());
  if (status.ok()) status = closed;
  if (!status.ok()) {
    (void)io.remove(temp);
    return status;
  }
  if (Status renamed = io.rename(temp, path); !renamed.ok()) {
    (void)io.remove(temp);
    return renamed;
  }
  return io.sync_directory(directory);
}

}  // namespace annal::journal
