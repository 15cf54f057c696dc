// UringBackend: IoBackend whose asynchronous writes go through io_uring; the synchronous calls are
// PosixFiles'. Writes go to the kernel as soon as they are queued (submit() makes one system call
// for the whole round), several in flight at once. A sync is held back until every write queued
// before it has completed in full (a short write must be finished before the sync that covers
// it), and then runs on the thread that queued or reaped it: an fdatasync, not an io_uring fsync,
// which the kernel hands to a worker thread, costing a wake-up and two context switches per
// group commit (journal_durable_8w: p50 409 against 256 us, docs/journal.md). Short writes are
// resubmitted for the rest; -EINTR and -EAGAIN are resubmitted; a sync after a failed write
// completes with -ECANCELED and never runs. Completions arrive in any order.
#pragma once

#include <liburing.h>

#include <deque>
#include <memory>
#include <set>
#include <span>
#include <vector>

#include "posix_backend.h"

namespace annal::journal {

class UringBackend final : public PosixFiles {
 public:
  // A ring with room for `in_flight_max` operations (a power of two). Fails with io_error saying
  // why if this kernel has no usable io_uring (or lacks IORING_FEAT_NODROP, without which
  // completions could be lost).
  // The files it creates get `file_mode`.
  static Result<std::unique_ptr<UringBackend>> create(unsigned in_flight_max = 256,
                                                      std::uint32_t file_mode = kPrivateFileMode);
  ~UringBackend() override;  // waits for operations still in flight: their buffers are the caller's

  // At most in_flight_max operations may be queued and not yet reaped.
  void queue_write(FileId file, std::uint64_t offset, std::span<const std::byte> data,
                   std::uint64_t tag) override;
  void queue_sync(FileId file, std::uint64_t tag) override;
  Status submit() override;
  Result<std::size_t> reap(std::span<Completion> out, std::size_t min_complete) override;
  void wake() override;  // writes to an eventfd that a waiting reap() polls through the ring
  // Writes from inside a registered buffer go out as IORING_OP_WRITE_FIXED.
  Status register_buffers(std::span<const std::span<std::byte>> buffers) override;
  void unregister_buffers() override;

 private:
  struct Op {
    std::uint64_t tag = 0;
    std::uint64_t order = 0;  // position in queue order, to know which writes a sync covers
    FileId file = -1;
    std::uint64_t offset = 0;
    std::span<const std::byte> data;
    std::size_t done = 0;  // bytes written so far
    int registered = -1;   // index of the registered buffer holding `data`, or -1
    bool is_sync = false;
  };

  UringBackend(unsigned in_flight_max, std::uint32_t file_mode);
  [[nodiscard]] std::uint32_t take_op();
  [[nodiscard]] io_uring_sqe* next_sqe();  // submitting first if the queue is full
  void prepare(std::uint32_t op);  // an SQE for the rest of `op`
  void complete(std::uint32_t op, std::int64_t result);
  void on_completion(std::uint32_t op, std::int32_t result);
  void release_held_syncs();
  Status drain_completions(bool wait);

  io_uring ring_{};
  std::vector<Op> ops_;
  std::vector<std::uint32_t> free_;
  std::set<std::uint64_t> writes_in_flight_;  // orders of writes not yet complete
  std::deque<std::uint32_t> held_syncs_;      // in queue order
  std::uint64_t next_order_ = 0;
  std::uint64_t first_failed_write_ = UINT64_MAX;  // order of the first failed write
  std::uint32_t in_kernel_ = 0;                    // SQEs submitted or prepared, CQE not seen
  std::deque<Completion> ready_;
  std::vector<std::span<std::byte>> registered_;  // io_uring_register_buffers, by index
  int wake_fd_ = -1;         // eventfd written by wake()
  bool wake_armed_ = false;  // a poll on wake_fd_ is in the ring
  bool woken_ = false;       // its completion arrived since the last reap()
};

}  // namespace annal::journal
