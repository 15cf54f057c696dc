// InlineQueue: the asynchronous half of IoBackend for backends that do the work synchronously
// (PosixBackend, FaultBackend): operations wait in order until submit() runs them, and their
// completions wait until reap() collects them.
#pragma once

#include <cerrno>
#include <deque>
#include <vector>

#include "annal/journal/io_backend.h"

namespace annal::journal {

class InlineQueue {
 public:
  struct Op {
    FileId file;
    std::uint64_t offset;
    std::span<const std::byte> data;  // empty for a sync
    bool is_sync;
    std::uint64_t tag;
  };

  void queue_write(FileId file, std::uint64_t offset, std::span<const std::byte> data,
                   std::uint64_t tag) {
    queued_.push_back({file, offset, data, false, tag});
  }
  void queue_sync(FileId file, std::uint64_t tag) { queued_.push_back({file, 0, {}, true, tag}); }

  // Runs each queued op through `run(op)`, which returns 0 or an errno. As with linked io_uring
  // operations, a failure cancels everything queued after it, so a sync never runs over a write
  // that did not complete.
  template <class Run>
  void submit(Run&& run) {
    bool failed = false;
    for (const Op& op : queued_) {
      std::int64_t result = -ECANCELED;
      if (!failed) {
        const int error = run(op);
        failed = error != 0;
        result = failed ? -error : op.is_sync ? 0 : static_cast<std::int64_t>(op.data.size());
      }
      completed_.push_back({op.tag, result});
    }
    queued_.clear();
  }

  std::size_t reap(std::span<Completion> out, std::size_t min_complete) {
    ANNAL_ASSERT(min_complete <= completed_.size());  // everything completed at submit()
    std::size_t n = 0;
    for (; n < out.size() && !completed_.empty(); ++n) {
      out[n] = completed_.front();
      completed_.pop_front();
    }
    return n;
  }

 private:
  std::vector<Op> queued_;
  std::deque<Completion> completed_;
};

}  // namespace annal::journal
