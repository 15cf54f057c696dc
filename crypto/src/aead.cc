#include "annal/crypto/aead.h"

#include <intel-ipsec-mb.h>
#include <openssl/crypto.h>

#include <functional>
#include <string>
#include <utility>

namespace annal::crypto {
namespace {

// In place (same start) is supported by the library's GCM; a partial overlap would read bytes
// already overwritten.
std::uint8_t* u8(std::byte* p) noexcept { return reinterpret_cast<std::uint8_t*>(p); }
const std::uint8_t* u8(const std::byte* p) noexcept { return reinterpret_cast<const std::uint8_t*>(p); }

bool same_or_disjoint(std::span<const std::byte> in, std::span<const std::byte> out) noexcept {
  if (in.empty() || out.empty() || in.data() == out.data()) return true;
  const std::less<const std::byte*> before;
  return !before(in.data(), out.data() + out.size()) || !before(out.data(), in.data() + in.size());
}

// The library's functions for this CPU, chosen once a thread: a manager's direct calls may note an
// error in it, so threads do not share one.
IMB_MGR* manager() {
  thread_local const std::unique_ptr<IMB_MGR, void (*)(IMB_MGR*)> mgr = [] {
    IMB_MGR* made = alloc_mb_mgr(0);
    ANNAL_ASSERT(made != nullptr);  // a few KiB; out of memory here is out of memory anywhere
    init_mb_mgr_auto(made, nullptr);
    return std::unique_ptr<IMB_MGR, void (*)(IMB_MGR*)>(made, free_mb_mgr);
  }();
  return mgr.get();
}

}  // namespace

struct alignas(64) Aes256Gcm::Schedule {
  gcm_key_data key;
};

Aes256Gcm::Aes256Gcm(std::unique_ptr<Schedule> schedule) noexcept : schedule_(std::move(schedule)) {}

Aes256Gcm Aes256Gcm::make(const Key& key) {
  Aes256Gcm cipher(std::make_unique<Schedule>());
  cipher.rekey(key);
  return cipher;
}

Aes256Gcm::~Aes256Gcm() {
  if (schedule_) OPENSSL_cleanse(schedule_.get(), sizeof(Schedule));
}

Aes256Gcm::Aes256Gcm(Aes256Gcm&& other) noexcept = default;

Aes256Gcm& Aes256Gcm::operator=(Aes256Gcm&& other) noexcept {
  if (this != &other) {
    if (schedule_) OPENSSL_cleanse(schedule_.get(), sizeof(Schedule));
    schedule_ = std::move(other.schedule_);
  }
  return *this;
}

void Aes256Gcm::rekey(const Key& key) {
  ANNAL_ASSERT(schedule_ != nullptr);  // not moved from
  IMB_AES256_GCM_PRE(manager(), u8(key.bytes().data()), &schedule_->key);
  ANNAL_ASSERT(imb_get_errno(nullptr) == 0);
}

void Aes256Gcm::seal(Nonce nonce, std::span<const std::byte> aad, std::span<const std::byte> plaintext,
                     std::span<std::byte> out) {
  ANNAL_ASSERT(schedule_ != nullptr);  // not moved from
  ANNAL_ASSERT(plaintext.size() <= kPlaintextBytesMax && aad.size() <= kAadBytesMax);
  ANNAL_ASSERT(out.size() == plaintext.size() + kTagBytes);
  ANNAL_ASSERT(same_or_disjoint(plaintext, out) && same_or_disjoint(aad, out));
  gcm_context_data context;
  IMB_AES256_GCM_ENC(manager(), &schedule_->key, &context, u8(out.data()), u8(plaintext.data()), plaintext.size(),
                     u8(nonce.data()), u8(aad.data()), aad.size(), u8(out.data() + plaintext.size()), kTagBytes);
  ANNAL_ASSERT(imb_get_errno(nullptr) == 0);  // its checks of the arguments, which ours imply
}

Status Aes256Gcm::open(Nonce nonce, std::span<const std::byte> aad, std::span<const std::byte> sealed,
                       std::span<std::byte> out) {
  ANNAL_ASSERT(schedule_ != nullptr);  // not moved from
  ANNAL_ASSERT(sealed.size() >= kTagBytes && sealed.size() - kTagBytes <= kPlaintextBytesMax);
  ANNAL_ASSERT(aad.size() <= kAadBytesMax && out.size() == sealed.size() - kTagBytes);
  ANNAL_ASSERT(same_or_disjoint(sealed, out) && same_or_disjoint(aad, out));
  // The tag the bytes give, compared with the one stored in constant time after all the data went
  // through (in place, the stored tag lies past what is overwritten).
  std::byte tag[kTagBytes];
  gcm_context_data context;
  IMB_AES256_GCM_DEC(manager(), &schedule_->key, &context, u8(out.data()), u8(sealed.data()), out.size(),
                     u8(nonce.data()), u8(aad.data()), aad.size(), u8(tag), kTagBytes);
  ANNAL_ASSERT(imb_get_errno(nullptr) == 0);
  if (CRYPTO_memcmp(tag, sealed.data() + out.size(), kTagBytes) != 0) {
    OPENSSL_cleanse(out.data(), out.size());
    return Status(ErrorCode::corruption,
                  "AES-256-GCM authentication failed: wrong key, nonce or additional data, or the sealed "
                  "bytes (" + std::to_string(sealed.size()) + ") were altered");
  }
  return {};
}

}  // namespace annal::crypto
