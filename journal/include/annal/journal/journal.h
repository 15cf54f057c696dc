// Journal: annal's durable, append-only log of events, in segment files in one directory.
//
//   auto journal = annal::journal::Journal::open("/var/lib/app/journal", {});
//   const RecordInput events[] = {{.stream_id = 7, .stream_version = 0, .type = 1, .payload = bytes}};
//   auto receipt = journal.value()->append(events);           // sequences assigned, not yet durable
//   Status s = journal.value()->wait_durable(receipt.value().last, deadline_after(1s));
//
// One writer thread owns the files. append() may be called from any thread; it copies the records
// into a staging buffer and returns at once. The writer takes everything staged into one write
// (group commit), syncs it according to the durability mode, and only then advances
// durable_sequence(), which never goes backwards. The records of one append() are contiguous and
// become durable together; after a crash either all of them are recovered or none.
//
// Errors. A full disk stops appends with ErrorCode::no_space; an I/O error or failed fdatasync puts
// the journal in a failed state for good (ErrorCode::failed on every later call): durability of
// what was in flight is unknown, so nothing more is acknowledged, and nothing is retried. Reopen
// the directory to recover. A second open of the same directory fails with ErrorCode::locked.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "annal/base/histogram.h"
#include "annal/base/status.h"
#include "annal/journal/chain.h"
#include "annal/journal/format.h"
#include "annal/journal/io_backend.h"
#include "annal/journal/record_cipher.h"

