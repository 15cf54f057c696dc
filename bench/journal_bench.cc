// Journal throughput and latency on this machine's disk, with the baselines a user would compare:
//
//   journal_raw_1MiB/pwrite_fdatasync   the physical baseline: 1 MiB pwrite + fdatasync in a loop
//   journal_raw_1MiB/odirect_uring_qd8  the device's ceiling: O_DIRECT writes of 1 MiB, 8 in flight
//                                       through io_uring, no fsync (what the disk takes at best)
//   journal_raw_1MiB/pwrite_fdatasync_slow_sync  the first, each fdatasync made 1 ms slower
//   journal_saturate_256B/annal_slow_sync  journal_saturate_256B/annal, each fdatasync 1 ms slower
//                                       (SlowSyncBackend): a disk whose syncs are slow
//   journal_raw_4KiB/pwrite_fdatasync   the durable latency baseline: a 4 KiB overwrite of blocks
//                                       written and synced beforehand + fdatasync, one thread;
//                                       syncs/s and latency percentiles
//   journal_saturate_256B/annal         the journal under saturating load, group commit
//   journal_saturate_256B/annal_encrypted  the same, each record sealed as Options::encryption
//                                       seals it (engine/src/store_cipher.h: AES-256-GCM)
//   journal_saturate_256B/annal_unchained  the same without the hash chain (Options::hash_chain)
//   journal_saturate_256B/annal_direct_io[_unchained]  with Options::direct_io [and no chain]
//   journal_append_<size>/<mode>        64 B, 256 B, 1 KiB events in each durability mode
//   journal_replay/{annal,annal_cold}   read and verify a whole journal (page cache / disk)
//   journal_replay/annal_encrypted      the same from the page cache, each record opened
//   journal_replay/annal_encrypted_cold the same from disk (a recovery after a reboot)
//   journal_durable_8w/{annal,annal_posix,rocksdb,sqlite}
//                                       8 threads, each appending one 256-byte event and waiting
//                                       until it is durable, then the next; events/s and
//                                       append-to-durable latency percentiles
//
// bytes_per_second counts bytes written to the file (record headers included); payload_MBps
// counts event payloads only. Data lives under ANNAL_BENCH_DIR (default: the system temp
// directory), which must be on the disk being measured (not tmpfs).
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <liburing.h>
#include <rocksdb/db.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "annal/journal/journal.h"
#include "annal/journal/reader.h"
#include "forwarding_backend.h"
#include "uring_backend.h"
#include "bench_support.h"

namespace aj = annal::journal;
namespace fs = std::filesystem;

namespace {

using annal::bench::BM_Durable8wAnnal;
using annal::bench::engine_cipher;
using annal::bench::kEventBytes;
using annal::bench::mode_name;
using annal::bench::record_of;
using annal::bench::kWriters;
using annal::bench::report_latency;
using annal::bench::run_saturating;
using annal::bench::run_writers;
using annal::bench::ScratchDir;

// What SlowSyncBackend adds to every fdatasync, and the slow raw baseline after each of its own.
constexpr auto kSlowSyncDelay = std::chrono::milliseconds(1);

// Makes every fdatasync `delay` slower, for a disk with slow syncs on this one (issue 18: on
// 2026-12-02 this machine kind took 400 us for a 4 KiB one, 4x today's). The io_uring backend runs
// the journal's group-commit syncs on the writer thread and reports them from reap(): the delay
// goes there, where the writer would wait for the device.
class SlowSyncBackend final : public aj::test::ForwardingBackend {
 public:
  SlowSyncBackend(std::shared_ptr<aj::IoBackend> inner, std::chrono::microseconds delay)
      : ForwardingBackend(std::move(inner)), delay_(delay) {}

  annal::Status sync(aj::FileId file) override {
    annal::Status synced = ForwardingBackend::sync(file);
    std::this_thread::sleep_for(delay_);
    return synced;
  }
  void queue_sync(aj::FileId file, std::uint64_t tag) override {
    queued_syncs_.push_back(tag);  // the writer thread's, as reap()
    ForwardingBackend::queue_sync(file, tag);
  }
  annal::Result<std::size_t> reap(std::span<aj::Completion> out, std::size_t min_complete) override {
    auto reaped = ForwardingBackend::reap(out, min_complete);
    if (!reaped.ok()) return reaped;
    for (const aj::Completion& completion : out.first(reaped.value())) {
      const auto queued = std::find(queued_syncs_.begin(), queued_syncs_.end(), completion.tag);
      if (queued == queued_syncs_.end()) continue;
      queued_syncs_.erase(queued);
      std::this_thread::sleep_for(delay_);
    }
    return reaped;
  }

