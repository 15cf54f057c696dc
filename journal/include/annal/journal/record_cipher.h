// Encryption at rest, as the journal sees it. Given a RecordCipher (Options::cipher), the journal
// hands each record's payload to it as the record is appended and stores what it returns, flagged
// kFlagSealed; a Reader hands sealed payloads to an opener before returning them. The journal knows
// nothing of keys, nonces or algorithms: the engine supplies the cipher (docs/security.md).
//
// What a cipher must do: seal so that open() authenticates the payload together with the record's
// header fields (`associated`, format.h's associated_data: sequence, stream, version, timestamp,
// type, flags), so that a record altered, moved or retyped fails to open even with its checksum
// redone. The sealed form may be larger than the plain one by exactly overhead() bytes.
//
// What stays in clear: the record header (format.h). The checksum covers the sealed bytes, so
// recovery, `annal verify` and the checksum need no key; only reading payloads does.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <span>

#include "annal/base/status.h"
#include "annal/journal/format.h"

namespace annal::journal {

// Opens sealed payloads for one reader. Not thread-safe: each Reader makes its own (a cipher's
// per-key state, such as an initialised AES context, is not safe to share).
class RecordOpener {
 public:
  virtual ~RecordOpener() = default;
  // Writes the plain payload of the record with `header` into `out` (sealed.size() - overhead()
  // bytes). ErrorCode::corruption when it does not authenticate (a wrong key, altered bytes, a
  // moved record); not_found when the key it needs is gone; `out` then holds nothing usable.
  [[nodiscard]] virtual Status open(const RecordHeader& header, std::span<const std::byte> associated,
                                    std::span<const std::byte> sealed, std::span<std::byte> out) = 0;
  // Whether a record stored in clear (no kFlagSealed) may be returned. Someone editing the files
  // can clear the flag, write bytes of their own and redo the checksum: nothing authenticates
  // such a record, so only the opener can tell, from what it knows (from which sequence on the
  // store was sealed), whether the store itself could have written it. ErrorCode::corruption if
  // not. Records from before encryption was turned on are legitimate.
  [[nodiscard]] virtual Status check_plain(const RecordHeader& header) = 0;
  // Asked when open() fails: whether the record's key was destroyed on purpose (its stream erased,
  // crypto-shredding), rather than missing or wrong. If so, writes the part of the record that
  // stays in clear (the cipher's own layout says which) to the start of `out` and returns its
  // size: the reader then returns the record flagged erased, that part as its payload. nullopt
  // (the default): open()'s error stands.
  [[nodiscard]] virtual std::optional<std::size_t> erased(const RecordHeader& header, std::span<const std::byte> sealed,
                                                          std::span<std::byte> out) {
    (void)header, (void)sealed, (void)out;
    return std::nullopt;
  }
};

class RecordCipher {
 public:
  virtual ~RecordCipher() = default;
  // How many bytes a sealed payload has beyond the plain one. Constant for the cipher's life.
  [[nodiscard]] virtual std::size_t overhead() const noexcept = 0;
  // Seals `prefix` then `payload` (one plain payload in two parts: RecordInput) into `out`, which
  // is their size plus overhead(). Called by the appending thread under the journal's append lock,
  // one record at a time, in sequence order. It cannot fail: whatever it needs (a stream's key) is
  // made ready before the append, by whoever appends; an impossible failure stops the process.
  virtual void seal(const RecordHeader& header, std::span<const std::byte> associated,
                    std::span<const std::byte> prefix, std::span<const std::byte> payload,
                    std::span<std::byte> out) = 0;
  // An opener for one reader's thread. Any thread.
  [[nodiscard]] virtual std::unique_ptr<RecordOpener> opener() const = 0;
};

}  // namespace annal::journal