namespace annal::journal {

enum class Durability {
  none,          // acknowledged once written to the page cache; a power cut may lose it
  group_commit,  // acknowledged after an fdatasync that covers it (the default)
  interval,      // fdatasync every sync_interval; acknowledged after that sync
};

enum class RecoveryMode {
  // Truncate a torn tail (what a crash leaves); refuse to open on any other damage.
  tolerate_torn_tail,
  // Keep the longest intact prefix and drop everything after the first damage (RocksDB's
  // point-in-time recovery). Chosen by an operator who accepts losing what follows, so it implies
  // accept_data_loss.
  truncate_at_first_corruption,
};

enum class IoKind { io_uring, posix };

// A sequence known to have been acknowledged durable, and what says so ("state snapshot F").
struct DurableWitness {
  std::uint64_t sequence = 0;
  std::string what;
};

// How the next segment file is made ready, on a thread of its own, before the writer rolls over.
enum class SegmentPreparation {
  // Written full of zeros and synced: every append then overwrites blocks that are already
  // allocated and written, and its fdatasync commits no extent change (on ext4 about half the
  // latency of one into fallocated space). Costs writing each segment twice, off the hot path.
  zero_fill,
  // fallocate only: each byte is written once, and each fdatasync also commits the conversion
  // of the extents it touched. For throughput-bound journals on slow disks.
  allocate,
  // zero_fill while the journal fills segments slowly, allocate while it fills them fast: the
  // next segment is only allocated when the last one filled in less than four times what the
  // last zero fill took, or when the writer reached the end of a segment before the next one was
  // ready (whose zero fill then stops where it is). Latency-bound journals get zero_fill's
  // cheaper syncs; a journal at full speed does not write every byte twice (docs/journal.md).
  adaptive,
};

struct Options {
  Durability durability = Durability::group_commit;
  std::chrono::milliseconds sync_interval{5};
  RecoveryMode recovery = RecoveryMode::tolerate_torn_tail;
  IoKind io = IoKind::io_uring;
  SegmentPreparation preparation = SegmentPreparation::adaptive;
  // Write segments with O_DIRECT, from block-aligned buffers, bypassing the page cache (no copy,
  // no cache pollution, reads of old segments do not evict hot data). Every group-commit write
  // then covers whole 4 KiB blocks: it ends with a padding record up to the next block boundary,
  // so a block that holds acknowledged records is never written again (a torn rewrite could
  // destroy them). Small rounds pay in space: a round of one 64-byte event takes a whole block.
  // Needs a file system with direct I/O; open() says so otherwise.
  bool direct_io = false;
  // The mode of the files the journal creates (segments, LOCK), and of the engine's (snapshots,
  // indexes) and its directory (directory_mode: 0700 for 0600). Owner only by default; 0640 lets
  // a backup agent in the owner's group read. Existing files keep theirs: a store made before
  // this option (0644 files, 0755 directory) stays so until `chmod -R go-rwx DIR`. An I/O backend
  // the caller passes to open() creates files with the mode it was made with.
  std::uint32_t file_mode = kPrivateFileMode;
  std::uint64_t segment_bytes_max = 64ull << 20;  // a segment rolls over before passing this
  // Header + payload of one record this open may append. Only appends: recovery and readers judge
  // stored records by the format's limit (format.h), so reopening with a smaller value reads
  // everything a larger one wrote.
  std::size_t record_bytes_max = 1u << 20;
  std::size_t commit_bytes_max = 1u << 20;        // bytes in one group-commit write
  std::size_t writes_in_flight_max = 4;           // group-commit writes queued at once
  // The in-memory sparse index keeps one sequence -> offset entry (16 B) per this many bytes of
  // records, so a read from any sequence starts at most about this far before it.
  std::uint64_t index_interval_bytes = 64u << 10;
  // A Reader's buffer: it reads the segment in chunks of this size (one read call per chunk). It
  // grows only for a record that does not fit. Recovery's scan of a segment at open reads the
  // same way.
  std::size_t read_chunk_bytes = 1u << 20;
  // Acknowledged events the log no longer holds (a segment deleted or cut short by hand, a disk
  // that dropped written data) are found at open by their witnesses: the durable notice and the
  // retention floor in LOCK (format.h), and whatever durable_witness proves. open() then refuses
  // the directory with ErrorCode::corruption, naming the missing sequences and the witness. With
  // accept_data_loss it goes on instead: the log continues after what it holds, so the missing
  // sequences will be given to new events; it says so on stderr and in RecoveryReport::data_loss
  // and leaves a note, data-loss-FIRST-LAST.txt, in the directory (a log left with no segment
  // continues after the lost sequences instead). Truncating a torn tail, which holds nothing
  // acknowledged, needs no such consent; RecoveryMode::truncate_at_first_corruption is consent.
  bool accept_data_loss = false;
  // The caller's own proof, asked once open() knows the last sequence the recovered log holds: a
  // later sequence that was acknowledged durable (the engine answers from its state snapshots).
  std::function<std::optional<DurableWitness>(std::uint64_t last_sequence)> durable_witness{};
  // Encryption at rest (record_cipher.h): every record appended is sealed by it, and readers open
  // sealed records with it. Null: payloads are stored as given. A journal may hold both kinds (one
  // written before encryption was turned on); a reader without a cipher fails on a sealed record,
  // saying so. Recovery needs none.
  std::shared_ptr<RecordCipher> cipher{};
  // Chain each sealed segment into CHAIN (chain.h): SHA-256 over every byte once more, on a thread
  // of its own. Off, nothing is chained (segments sealed meanwhile are chained by the next open
  // with it on): for a journal whose tamper evidence is not wanted, on a machine whose cores the
  // writer and its producers already fill (docs/benchmarks.md has the cost).
  bool hash_chain = true;
  // Tags each CHAIN entry (chain.h) with an HMAC under this key, so that only its holder can
  // rewrite the chain after editing a segment. Null: entries are untagged (the chain still shows
  // an edit of a sealed segment that did not also rewrite CHAIN, and any edit, given a head).
  std::shared_ptr<const ChainKey> chain_key{};
  // With chain_key: CHAIN entries written untagged are tagged at open. For the first open of a
  // store written in clear until then (its entries could have no tag), never after: an untagged
  // entry in a store whose chain is tagged is one written without the key.
  bool tag_untagged_chain = false;
};

struct RecordInput {
  std::uint64_t stream_id = 0;
  std::uint64_t stream_version = 0;
  std::uint16_t type = 1;  // 0 is reserved for padding
  std::uint64_t timestamp_ns = 0;  // 0: the journal stamps the wall-clock time
  // The record's payload is `prefix` followed by `payload`, stored as one: a caller's own header
  // (the engine's event metadata) goes in without being copied next to the payload first.
  std::span<const std::byte> prefix{};
  std::span<const std::byte> payload;