 private:
  const std::chrono::microseconds delay_;
  std::vector<std::uint64_t> queued_syncs_;
};

void BM_RawPwriteFdatasync(benchmark::State& state, bool slow_sync) {
  ScratchDir dir("raw");
  const std::string path = dir.str() + "/raw.dat";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return state.SkipWithError("cannot create the file");
  const std::vector<char> block(1 << 20, 'x');
  off_t offset = 0;
  const auto started = std::chrono::steady_clock::now();
  for (auto _ : state) {
    if (::pwrite(fd, block.data(), block.size(), offset) != static_cast<ssize_t>(block.size()) ||
        ::fdatasync(fd) != 0) {
      state.SkipWithError("pwrite or fdatasync failed");
      break;
    }
    if (slow_sync) std::this_thread::sleep_for(kSlowSyncDelay);
    offset += static_cast<off_t>(block.size());
  }
  // Over wall time, as the journal rows count theirs (a rate over this thread's CPU time would
  // leave out the waits for the disk).
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  ::close(fd);
  state.counters["bytes_per_second"] = static_cast<double>(offset) / seconds;
}

// The device's ceiling for sequential writes: O_DIRECT (no page cache, no copy), 1 MiB each, 8 in
// flight through io_uring, cycling through a 256 MiB file allocated beforehand; no fsync (fio's
// rw=write, bs=1M, iodepth=8, direct=1). Each iteration is one write completed.
void BM_RawODirectUringQd8(benchmark::State& state) {
  constexpr std::size_t kWrite = 1 << 20, kInFlight = 8, kFileWrites = 256;
  ScratchDir dir("rawdirect");
  const std::string path = dir.str() + "/raw.dat";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_DIRECT, 0644);
  if (fd < 0) return state.SkipWithError("cannot create the file with O_DIRECT (tmpfs has none)");
  if (::posix_fallocate(fd, 0, static_cast<off_t>(kWrite * kFileWrites)) != 0) {
    ::close(fd);
    return state.SkipWithError("cannot allocate the file");
  }
  auto* buffer = static_cast<char*>(std::aligned_alloc(4096, kWrite));
  if (buffer == nullptr) {
    ::close(fd);
    return state.SkipWithError("out of memory");
  }
  std::fill(buffer, buffer + kWrite, 'x');
  io_uring ring;
  if (io_uring_queue_init(2 * kInFlight, &ring, 0) != 0) {
    std::free(buffer);
    ::close(fd);
    return state.SkipWithError("io_uring_queue_init failed");
  }
  std::size_t next = 0, in_flight = 0;
  const auto queue_write = [&] {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    io_uring_prep_write(sqe, fd, buffer, kWrite, (next++ % kFileWrites) * kWrite);
    ++in_flight;
  };
  bool failed = false;
  const auto reap_one = [&] {
    io_uring_cqe* cqe = nullptr;
    int rc = 0;
    do {
      rc = io_uring_wait_cqe(&ring, &cqe);
    } while (rc == -EINTR);
    if (rc != 0 || cqe == nullptr) {  // the ring itself failed: the writes' fate is unknown
      std::fprintf(stderr, "journal_raw_1MiB/odirect_uring_qd8: io_uring_wait_cqe: %d\n", rc);
      std::abort();  // never free the buffer under writes in flight
    }
    failed = failed || cqe->res != static_cast<int>(kWrite);
    io_uring_cqe_seen(&ring, cqe);
    --in_flight;
  };
  while (in_flight < kInFlight) queue_write();
  io_uring_submit(&ring);
  for (auto _ : state) {
    reap_one();
    if (failed) {
      state.SkipWithError("a direct write failed");
      break;
    }
    queue_write();
    io_uring_submit(&ring);
  }
  while (in_flight > 0) reap_one();  // not counted
  io_uring_queue_exit(&ring);
  std::free(buffer);
  ::close(fd);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(kWrite));
  state.SetLabel("O_DIRECT, 1 MiB writes, 8 in flight, io_uring, no fsync");
}

// What one durable write costs the device at its best: no allocation, no metadata (the blocks
// exist and are synced before timing, as the journal's prepared segments are), 4 KiB a sync.
void BM_Raw4KiBFdatasync(benchmark::State& state) {
  constexpr std::size_t kBlock = 4096, kBlocks = 4096;  // 16 MiB, overwritten in turn
  ScratchDir dir("raw4k");
  const std::string path = dir.str() + "/raw.dat";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return state.SkipWithError("cannot create the file");
  const std::vector<char> block(kBlock, 'x');
  for (std::size_t i = 0; i < kBlocks; ++i) {
    if (::pwrite(fd, block.data(), kBlock, static_cast<off_t>(i * kBlock)) != static_cast<ssize_t>(kBlock)) {
      ::close(fd);
      return state.SkipWithError("cannot prepare the file");
    }
  }
  if (::fsync(fd) != 0) {
    ::close(fd);
    return state.SkipWithError("cannot sync the file");
  }
  std::vector<double> latencies_us;
  std::size_t next = 0;
  for (auto _ : state) {
    const auto started = std::chrono::steady_clock::now();
    if (::pwrite(fd, block.data(), kBlock, static_cast<off_t>(next * kBlock)) != static_cast<ssize_t>(kBlock) ||
        ::fdatasync(fd) != 0) {
      state.SkipWithError("pwrite or fdatasync failed");
      break;
    }
    latencies_us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - started).count());
    next = (next + 1) % kBlocks;
  }
  ::close(fd);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kBlock));
  report_latency(state, latencies_us);
}

