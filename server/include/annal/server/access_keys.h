// API keys: who may read, write and administer what, from a keys file.
//
// A keys file holds one key a line (blank lines and lines starting with # are skipped):
//
//   # id      sha256(secret), 64 hex digits                             rights
//   shop      5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8 write:order- read:order-
//   reporting 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 read:*
//   ops       6b86b273ff34fce19d6b804eff5a3f5747ada4ea22f1d49c01e52ddb7875b4b7 admin read:*
//
// Rights: read:PREFIX and write:PREFIX cover the streams whose names start with PREFIX (read:* and
// write:* cover every stream, and only they cover the whole log: /all, a feed of every stream);
// admin covers the operator's routes (metrics, projections). A client sends
// `Authorization: Bearer ID.SECRET`. Only hashes are stored, so the file gives no one a secret;
// still it must be private to its owner (mode 0600 or stricter), or it is refused.
// `annal keygen ID RIGHT...` makes a secret and its line.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "annal/base/status.h"

namespace annal::server {

enum class Right { read, write, admin };

// What a request needs: a right, on a stream (read, write) or on every stream (`stream` empty and
// `every_stream`), or none at all (health checks).
struct Need {
  static Need on(Right right, std::string_view stream) { return {right, stream, false}; }
  static Need on_every_stream(Right right) { return {right, {}, true}; }
  static Need admin() { return {Right::admin, {}, false}; }

  Right right;
  std::string_view stream;
  bool every_stream;
};

enum class Verdict {
  allowed,
  unauthenticated,  // 401: no key, a malformed one, or a wrong secret
  forbidden,        // 403: a valid key without the right
};

class AccessKeys {
 public:
  using Digest = std::array<unsigned char, 32>;  // SHA-256

  // Reads and checks a keys file: its mode, and each line (the error names the line).
  static Result<AccessKeys> load(const std::string& path);
  // The same checks on lines in memory; errors name `source` and the line.
  static Result<AccessKeys> parse(std::string_view text, const std::string& source);

  // Whether the Authorization header's value grants `need`. Takes the same time whether the id
  // is known or not, and compares digests in constant time.
  [[nodiscard]] Verdict check(std::string_view authorization, const Need& need) const;

  [[nodiscard]] std::size_t size() const { return keys_.size(); }

  // SHA-256 of `secret`, as the file holds it (64 lowercase hex digits).
  [[nodiscard]] static std::string hash_hex(std::string_view secret);

 private:
  struct Grant {
    Right right;
    std::string prefix;  // "" with `every_stream` for read:* / write:*
    bool every_stream;
  };
  struct Key {
    std::string id;
    Digest digest;
    std::vector<Grant> grants;
  };
  [[nodiscard]] static bool grants(const Key& key, const Need& need);

  std::vector<Key> keys_;
};

}  // namespace annal::server
