#include "uring_backend.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace annal::journal {
namespace {

// user_data of the poll on the wake-up eventfd; operation indices are far below it.
constexpr std::uint64_t kWakeOp = UINT64_MAX;

}  // namespace

Result<std::unique_ptr<UringBackend>> UringBackend::create(unsigned in_flight_max, std::uint32_t file_mode) {
  ANNAL_ASSERT(in_flight_max > 0 && (in_flight_max & (in_flight_max - 1)) == 0);
  std::unique_ptr<UringBackend> backend(new UringBackend(in_flight_max, file_mode));
  const int rc = io_uring_queue_init(in_flight_max, &backend->ring_, 0);
  if (rc < 0) {
    backend->ring_.ring_fd = -1;
    return Status(ErrorCode::io_error, std::string("io_uring is not available: ") + std::strerror(-rc) +
                                           " (kernel.io_uring_disabled, seccomp, or a kernel older than 5.6)");
  }
  if ((backend->ring_.features & IORING_FEAT_NODROP) == 0) {
    return Status(ErrorCode::io_error, "io_uring lacks IORING_FEAT_NODROP (kernel 5.5+): completions could be lost");
  }
  backend->wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (backend->wake_fd_ < 0) {
    return Status(ErrorCode::io_error, std::string("eventfd: ") + std::strerror(errno));
  }
  return backend;
}

UringBackend::UringBackend(unsigned in_flight_max, std::uint32_t file_mode) : PosixFiles(file_mode), ops_(in_flight_max) {
  ring_.ring_fd = -1;
  free_.reserve(in_flight_max);
  for (std::uint32_t i = in_flight_max; i > 0; --i) free_.push_back(i - 1);
}

UringBackend::~UringBackend() {
  if (ring_.ring_fd < 0) return;
  (void)io_uring_submit(&ring_);
  while (in_kernel_ > 0 && drain_completions(/*wait=*/true).ok()) {
  }
  io_uring_queue_exit(&ring_);  // cancels the wake-up poll, if armed
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

std::uint32_t UringBackend::take_op() {
  ANNAL_ASSERT(!free_.empty());  // the caller exceeded in_flight_max
  const std::uint32_t op = free_.back();
  free_.pop_back();
  ops_[op] = Op{};
  ops_[op].order = next_order_++;
  return op;
}

io_uring_sqe* UringBackend::next_sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) {
    // The submission queue is full: hand it to the kernel to make room. (It has as many entries
    // as there are ops, so this only happens when resubmissions pile up within one drain.)
    (void)io_uring_submit(&ring_);
    sqe = io_uring_get_sqe(&ring_);
    ANNAL_ASSERT(sqe != nullptr);
  }
  return sqe;
}

void UringBackend::prepare(std::uint32_t op) {
  io_uring_sqe* sqe = next_sqe();
  const Op& o = ops_[op];
  ANNAL_ASSERT(!o.is_sync);  // syncs run on the caller's thread (release_held_syncs)
  const std::span<const std::byte> rest = o.data.subspan(o.done);
  if (o.registered >= 0) {
    io_uring_prep_write_fixed(sqe, o.file, rest.data(), static_cast<unsigned>(rest.size()), o.offset + o.done,
                              o.registered);
  } else {
    io_uring_prep_write(sqe, o.file, rest.data(), static_cast<unsigned>(rest.size()), o.offset + o.done);
  }
  io_uring_sqe_set_data64(sqe, op);
  ++in_kernel_;
}

void UringBackend::queue_write(FileId file, std::uint64_t offset, std::span<const std::byte> data,
                               std::uint64_t tag) {
  ANNAL_ASSERT(!data.empty() && data.size() <= UINT32_MAX);
  const std::uint32_t op = take_op();
  ops_[op].tag = tag;
  ops_[op].file = file;
  ops_[op].offset = offset;
  ops_[op].data = data;
  for (std::size_t i = 0; i < registered_.size(); ++i) {
    const std::byte* begin = registered_[i].data();
    if (data.data() >= begin && data.data() + data.size() <= begin + registered_[i].size()) {
      ops_[op].registered = static_cast<int>(i);
      break;
    }
  }
  writes_in_flight_.insert(ops_[op].order);
  prepare(op);
}

void UringBackend::queue_sync(FileId file, std::uint64_t tag) {
  const std::uint32_t op = take_op();
  ops_[op].tag = tag;
  ops_[op].file = file;
  ops_[op].is_sync = true;
  held_syncs_.push_back(op);
  release_held_syncs();
}

void UringBackend::release_held_syncs() {
  while (!held_syncs_.empty()) {
    const std::uint32_t op = held_syncs_.front();
    const std::uint64_t order = ops_[op].order;
    if (!writes_in_flight_.empty() && *writes_in_flight_.begin() < order) return;
    held_syncs_.pop_front();
    if (first_failed_write_ < order) {
      complete(op, -ECANCELED);  // never sync over a write that failed
    } else {
      // On this thread, not through the ring: io_uring runs an fsync on a kernel worker, a
      // wake-up and a switch there and back for every group commit (docs/journal.md).
      complete(op, -static_cast<std::int64_t>(sync_data(ops_[op].file)));
    }
  }
}