// Replay: a journal of kReplayEvents 256-byte events is written once; each iteration reads it all
// back through a Reader, every record's checksum and sequence verified. `cold` first drops the
// segment files from the page cache (POSIX_FADV_DONTNEED), so the reads come from the disk.
constexpr std::uint64_t kReplayEvents = 2'000'000;

void BM_Replay(benchmark::State& state, bool cold, bool encrypted) {
  ScratchDir dir(cold ? "replay-cold" : "replay");
  const std::shared_ptr<aj::RecordCipher> cipher = encrypted ? engine_cipher(dir.str()) : nullptr;
  if (encrypted && !cipher) return state.SkipWithError("no cipher");
  {
    auto journal = aj::Journal::open(dir.str(), {.durability = aj::Durability::none, .cipher = cipher});
    if (!journal.ok()) return state.SkipWithError(journal.status().to_string().c_str());
    const std::vector<std::byte> payload(kEventBytes, std::byte{0x5A});
    const std::vector<aj::RecordInput> batch(64, record_of(payload, encrypted));
    for (std::uint64_t written = 0; written < kReplayEvents; written += batch.size()) {
      if (!journal.value()->append(batch).ok()) return state.SkipWithError("append failed");
    }
    if (!journal.value()->close().ok()) return state.SkipWithError("close failed");
  }
  auto journal = aj::Journal::open(dir.str(), {.cipher = cipher});
  if (!journal.ok()) return state.SkipWithError(journal.status().to_string().c_str());
  std::uint64_t bytes = 0, events = 0;
  for (auto _ : state) {
    if (cold) {
      state.PauseTiming();
      for (const auto& entry : fs::directory_iterator(dir.str())) {
        const int fd = ::open(entry.path().c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        ::close(fd);
      }
      state.ResumeTiming();
    }
    auto reader = journal.value()->reader(aj::kFirstSequence);
    if (!reader.ok()) return state.SkipWithError(reader.status().to_string().c_str());
    for (;;) {
      const auto record = reader.value()->next();
      if (!record.ok()) return state.SkipWithError(record.status().to_string().c_str());
      if (!record.value()) break;
      bytes += aj::padded_record_bytes(record.value()->payload.size());
      ++events;
    }
    if (reader.value()->position() != kReplayEvents + 1) return state.SkipWithError("replay came up short");
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
  state.SetItemsProcessed(static_cast<std::int64_t>(events));
  state.SetLabel(std::string(cold ? "from disk" : "from the page cache") + ", checksums verified, " +
                 (encrypted ? "each opened (AES-256-GCM), " : "") + std::to_string(kReplayEvents) + " x 256 B events");
}

void BM_Durable8wRocksDb(benchmark::State& state) {
  ScratchDir dir("rocksdb8w");
  rocksdb::Options options;
  options.create_if_missing = true;
  rocksdb::DB* raw = nullptr;
  if (!rocksdb::DB::Open(options, dir.str(), &raw).ok()) return state.SkipWithError("cannot open RocksDB");
  std::unique_ptr<rocksdb::DB> db(raw);
  rocksdb::WriteOptions write;
  write.sync = true;  // the WAL is fsynced before Put returns (RocksDB groups concurrent writers)
  const std::string value(kEventBytes, 'Z');
  run_writers(state, kWriters, [&](int t, std::uint64_t i) {
    const std::string key = std::to_string(t) + "/" + std::to_string(i);
    return db->Put(write, key, value).ok();
  });
  state.SetLabel("WriteOptions.sync=true");
}

void BM_Durable8wSqlite(benchmark::State& state) {
  ScratchDir dir("sqlite8w");
  const std::string path = dir.str() + "/events.db";
  std::vector<sqlite3*> connections(kWriters, nullptr);
  std::vector<sqlite3_stmt*> inserts(kWriters, nullptr);
  for (int t = 0; t < kWriters; ++t) {
    if (sqlite3_open(path.c_str(), &connections[t]) != SQLITE_OK) return state.SkipWithError("cannot open SQLite");
    sqlite3_busy_timeout(connections[t], 60000);
    sqlite3_exec(connections[t], "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", nullptr, nullptr, nullptr);
    if (t == 0) {
      sqlite3_exec(connections[t], "CREATE TABLE IF NOT EXISTS events (stream INTEGER, version INTEGER, data BLOB)",
                   nullptr, nullptr, nullptr);
    }
    sqlite3_prepare_v2(connections[t], "INSERT INTO events VALUES (?, ?, ?)", -1, &inserts[t], nullptr);
  }
  const std::vector<char> value(kEventBytes, 'Z');
  run_writers(state, kWriters, [&](int t, std::uint64_t i) {
    sqlite3_stmt* insert = inserts[static_cast<std::size_t>(t)];
    sqlite3_bind_int64(insert, 1, t);
    sqlite3_bind_int64(insert, 2, static_cast<sqlite3_int64>(i));
    sqlite3_bind_blob(insert, 3, value.data(), static_cast<int>(value.size()), SQLITE_STATIC);
    const int rc = sqlite3_step(insert);  // autocommit: one transaction, one WAL sync, per event
    sqlite3_reset(insert);
    return rc == SQLITE_DONE;
  });
  for (int t = 0; t < kWriters; ++t) {
    sqlite3_finalize(inserts[t]);
    sqlite3_close(connections[t]);
  }
  state.SetLabel("WAL, synchronous=FULL, one transaction per event");
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::RegisterBenchmark("journal_raw_1MiB/pwrite_fdatasync", BM_RawPwriteFdatasync, false)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("journal_raw_1MiB/pwrite_fdatasync_slow_sync", BM_RawPwriteFdatasync, true)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("journal_raw_1MiB/odirect_uring_qd8", BM_RawODirectUringQd8)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark("journal_raw_4KiB/pwrite_fdatasync", BM_Raw4KiBFdatasync)
      ->Unit(benchmark::kMicrosecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark("journal_saturate_256B/annal", [](benchmark::State& state) {
    run_saturating(state, kEventBytes, {});
  })->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("journal_saturate_256B/annal_encrypted", [](benchmark::State& state) {
    run_saturating(state, kEventBytes, {}, /*encrypted=*/true);
  })->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("journal_saturate_256B/annal_unchained", [](benchmark::State& state) {
    run_saturating(state, kEventBytes, {.hash_chain = false});
  })->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("journal_saturate_256B/annal_direct_io", [](benchmark::State& state) {
    run_saturating(state, kEventBytes, {.direct_io = true});
  })->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("journal_saturate_256B/annal_direct_io_unchained", [](benchmark::State& state) {
    run_saturating(state, kEventBytes, {.direct_io = true, .hash_chain = false});
  })->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("journal_saturate_256B/annal_slow_sync", [](benchmark::State& state) {
    auto uring = aj::UringBackend::create();
    if (!uring.ok()) return state.SkipWithError(uring.status().to_string().c_str());
    run_saturating(state, kEventBytes, {}, false,
                   std::make_shared<SlowSyncBackend>(std::move(uring).value(), kSlowSyncDelay));
  })->Unit(benchmark::kMillisecond);
  for (const std::size_t bytes : {64, 256, 1024}) {
    for (const aj::Durability mode : {aj::Durability::none, aj::Durability::group_commit, aj::Durability::interval}) {
      const std::string size = bytes == 1024 ? "1KiB" : std::to_string(bytes) + "B";
      benchmark::RegisterBenchmark(("journal_append_" + size + "/" + mode_name(mode)).c_str(),
                                   [bytes, mode](benchmark::State& state) {
                                     run_saturating(state, bytes, {.durability = mode});
                                   })
          ->Unit(benchmark::kMillisecond);
    }
  }
  benchmark::RegisterBenchmark("journal_replay/annal", BM_Replay, false, false)->Unit(benchmark::kMillisecond)->UseRealTime();
  benchmark::RegisterBenchmark("journal_replay/annal_encrypted", BM_Replay, false, true)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark("journal_replay/annal_cold", BM_Replay, true, false)->Unit(benchmark::kMillisecond)->UseRealTime();
  benchmark::RegisterBenchmark("journal_replay/annal_encrypted_cold", BM_Replay, true, true)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark("journal_durable_8w/annal", BM_Durable8wAnnal, aj::IoKind::io_uring)
      ->Unit(benchmark::kMillisecond);
  // The same journal on the synchronous POSIX backend (pwrite + fdatasync on the writer thread):
  // what io_uring's asynchronous writes gain or cost at this load (both sync on the writer thread).
  benchmark::RegisterBenchmark("journal_durable_8w/annal_posix", BM_Durable8wAnnal, aj::IoKind::posix)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("journal_durable_8w/rocksdb", BM_Durable8wRocksDb)->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("journal_durable_8w/sqlite", BM_Durable8wSqlite)->Unit(benchmark::kMillisecond);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
