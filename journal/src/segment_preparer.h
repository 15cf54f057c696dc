// SegmentPreparer: gets the journal's next segment file ready on its own thread, so that rolling
// over costs the writer a header write and a rename instead of creating and sizing a file.
//
// Why zeros. A file sized with fallocate alone has "unwritten" extents: the first write into each
// one must convert it, and the fdatasync that covers the write then commits that metadata change
// too. Measured on this project's disk (ext4, 4 KiB write + fdatasync, p50): 196 us growing the
// file, 205 us into fallocated space, 116 us into space already written with zeros and synced.
// Group commit acknowledges after exactly that fdatasync, so with zero_fill every acknowledged
// append gets the cheaper one; the price is writing each segment's bytes twice, off the hot path
// (see Options::preparation).
//
// Under SegmentPreparation::adaptive the kind of each file is chosen when the one before it is
// taken: zero_fill's price is worth paying only while zero filling is quick against how fast
// the writer fills segments (Options::preparation).
//
// One file at a time, under a temporary name (*.tmp: recovery removes any it finds, so a crash
// halfway through preparing leaves nothing behind). It is prepared once the writer asks (at its
// first write, then after every take()), not at open: a journal opened to read writes nothing.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "annal/journal/io_backend.h"
#include "annal/journal/journal.h"

namespace annal::journal {

class SegmentPreparer {
 public:
  using Clock = std::chrono::steady_clock;
  struct Prepared {
    FileId file = -1;  // open for writing, `bytes` long, synced
    std::string path;  // its temporary name, to be renamed by the caller
    bool zero_filled = false;  // all of it written with zeros (else some is only allocated)
  };

  // Files are `bytes` long, made ready as `preparation` says.
  SegmentPreparer(IoBackend& io, std::string directory, std::uint64_t bytes, SegmentPreparation preparation);
  // Stops the thread and removes a prepared file nobody took.
  ~SegmentPreparer();
  SegmentPreparer(const SegmentPreparer&) = delete;
  SegmentPreparer& operator=(const SegmentPreparer&) = delete;

  // Starts preparing a file if none is ready or under way. Cheap; never blocks on I/O.
  void request();
  // The prepared file, if one is ready (the caller owns it now; preparing the next one begins at
  // once); nullopt if it is not ready yet or preparing failed (a full disk, say): the caller then
  // creates the segment itself and meets the same error, if any, where it is reported properly.
  // With `wait_if_under_way`, waits for a preparation in progress to finish first. Called at
  // every rollover (under adaptive, the time between two calls is how long a segment took to fill).
  [[nodiscard]] std::optional<Prepared> take(bool wait_if_under_way = false);

  // SegmentPreparation::adaptive's choice for the next file, from how long the writer took to
  // fill the last segment and how long the last whole zero fill took (nullopt: not known yet).
  [[nodiscard]] static bool zero_fill_next(std::optional<Clock::duration> filled_in,
                                           std::optional<Clock::duration> zero_fill_took);
  static constexpr int kFillToZeroFillMin = 4;

 private:
  void run();
  // `zeroed`: how many bytes it wrote zeros to (all, unless the zero fill was cut short), in
  // `zeroing` (the writes and write-backs, not the open, allocation or sync).
  [[nodiscard]] std::optional<Prepared> prepare(std::uint64_t number, bool zero_fill, std::uint64_t& zeroed,
                                                Clock::duration& zeroing);
  // Under mutex_, at a take(): the kind of the file prepared next.
  void choose_next(bool fell_behind);

  IoBackend& io_;
  const std::string directory_;
  const std::uint64_t bytes_;
  const SegmentPreparation preparation_;

  std::mutex mutex_;
  std::condition_variable wanted_, finished_;
  bool requested_ = false;  // under mutex_
  bool stopping_ = false;
  bool gave_up_ = false;  // a preparation failed: do not retry a failing disk in a loop
  bool zero_fill_next_;   // the kind of the next file (adaptive: chosen at each take)
  bool hurry_ = false;    // the writer wanted the file under way: its zero fill stops
  bool fell_behind_ = false;  // ... at the last take: the file after that one is only allocated
  std::optional<Clock::time_point> last_take_;
  // The last zero fill, sync included (one cut short: scaled up to the whole file).
  std::optional<Clock::duration> zero_fill_took_;
  std::optional<Prepared> ready_;
  std::uint64_t prepared_count_ = 0;  // names the temporary files apart
  std::thread thread_;  // last: starts after everything it uses
};

}  // namespace annal::journal
