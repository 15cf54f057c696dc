#include "annal/crypto/key_file.h"

#include <openssl/crypto.h>

#include <array>
#include <charconv>
#include <limits>
#include <optional>

#include <cerrno>
#include <cstdio>
#include <unistd.h>

#include "key_file_text.h"

namespace annal::crypto {
namespace {

constexpr std::size_t kHexDigits = 2 * kKeyBytes;
constexpr std::string_view kBlanks = " \t\r";  // \r: a file last saved on Windows still loads
constexpr std::string_view kFormat = "expected '<version> <64 hex digits>'";

// The key lines of a file, or what is wrong with the first bad one.
struct ParsedKeys {
  std::map<std::uint32_t, Key> keys;
  std::optional<Status> error;
};

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string_view next_field(std::string_view& rest) {
  const std::size_t start = std::min(rest.find_first_not_of(kBlanks), rest.size());
  const std::size_t end = std::min(rest.find_first_of(kBlanks, start), rest.size());
  const std::string_view field = rest.substr(start, end - start);
  rest.remove_prefix(end);
  return field;
}

// Parses one non-blank, non-comment line into `version` and `key`, or says what is wrong with it.
// The messages describe the line's shape only: a key's digits are never repeated in them.
std::optional<std::string> parse_line(std::string_view line, std::uint32_t& version, std::array<std::byte, kKeyBytes>& key) {
  const std::string_view version_text = next_field(line);
  const std::string_view hex = next_field(line);
  if (hex.empty()) return std::string(kFormat) + ", found one field";
  if (!next_field(line).empty()) return std::string(kFormat) + ", found more than two fields";

  const auto [end, error] = std::from_chars(version_text.data(), version_text.data() + version_text.size(), version);
  if (error != std::errc() || end != version_text.data() + version_text.size() || version == 0) {
    return "the version (first field) must be a decimal number from 1 to " +
           std::to_string(std::numeric_limits<std::uint32_t>::max());
  }
  if (hex.size() != kHexDigits) {
    return "the key (second field) has " + std::to_string(hex.size()) + " characters, expected 64 hex digits";
  }
  for (std::size_t i = 0; i < kKeyBytes; ++i) {
    const int high = hex_value(hex[2 * i]);
    const int low = hex_value(hex[2 * i + 1]);
    if (high < 0 || low < 0) {
      OPENSSL_cleanse(key.data(), key.size());
      return "the key (second field) has a character that is not a hex digit at position " +
             std::to_string(2 * i + (high < 0 ? 1 : 2));
    }
    key[i] = static_cast<std::byte>(high * 16 + low);
  }
  return std::nullopt;
}

ParsedKeys parse_key_file(std::string_view text, const std::string& path) {
  ParsedKeys parsed;
  std::map<std::uint32_t, std::size_t> line_of;  // version -> the line it first appeared on
  std::array<std::byte, kKeyBytes> key{};
  for (std::size_t number = 1; !text.empty(); ++number) {
    const std::size_t newline = std::min(text.find('\n'), text.size());
    const std::string_view line = text.substr(0, newline);
    text.remove_prefix(std::min(newline + 1, text.size()));

    const std::size_t first = line.find_first_not_of(kBlanks);
    if (first == std::string_view::npos || line[first] == '#') continue;
    std::uint32_t version = 0;
    std::optional<std::string> wrong = parse_line(line, version, key);
    if (!wrong && line_of.contains(version)) {
      wrong = "version " + std::to_string(version) + " appears again (first on line " +
              std::to_string(line_of[version]) + "); each version must name one key";
    }
    if (wrong) {
      parsed.error = Status(ErrorCode::invalid_argument, "key file " + path + " line " + std::to_string(number) + ": " + *wrong);
      break;
    }
    line_of[version] = number;
    parsed.keys.emplace(version, Key(key));
  }
  OPENSSL_cleanse(key.data(), key.size());
  if (!parsed.error && parsed.keys.empty()) {
    parsed.error = Status(ErrorCode::invalid_argument,
                          "key file " + path + " holds no key; create one with generate_key_file (annal masterkey)");
  }
  return parsed;
}

Result<ParsedKeys> load_keys(const std::string& path) {
  Result<SecretText> text = read_key_file_text(path, KeyFileOwners::ours_or_root, kKeyFileBytesMax);
  if (!text.ok()) return text.status();
  ParsedKeys parsed = parse_key_file(text.value().view(), path);
  if (parsed.error) return *parsed.error;
  return parsed;
}

// Room for one more line: up to 10 digits of version, a space, the key and a newline.
constexpr std::size_t kKeyLineBytesMax = 10 + 1 + kHexDigits + 1;

// Appends "<version> <64 lowercase hex digits>\n" for a fresh random key.
Status append_new_key_line(SecretText& text, std::uint32_t version) {
  Result<Key> key = Key::random();
  if (!key.ok()) return key.status();
  text.append(std::to_string(version) + " ");
  for (const std::byte b : key.value().bytes()) {
    constexpr char kDigits[] = "0123456789abcdef";
    const unsigned value = std::to_integer<unsigned>(b);
    const char pair[2] = {kDigits[value >> 4], kDigits[value & 15]};
    text.append({pair, 2});
  }
  text.append("\n");
  return {};
}

}  // namespace

KeyFile::KeyFile(std::string path, std::map<std::uint32_t, Key> keys) noexcept
    : path_(std::move(path)), keys_(std::move(keys)) {
  ANNAL_ASSERT(!keys_.empty());
}

Result<std::unique_ptr<KeyFile>> KeyFile::load(const std::string& path) {
  Result<ParsedKeys> parsed = load_keys(path);
  if (!parsed.ok()) return parsed.status();
  return std::unique_ptr<KeyFile>(new KeyFile(path, std::move(parsed.value().keys)));
}

std::uint32_t KeyFile::current_version() { return keys_.rbegin()->first; }

Result<Key> KeyFile::master_key(std::uint32_t version) {
  const auto found = keys_.find(version);
  if (found == keys_.end()) {
    return Status(ErrorCode::not_found, "key file " + path_ + " has no master key version " + std::to_string(version) +
                                            " (it has versions " + std::to_string(keys_.begin()->first) + " to " +
                                            std::to_string(keys_.rbegin()->first) + ", " +
                                            std::to_string(keys_.size()) + " in all)");
  }
  return found->second.clone();
}

Status generate_key_file(const std::string& path) {
  SecretText text(kKeyLineBytesMax);
  if (Status added = append_new_key_line(text, 1); !added.ok()) return added;
  const Status written = write_new_secret_file(
      path, text.view(), "an existing key file is never overwritten: data sealed with its keys would be lost");
  return written.ok() ? sync_parent_directory(path) : written;
}

Result<std::uint32_t> add_key_version(const std::string& link_or_path) {
  // A symbolic link is rotated where it points, as load() follows it: a rename over the link
  // would replace it with a regular file and leave its target without the new version.
  Result<std::string> resolved = resolve_key_file_path(link_or_path);
  if (!resolved.ok()) return resolved.status();
  const std::string& path = resolved.value();
  // Held until the rename is done: a rotation that read the file before ours renamed would write
  // its version over ours.
  Result<KeyFileLock> lock = KeyFileLock::take(path);
  if (!lock.ok()) return lock.status();
  Result<SecretText> current = read_key_file_text(lock.value(), path, KeyFileOwners::any_if_we_are_root);
  if (!current.ok()) return current.status();
  const std::string_view old_text = current.value().view();
  ParsedKeys parsed = parse_key_file(old_text, path);
  if (parsed.error) return *parsed.error;
  const std::uint32_t highest = parsed.keys.rbegin()->first;
  if (highest == std::numeric_limits<std::uint32_t>::max()) {
    return Status(ErrorCode::invalid_argument, "key file " + path + " already has the highest version, " +
                                                   std::to_string(highest) + "; no version can follow it");
  }
  // The old text kept byte for byte, a newline added if its last line lacked one.
  const bool needs_newline = !old_text.empty() && old_text.back() != '\n';
  SecretText text(old_text.size() + 1 + kKeyLineBytesMax);
  text.append(old_text);
  if (needs_newline) text.append("\n");
  if (Status added = append_new_key_line(text, highest + 1); !added.ok()) return added;

  const std::string tmp = path + ".tmp";
  // Rotations hold the lock while their PATH.tmp exists, so one found now is a crashed rotation's
  // (or one made without the lock, by hand), whose key was never in the key file.
  const std::string if_exists = "a rotation that crashed before renaming it left it (its new key was never used); "
                                "no other rotation holds the lock on the key file now: remove " + tmp + " and rotate again";
  const Status written = write_new_secret_file(tmp, text.view(), if_exists, lock.value().owner());
  if (!written.ok()) return written;
  if (Status replaced = replace_with(tmp, path); !replaced.ok()) return replaced;
  return highest + 1;
}

}  // namespace annal::crypto
