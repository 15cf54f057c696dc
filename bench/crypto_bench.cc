// What sealing each journal record with AES-256-GCM would cost, beside what the journal pays per
// record today (CRC32C of header and payload) and a plain memcpy of the payload, in one run.
//
// Rows (payloads of 64 B, 256 B and 4 KiB; bytes/s counts payload bytes, items/s records):
//   seal/annal_aes256gcm/N  Aes256Gcm::seal of N bytes, the 48-byte record header as additional
//                           data, the nonce's sequence part advanced per record as the journal will
//   open/annal_aes256gcm/N  the reverse, tag checked
//   seal/openssl_evp/N, open/openssl_evp/N  the same through OpenSSL's EVP API, one context keyed
//                           once and given the nonce per record (annal's cipher before IPsec-MB)
//   seal/crc32c/N           annal::journal::crc32c_extend over the 48-byte header and N bytes
//   seal/memcpy/N           copying the N bytes, the floor any per-record work sits on
//   stream_key/hkdf         deriving one stream's key (the engine derives once and caches)
//   stream_cipher/rekey     keying a kept cipher with another stream's key (AES key expansion
//                           and GHASH tables): what a record sealer's cache miss pays
//   stream_seed/seed_tree/consecutive:1|0  a new stream's seed: consecutive ids (8 HMAC steps
//                           from the kept node), or random ones (64 from the root)
//   stream_seed/seed_tree_store  a seed for a stream at random among a store's 100,000 named
//                           streams (ids 2^63 | k), as engine_append_8w meets them after an open
// Before timing, the binary checks that a sealed record opens to its payload, and aborts if not.
#include <benchmark/benchmark.h>
#include <openssl/evp.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "annal/base/little_endian.h"
#include "annal/crypto/aead.h"
#include "annal/crypto/hkdf.h"
#include "annal/crypto/seed_tree.h"
#include "annal/journal/crc32c.h"
#include "annal/journal/format.h"

