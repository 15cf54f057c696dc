#include "annal/crypto/store_keys.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <string_view>
#include <unistd.h>
#include <vector>

#include "annal/base/little_endian.h"
#include "annal/crypto/aead.h"
#include "annal/crypto/hkdf.h"
#include "annal/crypto/key_file.h"
#include "key_file_text.h"

namespace annal::crypto {
namespace {

constexpr std::array<char, 8> kMagic = {'A', 'N', 'N', 'A', 'L', 'K', 'E', 'Y'};
constexpr std::uint32_t kFormatVersion = 1;
constexpr std::size_t kVersionAt = 8, kMasterVersionAt = 12, kNonceAt = 16, kHeaderBytes = 28;
constexpr std::size_t kBodyFixedBytes = 16;  // opens, sealed_from
constexpr std::string_view kLabel = "annal key store v1";

// The key the file is sealed under, for master key `version`.
Result<Aes256Gcm> file_cipher(KeyProvider& keys, std::uint32_t version) {
  auto master = keys.master_key(version);
  if (!master.ok()) return master.status();
  auto key = derive_key(master.value(), {}, std::as_bytes(std::span(kLabel)));
  if (!key.ok()) return key.status();
  return Aes256Gcm::make(key.value());
}

Status corrupt(const std::string& path, const std::string& what) {
  return Status(ErrorCode::corruption, "key store " + path + ": " + what);
}

}  // namespace

Result<StoreKeys> open_store_keys(const std::string& path, std::span<const std::byte> bytes, KeyProvider& keys) {
  if (bytes.size() < kHeaderBytes + kTagBytes + kBodyFixedBytes ||
      std::memcmp(bytes.data(), kMagic.data(), kMagic.size()) != 0) {
    return corrupt(path, "not an annal key store (its first bytes are not ANNALKEY, or it is too short)");
  }
  if (const auto format = load_le<std::uint32_t>(bytes, kVersionAt); format != kFormatVersion) {
    return corrupt(path, "format version " + std::to_string(format) + ", this build reads version " +
                             std::to_string(kFormatVersion));
  }
  const auto version = load_le<std::uint32_t>(bytes, kMasterVersionAt);
  auto cipher = file_cipher(keys, version);
  if (!cipher.ok()) {
    return Status(cipher.status().code(),
                  "key store " + path + " is sealed under master key version " + std::to_string(version) + ": " +
                      cipher.status().message());
  }
  std::vector<std::byte> body(bytes.size() - kHeaderBytes - kTagBytes);
  const Status opened = cipher.value().open(bytes.subspan(kNonceAt).first<kNonceBytes>(), bytes.first(kHeaderBytes),
                                            bytes.subspan(kHeaderBytes), body);
  if (!opened.ok()) {
    return corrupt(path, "does not open under master key version " + std::to_string(version) +
                             ": a wrong master key for that version, or the file was altered");
  }
  auto seeds = SeedTree::decode(std::span<const std::byte>(body).subspan(kBodyFixedBytes));
  const std::uint64_t opens = load_le<std::uint64_t>(body, 0);
  const std::uint64_t sealed_from = load_le<std::uint64_t>(body, 8);
  OPENSSL_cleanse(body.data(), body.size());
  if (!seeds.ok()) return corrupt(path, seeds.status().message());
  return StoreKeys{opens, sealed_from, std::move(seeds).value()};
}

Result<std::optional<StoreKeys>> load_store_keys(const std::string& path, KeyProvider& keys) {
  if (::access(path.c_str(), F_OK) != 0 && errno == ENOENT) return std::optional<StoreKeys>();
  auto text = read_key_file_text(path, KeyFileOwners::ours_or_root, kStoreKeysBytesMax);
  if (!text.ok()) return text.status();
  auto opened = open_store_keys(path, std::as_bytes(std::span(text.value().view())), keys);
  if (!opened.ok()) return opened.status();
  return std::optional<StoreKeys>(std::move(opened).value());
}

namespace {

Status fits_in_file(const std::string& path, std::size_t body_bytes) {
  if (kHeaderBytes + body_bytes + kTagBytes <= kStoreKeysBytesMax) return {};
  return Status(ErrorCode::invalid_argument, "key store " + path + ": its seed tree would take " +
                                                 std::to_string(body_bytes) + " bytes, past the " +
                                                 std::to_string(kStoreKeysBytesMax) + " a key store may hold");
}

}  // namespace

Status store_keys_fit(const std::string& path, const StoreKeys& state) {
  return fits_in_file(path, kBodyFixedBytes + state.seeds.encoded_bytes());
}

Result<std::vector<std::byte>> seal_store_keys(const std::string& path, const StoreKeys& state, KeyProvider& keys) {
  const std::uint32_t version = keys.current_version();
  auto cipher = file_cipher(keys, version);
  if (!cipher.ok()) return cipher.status();
  // One allocation, sized up front: a vector that grew would free a copy of the seeds unwiped.
  std::vector<std::byte> tree = state.seeds.encode();
  std::vector<std::byte> body(kBodyFixedBytes + tree.size());
  std::copy(tree.begin(), tree.end(), body.begin() + kBodyFixedBytes);
  OPENSSL_cleanse(tree.data(), tree.size());
  // Written, it could not be read back: the store would not open. Refused before anything changes.
  if (Status fits = fits_in_file(path, body.size()); !fits.ok()) {
    OPENSSL_cleanse(body.data(), body.size());
    return fits;
  }
  store_le<std::uint64_t>(body, 0, state.opens);
  store_le<std::uint64_t>(body, 8, state.sealed_from);
  std::vector<std::byte> file(kHeaderBytes + body.size() + kTagBytes);
  std::memcpy(file.data(), kMagic.data(), kMagic.size());
  store_le<std::uint32_t>(file, kVersionAt, kFormatVersion);
  store_le<std::uint32_t>(file, kMasterVersionAt, version);
  if (RAND_bytes(reinterpret_cast<unsigned char*>(file.data() + kNonceAt), static_cast<int>(kNonceBytes)) != 1) {
    OPENSSL_cleanse(body.data(), body.size());
    return Status(ErrorCode::failed, "key store " + path + ": no random nonce (RAND_bytes failed)");
  }
  const std::span<const std::byte> header = std::span<const std::byte>(file).first(kHeaderBytes);
  cipher.value().seal(std::span<const std::byte>(file).subspan(kNonceAt).first<kNonceBytes>(), header, body,
                      std::span<std::byte>(file).subspan(kHeaderBytes));
  OPENSSL_cleanse(body.data(), body.size());
  return file;
}

Status save_store_keys(const std::string& path, const StoreKeys& state, KeyProvider& keys) {
  auto file = seal_store_keys(path, state, keys);
  if (!file.ok()) return file.status();
  // The store's one writer holds its LOCK: a PATH.tmp can only be a crash's leftover.
  const std::string tmp = path + ".tmp";
  if (::unlink(tmp.c_str()) != 0 && errno != ENOENT) return errno_status("remove", tmp, errno);
  const std::string_view bytes(reinterpret_cast<const char*>(file.value().data()), file.value().size());
  if (Status written = write_new_secret_file(tmp, bytes, "it was just removed: is another process writing?");
      !written.ok()) {
    return written;
  }
  return replace_with(tmp, path);
}

}  // namespace annal::crypto
