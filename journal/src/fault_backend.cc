#include "fault_backend.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "annal/journal/format.h"

namespace annal::journal {
namespace {

ErrorCode code_for(int error) {
  switch (error) {
    case ENOSPC: return ErrorCode::no_space;
    case ENOENT: return ErrorCode::not_found;
    default: return ErrorCode::io_error;
  }
}

std::string parent_of(const std::string& path) {
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? std::string(".") : path.substr(0, slash);
}

// What O_DIRECT refuses with EINVAL: an offset, length or buffer address off the block grid.
bool off_grid(std::uint64_t offset, std::size_t size, const std::byte* address) {
  const auto misaligned = [](std::uint64_t value) { return value % kDirectBlockBytes != 0; };
  return misaligned(offset) || misaligned(size) || misaligned(reinterpret_cast<std::uintptr_t>(address));
}

void place(std::vector<std::byte>& bytes, std::uint64_t offset, std::span<const std::byte> data) {
  const auto end = static_cast<std::size_t>(offset) + data.size();
  if (bytes.size() < end) bytes.resize(end);
  std::copy(data.begin(), data.end(), bytes.begin() + static_cast<std::ptrdiff_t>(offset));
}

}  // namespace

void FaultBackend::fail_write(std::uint64_t nth, int error, bool persistent) {
  std::lock_guard lock(mutex_);
  writes_.fail_at = writes_.count + nth;
  writes_.error = error;
  writes_.persistent = persistent;
}

void FaultBackend::fail_sync(std::uint64_t nth, int error, bool persistent) {
  std::lock_guard lock(mutex_);
  syncs_.fail_at = syncs_.count + nth;
  syncs_.error = error;
  syncs_.persistent = persistent;
}

std::vector<std::byte> FaultBackend::survivor(const Node& node) {
  std::vector<std::byte> bytes = node.durable;
  for (const PendingWrite& write : node.pending) {
    switch (random_() % 3) {
      case 0: break;  // never reached the disk
      case 1: place(bytes, write.offset, write.data); break;
      default:  // torn: each sector it touches made it or not
        for (std::uint64_t at = write.offset; at < write.offset + write.data.size();) {
          const std::uint64_t sector_end = (at / kSectorBytes + 1) * kSectorBytes;
          const std::uint64_t end = std::min<std::uint64_t>(sector_end, write.offset + write.data.size());
          if (random_() % 2 == 0) {
            place(bytes, at, std::span(write.data).subspan(at - write.offset, end - at));
          }
          at = end;
        }
    }
  }
  return bytes;
}

void FaultBackend::crash() {
  std::lock_guard lock(mutex_);
  std::map<std::string, std::shared_ptr<Node>> survivors;
  for (const auto& [path, node] : durable_names_) {
    auto kept = std::make_shared<Node>();
    kept->durable = survivor(*node);
    kept->current = kept->durable;
    survivors[path] = kept;
  }
  names_ = survivors;
  durable_names_ = survivors;
  open_.clear();
  locks_.clear();
  // The queue stays: a crash planned inside submit() must not pull it from under the loop. Its
  // remaining operations fail, since every file is closed now.
  dead_ = true;
}

std::vector<std::byte> FaultBackend::contents(const std::string& path) const {
  std::lock_guard lock(mutex_);
  const auto found = names_.find(path);
  return found == names_.end() ? std::vector<std::byte>{} : found->second->current;
}

Status FaultBackend::error_status(int error, const std::string& what) {
  return Status(code_for(error), what + ": " + std::strerror(error));
}

Result<FaultBackend::OpenFile*> FaultBackend::find(FileId file) {
  if (dead_) return error_status(EIO, "after crash");
  const auto found = open_.find(file);
  if (found == open_.end()) return error_status(EBADF, "file " + std::to_string(file));
  return &found->second;
}

std::uint64_t FaultBackend::total_bytes() const {
  std::uint64_t total = 0;
  for (const auto& [path, node] : names_) total += node->current.size();
  return total;
}

Result<FileId> FaultBackend::open(const std::string& path, OpenMode mode) {
  std::lock_guard lock(mutex_);
  if (dead_) return error_status(EIO, "after crash");
  auto found = names_.find(path);
  if (mode == OpenMode::create_exclusive || mode == OpenMode::create_private) {
    if (found != names_.end()) return error_status(EEXIST, "open " + path);
    found = names_.emplace(path, std::make_shared<Node>()).first;
  } else if (found == names_.end()) {
    return error_status(ENOENT, "open " + path);
  }
  const FileId id = next_file_++;
  open_[id] = {found->second, path, mode == OpenMode::read_write_direct};
  return id;
}

Status FaultBackend::close(FileId file) {
  std::lock_guard lock(mutex_);
  locks_.erase(file);
  if (open_.erase(file) == 0) return error_status(EBADF, "close " + std::to_string(file));
  return {};
}

Result<std::uint64_t> FaultBackend::size(FileId file) {
  std::lock_guard lock(mutex_);
  const auto open = find(file);
  if (!open.ok()) return open.status();
  return open.value()->node->current.size();
}

Result<std::size_t> FaultBackend::read(FileId file, std::uint64_t offset, std::span<std::byte> out) {
  std::lock_guard lock(mutex_);
  const auto open = find(file);
  if (!open.ok()) return open.status();
  if (open.value()->direct && off_grid(offset, out.size(), out.data())) {
    return Status(ErrorCode::io_error, "read of " + open.value()->path + " at offset " + std::to_string(offset) + ", " +
                                           std::to_string(out.size()) + " bytes: " + std::strerror(EINVAL) +
                                           " (opened for direct I/O: whole aligned blocks only)");
  }
  const std::vector<std::byte>& bytes = open.value()->node->current;
  if (offset >= bytes.size()) return std::size_t{0};
  const std::size_t n = std::min<std::size_t>(out.size(), bytes.size() - offset);
  std::copy_n(bytes.begin() + static_cast<std::ptrdiff_t>(offset), n, out.begin());
  ++reads_;
  read_bytes_ += n;
  return n;
}

bool FaultBackend::crash_now() {
  if (crash_at_ == 0 || ++operations_ != crash_at_) return false;
  crash_at_ = 0;
  crash();
  return true;
}

int FaultBackend::write_data(OpenFile& file, std::uint64_t offset, std::span<const std::byte> data) {
  if (file.direct && off_grid(offset, data.size(), data.data())) return EINVAL;  // as O_DIRECT does
  if (crash_now()) return EIO;
  if (const int error = writes_.next(); error != 0) return error;
  Node& node = *file.node;
  const std::uint64_t end = offset + data.size();
  if (end > node.current.size() && total_bytes() + (end - node.current.size()) > space_limit_) {
    return ENOSPC;
  }
  place(node.current, offset, data);
  node.pending.push_back({offset, std::vector<std::byte>(data.begin(), data.end())});
  return 0;
}

int FaultBackend::sync_data(OpenFile& file) {
  if (crash_now()) return EIO;
  Node& node = *file.node;
  if (const int error = syncs_.next(); error != 0) {
    // fsyncgate: the kernel has given up on these pages; they are clean in the cache and may
    // never reach the disk.
    node.pending.clear();
    return error;
  }
  // Only the dirty data goes to the disk: pages "cleaned" by an earlier failed sync do not.
  for (const PendingWrite& write : node.pending) place(node.durable, write.offset, write.data);
  node.pending.clear();
  return 0;
}

Status FaultBackend::write(FileId file, std::uint64_t offset, std::span<const std::byte> data) {
  std::lock_guard lock(mutex_);
  const auto open = find(file);
  if (!open.ok()) return open.status();
  const std::string path = open.value()->path;  // a planned crash inside closes the file
  const int error = write_data(*open.value(), offset, data);
  if (error != 0) return error_status(error, "write " + path + " at " + std::to_string(offset));
  return {};
}

Status FaultBackend::sync(FileId file) {
  std::lock_guard lock(mutex_);
  const auto open = find(file);
  if (!open.ok()) return open.status();
  const std::string path = open.value()->path;  // a planned crash inside closes the file
  const int error = sync_data(*open.value());
  if (error != 0) return error_status(error, "fdatasync " + path);
  return {};
}

Status FaultBackend::allocate(FileId file, std::uint64_t bytes) {
  std::lock_guard lock(mutex_);
  const auto open = find(file);
  if (!open.ok()) return open.status();
  Node& node = *open.value()->node;
  if (bytes <= node.current.size()) return {};
  if (total_bytes() + (bytes - node.current.size()) > space_limit_) {
    return error_status(ENOSPC, "fallocate " + open.value()->path);
  }
  // Reserved space reads as zeros; like a size change, it survives once synced.
  const std::vector<std::byte> zeros(bytes - node.current.size());
  place(node.current, node.current.size(), zeros);
  node.pending.push_back({node.current.size() - zeros.size(), zeros});
  return {};
}

Status FaultBackend::truncate(FileId file, std::uint64_t bytes) {
  std::lock_guard lock(mutex_);
  const auto open = find(file);
  if (!open.ok()) return open.status();
  Node& node = *open.value()->node;
  // Shrinking is metadata: modelled as taking effect on the disk at once, the harsher choice for
  // a torn tail (the bytes are gone either way, and a crash cannot bring them back).
  node.current.resize(bytes);
  node.durable.resize(std::min<std::size_t>(node.durable.size(), bytes));
  for (PendingWrite& write : node.pending) {
    if (write.offset >= bytes) write.data.clear();
    else if (write.offset + write.data.size() > bytes) write.data.resize(bytes - write.offset);
  }
  return {};
}

Status FaultBackend::sync_directory(const std::string& directory) {
  std::lock_guard lock(mutex_);
  if (dead_) return error_status(EIO, "after crash");
  for (auto it = durable_names_.begin(); it != durable_names_.end();) {
    it = parent_of(it->first) == directory ? durable_names_.erase(it) : std::next(it);
  }
  for (const auto& [path, node] : names_) {
    if (parent_of(path) == directory) durable_names_[path] = node;
  }
  return {};
}

Status FaultBackend::rename(const std::string& from, const std::string& to) {
  std::lock_guard lock(mutex_);
  if (dead_) return error_status(EIO, "after crash");
  const auto found = names_.find(from);
  if (found == names_.end()) return error_status(ENOENT, "rename " + from);
  names_[to] = found->second;
  names_.erase(from);
  return {};
}

Status FaultBackend::remove(const std::string& path) {
  std::lock_guard lock(mutex_);
  if (dead_) return error_status(EIO, "after crash");
  if (names_.erase(path) == 0) return error_status(ENOENT, "remove " + path);
  return {};
}

Result<std::vector<std::string>> FaultBackend::list(const std::string& directory) {
  std::lock_guard lock(mutex_);
  if (dead_) return error_status(EIO, "after crash");
  std::vector<std::string> names;
  for (const auto& [path, node] : names_) {
    if (parent_of(path) == directory) names.push_back(path.substr(directory.size() + 1));
  }
  return names;
}

Result<FileId> FaultBackend::lock_directory(const std::string& directory) {
  std::lock_guard lock(mutex_);
  if (dead_) return error_status(EIO, "after crash");
  const std::string path = directory + "/" + std::string(kLockFileName);
  if (directory_locked(directory).value()) {
    return Status(ErrorCode::locked, directory + " is in use by another journal (" + path +
                                         " is locked); close it or use another directory");
  }
  if (names_.find(path) == names_.end()) names_.emplace(path, std::make_shared<Node>());
  const FileId id = next_file_++;
  open_[id] = {names_[path], path};
  locks_[id] = directory;
  return id;
}

Status FaultBackend::check_private(const std::string& path) {
  std::lock_guard lock(mutex_);
  if (dead_) return error_status(EIO, "after crash");
  if (names_.find(path) == names_.end()) return error_status(ENOENT, "stat " + path);
  return {};
}

Result<bool> FaultBackend::directory_locked(const std::string& directory) {
  std::lock_guard lock(mutex_);
  if (dead_) return error_status(EIO, "after crash");
  return std::any_of(locks_.begin(), locks_.end(), [&](const auto& held) { return held.second == directory; });
}

void FaultBackend::queue_write(FileId file, std::uint64_t offset, std::span<const std::byte> data,
                               std::uint64_t tag) {
  std::lock_guard lock(mutex_);
  queue_.queue_write(file, offset, data, tag);
}

void FaultBackend::queue_sync(FileId file, std::uint64_t tag) {
  std::lock_guard lock(mutex_);
  queue_.queue_sync(file, tag);
}

Status FaultBackend::submit() {
  std::lock_guard lock(mutex_);
  queue_.submit([this](const InlineQueue::Op& op) {
    const auto open = find(op.file);
    if (!open.ok()) return EBADF;
    return op.is_sync ? sync_data(*open.value()) : write_data(*open.value(), op.offset, op.data);
  });
  return {};
}

Result<std::size_t> FaultBackend::reap(std::span<Completion> out, std::size_t min_complete) {
  std::lock_guard lock(mutex_);
  return queue_.reap(out, min_complete);
}

}  // namespace annal::journal