namespace {

namespace crypto = annal::crypto;

constexpr std::size_t kHeaderBytes = annal::journal::kRecordHeaderBytes;
constexpr std::int64_t kSizes[] = {64, 256, 4096};

std::vector<std::byte> random_bytes(std::size_t n) {
  std::mt19937_64 random(17);
  std::vector<std::byte> bytes(n);
  for (std::byte& b : bytes) b = static_cast<std::byte>(random());
  return bytes;
}

template <class T>
T must(annal::Result<T> made) {
  if (!made.ok()) {
    std::fprintf(stderr, "crypto_bench: %s\n", made.status().to_string().c_str());
    std::abort();
  }
  return std::move(made).value();
}

// The nonce layout the journal will use: 4 random bytes per open, then the record's sequence.
struct Nonces {
  std::byte bytes[crypto::kNonceBytes] = {std::byte{0x5e}, std::byte{0xa1}, std::byte{0xed}, std::byte{0x01}};
  crypto::Nonce next(std::uint64_t sequence) {
    annal::store_le(std::span<std::byte>(bytes), 4, sequence);
    return crypto::Nonce(bytes);
  }
};

void set_counters(benchmark::State& state) {
  state.SetBytesProcessed(state.iterations() * state.range(0));
  state.SetItemsProcessed(state.iterations());
}

void BM_SealAes256Gcm(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  const crypto::Key key = must(crypto::Key::random());
  crypto::Aes256Gcm cipher = crypto::Aes256Gcm::make(key);
  const std::vector<std::byte> header = random_bytes(kHeaderBytes), payload = random_bytes(size);
  std::vector<std::byte> sealed(size + crypto::kTagBytes);
  Nonces nonces;
  std::uint64_t sequence = 0;
  for (auto _ : state) {
    cipher.seal(nonces.next(++sequence), header, payload, sealed);
    benchmark::DoNotOptimize(sealed.data());
    benchmark::ClobberMemory();
  }
  set_counters(state);
}

void BM_OpenAes256Gcm(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  const crypto::Key key = must(crypto::Key::random());
  crypto::Aes256Gcm cipher = crypto::Aes256Gcm::make(key);
  const std::vector<std::byte> header = random_bytes(kHeaderBytes), payload = random_bytes(size);
  std::vector<std::byte> sealed(size + crypto::kTagBytes), opened(size);
  Nonces nonces;
  cipher.seal(nonces.next(1), header, payload, sealed);
  for (auto _ : state) {
    if (!cipher.open(nonces.next(1), header, sealed, opened).ok()) state.SkipWithError("open failed");
    benchmark::DoNotOptimize(opened.data());
    benchmark::ClobberMemory();
  }
  set_counters(state);
}

// OpenSSL's EVP API, as annal sealed before: a context keyed once, re-initialised with the nonce
// only for each record; the tag through EVP_CIPHER_CTX_ctrl.
void BM_OpenSslEvp(benchmark::State& state, bool seal) {
  const auto size = static_cast<std::size_t>(state.range(0));
  const std::vector<std::byte> key = random_bytes(crypto::kKeyBytes), header = random_bytes(kHeaderBytes),
                               payload = random_bytes(size);
  std::vector<std::byte> sealed(size + crypto::kTagBytes), opened(size);
  const auto u8 = [](auto* p) { return reinterpret_cast<unsigned char*>(const_cast<std::byte*>(p)); };
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  EVP_CIPHER* aes = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  Nonces nonces;
  // One record's pass: the nonce, the header as additional data, the payload, the tag.
  const auto pass = [&](std::uint64_t sequence, bool encrypt) {
    int written = 0;
    bool ok = EVP_CipherInit_ex(ctx, nullptr, nullptr, nullptr, u8(nonces.next(sequence).data()), encrypt) == 1 &&
              EVP_CipherUpdate(ctx, nullptr, &written, u8(header.data()), static_cast<int>(header.size())) == 1;
    if (encrypt) {
      ok = ok && EVP_CipherUpdate(ctx, u8(sealed.data()), &written, u8(payload.data()), static_cast<int>(size)) == 1 &&
           EVP_CipherFinal_ex(ctx, u8(sealed.data() + size), &written) == 1 &&
           EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, crypto::kTagBytes, sealed.data() + size) == 1;
    } else {
      ok = ok && EVP_CipherUpdate(ctx, u8(opened.data()), &written, u8(sealed.data()), static_cast<int>(size)) == 1 &&
           EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, crypto::kTagBytes, sealed.data() + size) == 1 &&
           EVP_CipherFinal_ex(ctx, u8(opened.data() + size), &written) == 1;
    }
    return ok;
  };
  if (EVP_CipherInit_ex(ctx, aes, nullptr, u8(key.data()), nullptr, 1) != 1 || !pass(1, true) ||
      !pass(1, false) || opened != payload) {
    std::fprintf(stderr, "crypto_bench: OpenSSL's AES-256-GCM did not round-trip\n");
    std::abort();
  }
  for (auto _ : state) {
    if (!pass(1, seal)) state.SkipWithError("EVP failed");
    benchmark::DoNotOptimize(sealed.data());
    benchmark::DoNotOptimize(opened.data());
    benchmark::ClobberMemory();
  }
  EVP_CIPHER_free(aes);
  EVP_CIPHER_CTX_free(ctx);
  set_counters(state);
}

void BM_Crc32c(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  const std::vector<std::byte> record = random_bytes(kHeaderBytes + size);
  for (auto _ : state) benchmark::DoNotOptimize(annal::journal::crc32c_extend(0, record));
  set_counters(state);
}

void BM_Memcpy(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  const std::vector<std::byte> payload = random_bytes(size);
  std::vector<std::byte> copy(size);
  for (auto _ : state) {
    std::memcpy(copy.data(), payload.data(), size);
    benchmark::DoNotOptimize(copy.data());
    benchmark::ClobberMemory();
  }
  set_counters(state);
}

void BM_StreamKey(benchmark::State& state) {
  const crypto::Key master = must(crypto::Key::random());
  const crypto::Key seed = must(crypto::Key::random());  // one seed for all: it does not change the cost
  std::uint64_t stream = 0;
  for (auto _ : state) {
    crypto::Key key = must(crypto::stream_key(master, seed.bytes(), ++stream, 1));
    benchmark::DoNotOptimize(key.bytes().data());
  }
  state.SetItemsProcessed(state.iterations());
}

