// A journal test's record cipher: the smallest real one, AES-256-GCM under one key (the engine's
// keys are per stream, engine/src/store_cipher.h). Sealed payload = open_salt (u32) || ciphertext
// || tag; nonce = sequence (u64) || open_salt, the salt drawn at each open, so a sequence written
// again after a torn tail is sealed under another nonce.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "annal/base/little_endian.h"
#include "annal/crypto/aead.h"
#include "annal/crypto/key.h"
#include "annal/journal/record_cipher.h"

namespace annal::journal {

inline constexpr std::size_t kSaltBytes = 4;

inline std::array<std::byte, crypto::kNonceBytes> nonce_for(std::uint64_t sequence, std::span<const std::byte> salt) {
  std::array<std::byte, crypto::kNonceBytes> nonce{};
  store_le<std::uint64_t>(nonce, 0, sequence);
  std::copy(salt.begin(), salt.end(), nonce.begin() + 8);
  return nonce;
}

// The tests' master key: fixed, so that a child process and its parent, or a journal and its
// reopening, seal and open alike.
inline crypto::Key test_key() {
  std::array<std::byte, crypto::kKeyBytes> key{};
  for (std::size_t i = 0; i < key.size(); ++i) key[i] = static_cast<std::byte>(i * 7 + 1);
  return crypto::Key(key);
}

// Stream 0 stands for no stream: nothing erased.
class TestOpener final : public RecordOpener {
 public:
  TestOpener(const crypto::Key& key, std::uint64_t sealed_from, std::uint64_t erased_stream)
      : aead_(crypto::Aes256Gcm::make(key)), sealed_from_(sealed_from), erased_stream_(erased_stream) {}
  Status open(const RecordHeader& header, std::span<const std::byte> associated, std::span<const std::byte> sealed,
              std::span<std::byte> out) override {
    if (erased_stream_ != 0 && header.stream_id == erased_stream_) return Status(ErrorCode::not_found, "key destroyed");
    const auto nonce = nonce_for(header.sequence, sealed.first(kSaltBytes));
    return aead_.open(nonce, associated, sealed.subspan(kSaltBytes), out);
  }
  // Its salt, as the part an erased record leaves in clear.
  std::optional<std::size_t> erased(const RecordHeader& header, std::span<const std::byte> sealed,
                                    std::span<std::byte> out) override {
    if (erased_stream_ == 0 || header.stream_id != erased_stream_) return std::nullopt;
    std::copy_n(sealed.begin(), kSaltBytes, out.begin());
    return kSaltBytes;
  }
  Status check_plain(const RecordHeader& header) override {
    if (header.sequence < sealed_from_) return {};
    return Status(ErrorCode::corruption, "sealed from sequence " + std::to_string(sealed_from_));
  }

 private:
  crypto::Aes256Gcm aead_;
  std::uint64_t sealed_from_;
  std::uint64_t erased_stream_;
};

class TestCipher final : public RecordCipher {
 public:
  // `sealed_from`: the first sequence it sealed (the engine keeps it, authenticated, with its keys).
  TestCipher(crypto::Key key, std::uint64_t sealed_from, std::uint64_t erased_stream = 0)
      : key_(std::move(key)),
        aead_(crypto::Aes256Gcm::make(key_)),
        salt_(crypto::Key::random().value()),
        sealed_from_(sealed_from),
        erased_stream_(erased_stream) {}
  std::size_t overhead() const noexcept override { return kSaltBytes + crypto::kTagBytes; }
  void seal(const RecordHeader& header, std::span<const std::byte> associated, std::span<const std::byte> prefix,
            std::span<const std::byte> payload, std::span<std::byte> out) override {
    ASSERT_EQ(out.size(), prefix.size() + payload.size() + overhead());
    const auto salt = salt_.bytes().first(kSaltBytes);
    std::copy(salt.begin(), salt.end(), out.begin());
    // In place: the plain bytes go where the ciphertext will be, and are sealed over.
    const std::span<std::byte> body = out.subspan(kSaltBytes, prefix.size() + payload.size());
    std::copy(prefix.begin(), prefix.end(), body.begin());
    std::copy(payload.begin(), payload.end(), body.begin() + static_cast<std::ptrdiff_t>(prefix.size()));
    aead_.seal(nonce_for(header.sequence, salt), associated, body, out.subspan(kSaltBytes));
  }
  std::unique_ptr<RecordOpener> opener() const override {
    return std::make_unique<TestOpener>(key_, sealed_from_, erased_stream_);
  }

 private:
  crypto::Key key_;
  crypto::Aes256Gcm aead_;
  crypto::Key salt_;  // random bytes, of which the first four are this open's salt
  std::uint64_t sealed_from_;
  std::uint64_t erased_stream_;  // its records' key destroyed (0: none)
};

}  // namespace annal::journal
