#include "data_loss.h"

#include <algorithm>
#include <array>
#include <ctime>

#include "annal/base/wall_clock.h"
#include "recovery.h"

namespace annal::journal {

Result<LockWords> read_lock_words(IoBackend& io, FileId lock) {
  std::array<std::byte, 2 * kLockWordBytes> bytes{};
  const auto got = io.read(lock, 0, bytes);
  if (!got.ok()) return got.status();
  const auto read = std::span<const std::byte>(bytes).first(got.value());
  LockWords words;
  // Under Durability::none the notice only says what was written: a power cut may take it back.
  if (const auto notice = decode_durable_notice(read); notice && notice->synced) words.durable = notice->sequence;
  if (read.size() > kRetentionFloorOffset) words.kept_from = decode_retention_floor(read.subspan(kRetentionFloorOffset));
  return words;
}

Result<LockWords> read_lock_words(IoBackend& io, const std::string& directory) {
  const auto lock = io.open(join_path(directory, std::string(kLockFileName)), OpenMode::read_only);
  if (!lock.ok()) {
    if (lock.status().code() == ErrorCode::not_found) return LockWords{};
    return lock.status();
  }
  auto words = read_lock_words(io, lock.value());
  (void)io.close(lock.value());
  return words;
}

std::optional<DataLoss> find_data_loss(const std::string& directory, std::uint64_t first_base, std::uint64_t last,
                                       const LockWords& words, const std::optional<DurableWitness>& witness) {
  const auto number = [](std::uint64_t n) { return std::to_string(n); };
  std::optional<DataLoss> loss;
  // Segments before the first were removed, and retention moves the floor before it removes any.
  if (words.kept_from && first_base > *words.kept_from) {
    loss = DataLoss{*words.kept_from, first_base - 1,
                    "events " + number(*words.kept_from) + ".." + number(first_base - 1) +
                        " are missing: LOCK's retention floor says the log keeps everything from " +
                        number(*words.kept_from) + ", but its first segment starts at " + number(first_base) +
                        " (a segment was removed by hand, not by retention)"};
  }
  // What retention removed is not missing, even from a log with no segment left.
  const std::uint64_t first = std::max(last + 1, words.kept_from.value_or(0));
  std::uint64_t reached = 0;
  std::string witnesses;
  const auto consider = [&](std::uint64_t sequence, const std::string& what) {
    if (sequence < first) return;
    reached = std::max(reached, sequence);
    witnesses += (witnesses.empty() ? "" : "; ") + what + " says " + number(sequence) + " was durable";
  };
  if (words.durable) consider(*words.durable, "LOCK's durable notice");
  if (witness) consider(witness->sequence, witness->what);
  if (reached != 0) {
    const std::string tail = "acknowledged events " + number(first) + ".." + number(reached) +
                             " are missing: the log ends at " + number(last) + ", but " + witnesses +
                             " (the newest segment was deleted or cut short, or the disk lost written data)";
    loss = loss ? DataLoss{loss->first, reached, loss->what + "; and " + tail} : DataLoss{first, reached, tail};
  }
  if (loss) loss->what = "journal " + directory + ": " + loss->what;
  return loss;
}

Status write_retention_floor(IoBackend& io, FileId lock, std::uint64_t first_kept) {
  std::array<std::byte, kLockWordBytes> word{};
  encode_retention_floor(first_kept, word);
  if (Status written = io.write(lock, kRetentionFloorOffset, word); !written.ok()) return written;
  return io.sync(lock);
}

Status leave_data_loss_note(IoBackend& io, const std::string& directory, const DataLoss& loss,
                            std::uint64_t continues_at) {
  const std::string name = "data-loss-" + std::to_string(loss.first) + "-" + std::to_string(loss.last) + ".txt";
  const std::string path = join_path(directory, name);
  const std::time_t now = static_cast<std::time_t>(wall_clock_ns() / 1'000'000'000);
  std::array<char, 32> when{};
  std::tm utc{};
  std::strftime(when.data(), when.size(), "%Y-%m-%d %H:%M:%S UTC", gmtime_r(&now, &utc));
  const bool reused = continues_at <= loss.last;
  const std::string text =
      loss.what + "\nOpened with accept_data_loss at " + when.data() + "; the log continues at " +
      std::to_string(continues_at) +
      (reused ? ", so sequences " + std::to_string(continues_at) + ".." + std::to_string(loss.last) +
                    " now name other events than those that were lost.\n"
              : ": no lost sequence is given to another event.\n");
  (void)io.remove(path);  // an earlier note of the same range, if this is the second open that accepts it
  const auto file = io.open(path, OpenMode::create_exclusive);
  if (!file.ok()) return file.status();
  Status status = io.write(file.value(), 0, std::as_bytes(std::span(text)));
  if (status.ok()) status = io.sync(file.value());
  (void)io.close(file.value());
  if (!status.ok()) return status;
  return io.sync_directory(directory);
}

}  // namespace annal::journal