// Keying a cipher again, as a record sealer does for a stream its cache of ciphers lost.
void BM_Rekey(benchmark::State& state) {
  const crypto::Key first = must(crypto::Key::random()), second = must(crypto::Key::random());
  crypto::Aes256Gcm cipher = crypto::Aes256Gcm::make(first);
  bool flip = false;
  for (auto _ : state) {
    cipher.rekey((flip = !flip) ? second : first);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
}

// A new stream's seed from the seed tree (what an engine pays the first time it meets a stream,
// before caching the stream's key). state.range(0): 1 for consecutive ids, as the engine numbers
// new streams (8 HMAC-SHA256 steps from the kept node over 256 ids); 0 for random 64-bit ids
// (nearly 64 from the root: two such ids share few top bits).
void BM_StreamSeed(benchmark::State& state) {
  const crypto::SeedTree tree = must(crypto::SeedTree::create());
  std::mt19937_64 random(3);
  std::uint64_t stream = 0;
  for (auto _ : state) {
    crypto::Key seed = must(tree.seed(state.range(0) != 0 ? ++stream : random()));
    benchmark::DoNotOptimize(seed.bytes().data());
  }
  state.SetItemsProcessed(state.iterations());
}

// A seed for a stream at random among 100,000 of one store's named streams (engine/src/catalog.h:
// ids 2^63 | k): the kept nodes of their 391 blocks of 256 ids serve after the first few hundred.
void BM_StreamSeedStore(benchmark::State& state) {
  const crypto::SeedTree tree = must(crypto::SeedTree::create());
  std::mt19937_64 random(3);
  for (auto _ : state) {
    crypto::Key seed = must(tree.seed(std::uint64_t{1} << 63 | random() % 100'000));
    benchmark::DoNotOptimize(seed.bytes().data());
  }
  state.SetItemsProcessed(state.iterations());
}

// A sealed record must open to its payload, and a flipped bit must not, before any figure counts.
void check_round_trip() {
  const crypto::Key key = must(crypto::Key::random());
  crypto::Aes256Gcm cipher = crypto::Aes256Gcm::make(key);
  const std::vector<std::byte> header = random_bytes(kHeaderBytes), payload = random_bytes(4096);
  std::vector<std::byte> sealed(payload.size() + crypto::kTagBytes), opened(payload.size());
  Nonces nonces;
  cipher.seal(nonces.next(7), header, payload, sealed);
  const bool opened_ok = cipher.open(nonces.next(7), header, sealed, opened).ok() && opened == payload;
  sealed[100] ^= std::byte{1};
  if (!opened_ok || cipher.open(nonces.next(7), header, sealed, opened).ok()) {
    std::fprintf(stderr, "crypto_bench: AES-256-GCM round trip check failed\n");
    std::abort();
  }
}

}  // namespace

int main(int argc, char** argv) {
  check_round_trip();
  for (const std::int64_t size : kSizes) {
    benchmark::RegisterBenchmark("seal/annal_aes256gcm", BM_SealAes256Gcm)->Arg(size);
    benchmark::RegisterBenchmark("open/annal_aes256gcm", BM_OpenAes256Gcm)->Arg(size);
    benchmark::RegisterBenchmark("seal/openssl_evp", BM_OpenSslEvp, true)->Arg(size);
    benchmark::RegisterBenchmark("open/openssl_evp", BM_OpenSslEvp, false)->Arg(size);
    benchmark::RegisterBenchmark("seal/crc32c", BM_Crc32c)->Arg(size);
    benchmark::RegisterBenchmark("seal/memcpy", BM_Memcpy)->Arg(size);
  }
  benchmark::RegisterBenchmark("stream_key/hkdf", BM_StreamKey);
  benchmark::RegisterBenchmark("stream_cipher/rekey", BM_Rekey);
  benchmark::RegisterBenchmark("stream_seed/seed_tree", BM_StreamSeed)->ArgName("consecutive")->Arg(1)->Arg(0);
  benchmark::RegisterBenchmark("stream_seed/seed_tree_store", BM_StreamSeedStore);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
