// SegmentChainer: gives each segment the writer seals its entry in CHAIN (chain.h), on a thread of
// its own, so that the writer never waits for a segment to be read and hashed (some 30 ms for 64
// MiB with SHA-NI).
//
// At open it first makes CHAIN agree with the recovered log: entries of segments retention
// removed stay (they carry the chain past them); an entry that no longer matches a sealed segment
// (point-in-time recovery cut the log there, or the segment it names became the tail again because
// a crash came before the next segment was made), and all after it, are dropped; then every sealed
// segment without an entry is chained, oldest first. So a crash between sealing and chaining costs
// only the wait until the next open.
//
// The chain is evidence, not data: a failure to chain (an I/O error, a segment that does not read
// back) stops chaining, says so on stderr and in status(), and leaves the journal running. The
// next open chains what is missing, from what the segments then hold.
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "annal/journal/chain.h"
#include "annal/journal/io_backend.h"
#include "recovery.h"

namespace annal::journal {

class SegmentChainer {
 public:
  struct Sealed {
    std::string path;
    std::uint64_t base = 0;
    std::uint64_t last = 0;  // its last record's sequence
  };

  // `segments` is what recovery left (the last one is the tail, never chained here).
  // `tag_untagged`: with a key, entries written untagged are tagged now (Options::tag_untagged_chain).
  // `direct`: segments are read with O_DIRECT (a journal with Options::direct_io; segment_link).
  [[nodiscard]] static Result<std::unique_ptr<SegmentChainer>> open(IoBackend& io, std::string directory,
                                                                    const std::vector<SegmentInfo>& segments,
                                                                    std::shared_ptr<const ChainKey> key,
                                                                    bool tag_untagged = false, bool direct = false);
  // Chains what is queued, then stops.
  ~SegmentChainer();
  SegmentChainer(const SegmentChainer&) = delete;
  SegmentChainer& operator=(const SegmentChainer&) = delete;

  // The writer sealed `segment`: chained after every segment given before it. Never blocks on I/O.
  void sealed(Sealed segment);
  // Waits until everything given so far is chained, or chaining stopped (tests, tools).
  void wait_idle();
  // What stopped chaining, if anything.
  [[nodiscard]] Status status() const;

 private:
  SegmentChainer(IoBackend& io, std::string directory, std::shared_ptr<const ChainKey> key, FileId file,
                 std::size_t entries, const crypto::Digest& previous, std::deque<Sealed> pending, bool direct);
  void run();
  [[nodiscard]] Status chain(const Sealed& segment);

  IoBackend& io_;
  const std::string directory_;
  const std::shared_ptr<const ChainKey> key_;
  const FileId file_;
  const bool direct_;
  std::size_t entries_;       // in the file: where the next is written (chain thread only)
  crypto::Digest previous_;   // the last entry's link (chain thread only)

  mutable std::mutex mutex_;
  std::condition_variable wanted_, idle_;
  std::deque<Sealed> queue_;  // under mutex_; the front is being chained
  bool stopping_ = false;
  Status error_;
  std::thread thread_;  // last: starts after everything it uses
};

}  // namespace annal::journal