void UringBackend::complete(std::uint32_t op, std::int64_t result) {
  const Op& o = ops_[op];
  if (!o.is_sync) {
    writes_in_flight_.erase(o.order);
    if (result < 0 && o.order < first_failed_write_) first_failed_write_ = o.order;
  }
  ready_.push_back({o.tag, result});
  free_.push_back(op);
}

void UringBackend::on_completion(std::uint32_t op, std::int32_t result) {
  Op& o = ops_[op];
  if (result == -EINTR || result == -EAGAIN) {
    prepare(op);  // not attempted: try again
    return;
  }
  if (result < 0) {
    complete(op, result);
    return;
  }
  if (result == 0) {
    complete(op, -EIO);  // no progress now means no progress on a retry either
    return;
  }
  o.done += static_cast<std::size_t>(result);
  if (o.done < o.data.size()) {
    prepare(op);  // a short write: send the rest
    return;
  }
  complete(op, static_cast<std::int64_t>(o.done));
}

Status UringBackend::drain_completions(bool wait) {
  if (wait) {
    io_uring_cqe* cqe = nullptr;
    int rc;
    do {
      rc = io_uring_wait_cqe(&ring_, &cqe);
    } while (rc == -EINTR);
    if (rc < 0) return Status(ErrorCode::io_error, std::string("io_uring_wait_cqe: ") + std::strerror(-rc));
  }
  io_uring_cqe* cqe = nullptr;
  unsigned head = 0;
  unsigned seen = 0;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    ++seen;
    if (io_uring_cqe_get_data64(cqe) == kWakeOp) {
      eventfd_t ignored;
      (void)::eventfd_read(wake_fd_, &ignored);  // reset the counter; EAGAIN if already zero
      wake_armed_ = false;
      woken_ = true;
      continue;
    }
    --in_kernel_;
    on_completion(static_cast<std::uint32_t>(io_uring_cqe_get_data64(cqe)), cqe->res);
  }
  io_uring_cq_advance(&ring_, seen);
  release_held_syncs();
  return submit();
}

Status UringBackend::submit() {
  for (;;) {
    const int rc = io_uring_submit(&ring_);
    if (rc >= 0) return {};
    if (rc == -EINTR) continue;
    if (rc == -EAGAIN || rc == -EBUSY) {
      // The kernel wants completions reaped first (NODROP keeps them safe meanwhile).
      const Status drained = drain_completions(/*wait=*/false);
      if (!drained.ok()) return drained;
      continue;
    }
    return Status(ErrorCode::io_error, std::string("io_uring_submit: ") + std::strerror(-rc));
  }
}

Result<std::size_t> UringBackend::reap(std::span<Completion> out, std::size_t min_complete) {
  ANNAL_ASSERT(min_complete <= ready_.size() + ops_.size() - free_.size());
  Status status = drain_completions(/*wait=*/false);
  if (status.ok() && ready_.size() < min_complete && !woken_ && !wake_armed_) {
    // Poll the eventfd through the ring, so a wake() ends the wait like a completion would.
    io_uring_sqe* sqe = next_sqe();
    io_uring_prep_poll_add(sqe, wake_fd_, POLLIN);
    io_uring_sqe_set_data64(sqe, kWakeOp);
    wake_armed_ = true;
    status = submit();
  }
  while (status.ok() && ready_.size() < min_complete && !woken_) status = drain_completions(/*wait=*/true);
  woken_ = false;
  if (!status.ok()) return status;
  std::size_t n = 0;
  for (; n < out.size() && !ready_.empty(); ++n) {
    out[n] = ready_.front();
    ready_.pop_front();
  }
  return n;
}

Status UringBackend::register_buffers(std::span<const std::span<std::byte>> buffers) {
  unregister_buffers();
  std::vector<iovec> vectors;
  vectors.reserve(buffers.size());
  for (const std::span<std::byte> buffer : buffers) vectors.push_back({buffer.data(), buffer.size()});
  const int rc = io_uring_register_buffers(&ring_, vectors.data(), static_cast<unsigned>(vectors.size()));
  if (rc < 0) {
    return Status(ErrorCode::io_error, std::string("io_uring_register_buffers: ") + std::strerror(-rc) +
                                           " (RLIMIT_MEMLOCK?); writes go unregistered");
  }
  registered_.assign(buffers.begin(), buffers.end());
  return {};
}

void UringBackend::unregister_buffers() {
  if (registered_.empty()) return;
  // Writes still in flight keep their pages: the kernel drops the registration after them.
  (void)io_uring_unregister_buffers(&ring_);
  registered_.clear();
}

void UringBackend::wake() {
  // eventfd_write only fails if the counter would overflow, which a pending wake-up cannot reach.
  (void)::eventfd_write(wake_fd_, 1);
}

}  // namespace annal::journal