  [[nodiscard]] std::size_t payload_bytes() const noexcept { return prefix.size() + payload.size(); }
};

struct Receipt {
  std::uint64_t first = 0;  // sequences of the first and last record of the append
  std::uint64_t last = 0;
};

struct Record {
  RecordHeader header;
  std::vector<std::byte> payload;
  bool erased = false;  // RecordView::erased (reader.h)
};

// Where to start reading for a sequence (Journal::locate): the segment holding it, and the nearest
// record at or before it that the sparse index knows.
struct SegmentLocation {
  std::string path;
  std::uint64_t base = kFirstSequence;          // the segment's first sequence
  std::uint64_t start_sequence = kFirstSequence;  // the record at start_offset
  std::uint64_t start_offset = kSegmentHeaderBytes;
  // One past the last record written so far, and the file offset just past it. Written is not
  // durable: readers stop at durable_sequence().
  std::uint64_t end_sequence = kFirstSequence;
  std::uint64_t end_offset = kSegmentHeaderBytes;
  // The records before this offset had their checksums verified when the journal was opened (the
  // segments recovery scanned: the tail, and any sealed one without a valid index file), so a
  // reader need not compute them again. Safe because nothing rewrites them while the journal is
  // open: the writer only appends past end_offset, recovery cut any torn tail before this was set,
  // and the directory lock keeps other writers out. Sealed segments taken from their index files
  // were not read at open (kSegmentHeaderBytes here): their records are verified as they are read.
  std::uint64_t verified_end_offset = kSegmentHeaderBytes;
};

class Reader;

// What open() found and did, for the log line and for tools.
struct RecoveryReport {
  std::size_t segments = 0;
  std::size_t segments_scanned = 0;      // read and verified whole; the others came from their index
  std::uint64_t next_sequence = kFirstSequence;
  std::uint64_t truncated_bytes = 0;     // torn tail removed
  std::uint64_t dropped_records = 0;     // records past the last complete batch, or past damage
  std::string message;                   // one line, empty when nothing was repaired
  // Acknowledged events missing from the log, first..last, with the witness (Options::
  // accept_data_loss); empty when none are. A writer's open has it only when it was told to accept
  // the loss; a read-only open reports it and serves what there is.
  std::string data_loss;
  std::uint64_t lost_first = 0;
  std::uint64_t lost_last = 0;
};

// What the writer has done since open, for metrics (Journal::stats). A read-only journal's are 0.
struct Stats {
  std::uint64_t appends = 0;         // batches
  std::uint64_t records = 0;
  std::uint64_t bytes = 0;           // as written: headers and padding included
  std::uint64_t syncs = 0;           // fdatasyncs completed
  HistogramSnapshot sync_ns;         // each fdatasync, from queued to completed
  HistogramSnapshot group_records;   // records each durable advance acknowledged: group commit's groups
  // Segments begun since open, by how they were made ready (Options::preparation): written full
  // of zeros, only allocated (or zero-filled in part), or made by the writer itself because the
  // preparation was not ready (or had failed).
  std::uint64_t segments_zero_filled = 0;
  std::uint64_t segments_allocated = 0;
  std::uint64_t segments_unprepared = 0;
};

class Journal {
 public:
  using Clock = std::chrono::steady_clock;

