// SHA-256 and HMAC-SHA256, for the journal's hash chain (docs/security.md, Tamper evidence): a
// digest of each segment's records, linked to the one before, and optionally a tag under a key an
// attacker who can write the disk does not have.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>

using EVP_MD_CTX = struct evp_md_ctx_st;  // OpenSSL's, kept out of this header

namespace annal::crypto {

inline constexpr std::size_t kDigestBytes = 32;
using Digest = std::array<std::byte, kDigestBytes>;

// SHA-256 over bytes given in pieces. One object per thread; reusable after finish().
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void update(std::span<const std::byte> bytes) noexcept;
  // The digest of everything given since construction or the last finish(); starts over.
  [[nodiscard]] Digest finish() noexcept;

 private:
  EVP_MD_CTX* ctx_;
};

// HMAC-SHA256(key, message). Fails only if OpenSSL cannot work at all: the process stops then.
[[nodiscard]] Digest hmac_sha256(std::span<const std::byte> key, std::span<const std::byte> message) noexcept;

// Constant time (CRYPTO_memcmp), for tags.
[[nodiscard]] bool equal_digests(const Digest& a, const Digest& b) noexcept;

// 64 lowercase hex digits, and back (either case); nullopt for anything else.
[[nodiscard]] std::string to_hex(const Digest& digest);
[[nodiscard]] std::optional<Digest> digest_from_hex(std::string_view text) noexcept;

}  // namespace annal::crypto
