#include "annal/server/access_keys.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sys/stat.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>

namespace annal::server {
namespace {

constexpr std::size_t kKeysMax = 10'000;
constexpr std::size_t kIdBytesMax = 64;

AccessKeys::Digest sha256(std::string_view text) {
  AccessKeys::Digest digest{};
  unsigned int length = 0;
  // EVP_Digest with EVP_sha256: OpenSSL's one-shot hash; it fails only if OpenSSL cannot allocate.
  if (EVP_Digest(text.data(), text.size(), digest.data(), &length, EVP_sha256(), nullptr) != 1 || length != digest.size()) {
    std::abort();
  }
  return digest;
}

std::optional<AccessKeys::Digest> parse_hex(std::string_view hex) {
  AccessKeys::Digest digest{};
  if (hex.size() != digest.size() * 2) return std::nullopt;
  for (std::size_t i = 0; i < digest.size(); ++i) {
    unsigned value = 0;
    for (const char c : hex.substr(i * 2, 2)) {
      value <<= 4;
      if (c >= '0' && c <= '9') {
        value |= static_cast<unsigned>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        value |= static_cast<unsigned>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        value |= static_cast<unsigned>(c - 'A' + 10);
      } else {
        return std::nullopt;
      }
    }
    digest[i] = static_cast<unsigned char>(value);
  }
  return digest;
}

bool valid_id(std::string_view id) {
  if (id.empty() || id.size() > kIdBytesMax) return false;
  for (const char c : id) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_')) return false;
  }
  return true;
}

}  // namespace

std::string AccessKeys::hash_hex(std::string_view secret) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex;
  for (const unsigned char byte : sha256(secret)) {
    hex += kDigits[byte >> 4];
    hex += kDigits[byte & 15];
  }
  return hex;
}

Result<AccessKeys> AccessKeys::load(const std::string& path) {
  struct stat info {};
  if (stat(path.c_str(), &info) != 0) {
    return Status(ErrorCode::not_found, "keys file " + path + ": " + std::strerror(errno));
  }
  if ((info.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%03o", static_cast<unsigned>(info.st_mode & 0777));
    return Status(ErrorCode::invalid_argument, "keys file " + path + " has mode " + mode +
                                                   ": others may read it; make it private with chmod 600 " + path);
  }
  std::ifstream file(path);
  std::stringstream text;
  if (!file || !(text << file.rdbuf()) || file.bad()) return Status(ErrorCode::io_error, "keys file " + path + ": cannot be read");
  auto keys = parse(text.str(), path);
  if (keys.ok() && keys.value().keys_.empty()) return Status(ErrorCode::invalid_argument, "keys file " + path + " holds no key");
  return keys;
}

Result<AccessKeys> AccessKeys::parse(std::string_view text, const std::string& source) {
  AccessKeys keys;
  std::istringstream lines{std::string(text)};
  std::string line;
  for (std::size_t number = 1; std::getline(lines, line); ++number) {
    const auto bad = [&](const std::string& what) {
      return Status(ErrorCode::invalid_argument, source + ":" + std::to_string(number) + ": " + what +
                                                     " (expected: ID SHA256-HEX RIGHT..., rights read:PREFIX, "
                                                     "write:PREFIX, read:*, write:*, admin)");
    };
    std::istringstream words(line);
    std::string id;
    std::string hex;
    if (!(words >> id) || id.starts_with('#')) continue;
    if (!valid_id(id)) return bad("key id '" + id + "' is not 1 to 64 of A-Z a-z 0-9 - _");
    for (const Key& key : keys.keys_) {
      if (key.id == id) return bad("key id '" + id + "' is given twice");
    }
    words >> hex;
    const auto digest = parse_hex(hex);
    if (!digest) return bad("the hash of key '" + id + "' is not 64 hex digits");
    Key key{id, *digest, {}};
    for (std::string right; words >> right;) {
      if (right == "admin") {
        key.grants.push_back({Right::admin, "", false});
        continue;
      }
      const std::size_t colon = right.find(':');
      const std::string kind = right.substr(0, colon);
      const std::string prefix = colon == std::string::npos ? "" : right.substr(colon + 1);
      if ((kind != "read" && kind != "write") || prefix.empty()) return bad("right '" + right + "' is not known");
      key.grants.push_back({kind == "read" ? Right::read : Right::write, prefix == "*" ? "" : prefix, prefix == "*"});
    }
    if (key.grants.empty()) return bad("key '" + id + "' has no rights");
    if (keys.keys_.size() == kKeysMax) return bad("more than " + std::to_string(kKeysMax) + " keys");
    keys.keys_.push_back(std::move(key));
  }
  return keys;
}

bool AccessKeys::grants(const Key& key, const Need& need) {
  for (const Grant& grant : key.grants) {
    if (grant.right != need.right) continue;
    if (need.right == Right::admin || grant.every_stream) return true;
    if (!need.every_stream && need.stream.starts_with(grant.prefix)) return true;
  }
  return false;
}

Verdict AccessKeys::check(std::string_view authorization, const Need& need) const {
  constexpr std::string_view kScheme = "Bearer ";
  if (!authorization.starts_with(kScheme)) return Verdict::unauthenticated;
  const std::string_view token = authorization.substr(kScheme.size());
  const std::size_t dot = token.find('.');
  if (dot == std::string_view::npos) return Verdict::unauthenticated;
  const std::string_view id = token.substr(0, dot);
  // Hashed and compared whether the id is known or not: the time taken does not tell which ids
  // exist, nor how much of a secret was right (CRYPTO_memcmp takes the same time for any bytes).
  const Digest given = sha256(token.substr(dot + 1));
  const Key* found = nullptr;
  for (const Key& key : keys_) {
    if (key.id == id) found = &key;
  }
  static const Digest kNone{};
  const Digest& expected = found != nullptr ? found->digest : kNone;
  const bool matches = CRYPTO_memcmp(given.data(), expected.data(), given.size()) == 0;
  if (found == nullptr || !matches) return Verdict::unauthenticated;
  return grants(*found, need) ? Verdict::allowed : Verdict::forbidden;
}

}  // namespace annal::server