  // Opens (creating if needed) the journal in `directory`, recovering it first.
  static Result<std::unique_ptr<Journal>> open(const std::string& directory, const Options& options);
  // The same on a given I/O backend (tests use a fault-injecting one and keep it across a
  // simulated crash, hence shared).
  static Result<std::unique_ptr<Journal>> open(const std::string& directory, const Options& options,
                                               std::shared_ptr<IoBackend> io);
  // Opens `directory` read-only, for tools: no lock is taken and nothing is repaired or written,
  // so it works beside the process that writes the directory, and on a damaged one (the log then
  // ends before the first damage; inspect.h says what and where). Readers see the whole batches in
  // the files; while a writer holds the directory, only those it has acknowledged durable (it
  // tells readers in the LOCK file, format.h), so a tool never shows what a power cut could still
  // take back. A tailing reader (Reader::next with a deadline) polls for more. append and remove_segments_before
  // fail with invalid_argument.
  static Result<std::unique_ptr<Journal>> open_read_only(const std::string& directory, const Options& options);
  // The same on a given I/O backend.
  static Result<std::unique_ptr<Journal>> open_read_only(const std::string& directory, const Options& options,
                                                         std::shared_ptr<IoBackend> io);

  virtual ~Journal() = default;
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // Appends `records` as one atomic batch. Thread-safe; does not wait for the disk. Fails with
  // invalid_argument for an empty batch or a record over record_bytes_max, no_space after the
  // disk filled, failed after a fatal I/O error.
  virtual Result<Receipt> append(std::span<const RecordInput> records) = 0;
  // Waits until `sequence` is durable. Returns the journal's error if it failed first,
  // ErrorCode::timed_out if the deadline passed (not a failure: the journal carries on and the
  // caller may wait again), and ErrorCode::failed if the journal was closed before `sequence`
  // became durable (it never will).
  virtual Status wait_durable(std::uint64_t sequence, Clock::time_point deadline) = 0;
  // The highest sequence acknowledged durable (0: none). Never decreases.
  [[nodiscard]] virtual std::uint64_t durable_sequence() const = 0;
  [[nodiscard]] virtual std::uint64_t last_sequence() const = 0;  // highest appended

  // Reads up to `max_records` durable records from `from`, verifying each checksum; fewer when
  // fewer are durable. not_found if `from` was removed by retention. Copies every payload: for
  // more than a few records, iterate with a Reader instead.
  Result<std::vector<Record>> read(std::uint64_t from, std::size_t max_records);

  // A Reader of the durable records from `from` on (reader.h). Thread-safe; each reader belongs
  // to one thread. The journal must outlive its readers. not_found if `from` was removed by
  // retention; a `from` beyond the log is fine (the reader waits for it). `chunk_bytes` (0: the
  // journal's read_chunk_bytes) sizes its reads: large to scan, small to jump from record to record.
  virtual Result<std::unique_ptr<Reader>> reader(std::uint64_t from, std::size_t chunk_bytes) = 0;
  Result<std::unique_ptr<Reader>> reader(std::uint64_t from);
  // Where `sequence` lies, for readers: a snapshot taken under the journal's lock. not_found if no
  // segment holds it any more (removed by retention); a sequence past the last written record
  // gets the last segment. Thread-safe; O(log segments + log index entries).
  virtual Result<SegmentLocation> locate(std::uint64_t sequence) const = 0;

  // Removes whole segments whose records all lie below `sequence` (retention after a snapshot).
  virtual Status remove_segments_before(std::uint64_t sequence) = 0;

  [[nodiscard]] virtual const RecoveryReport& recovery() const = 0;
  // Whether appends are taken: ok, or why not (the error that stopped the writer, closed, a
  // read-only journal). For readiness probes; thread-safe.
  [[nodiscard]] virtual Status writable() const = 0;
  // Counters and histograms since open. Thread-safe, and cheap enough for every metrics scrape.
  [[nodiscard]] virtual Stats stats() const = 0;
  // Writes out and syncs what is staged, stops the writer, releases the directory lock.
  virtual Status close() = 0;

 protected:
  Journal() = default;
};

}  // namespace annal::journal
