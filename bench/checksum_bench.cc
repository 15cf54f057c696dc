// Record-checksum candidates for the journal, side by side over the same bytes: CRC32C by ISA-L
// (runtime-dispatched), CRC32C by a plain SSE4.2 loop and by a 3-way interleaved SSE4.2 loop (so the
// cost of the ISA-L dependency can be weighed against a few lines of our own), XXH3 (unseeded and
// seeded, as the journal seeds with a per-segment salt) and XXH32 for reference.
//
// Sizes are a 48-byte record header plus the typical 64 B, 256 B and 1 KiB payloads (112 B, 304 B,
// 1072 B: the ones that matter), then 64 KiB and 1 MiB for group-commit writes. Every candidate is
// one out-of-line call per checksum, as in the journal. Before anything is timed, the CRC32C
// implementations must give the check value 0xE3069283 for "123456789" and agree with each other on
// every length up to 16 KiB and on every benchmarked size; the binary aborts otherwise.
//
// Names: checksum_<size>/<candidate>; bytes/s is the figure to compare.
#include <benchmark/benchmark.h>
#include <immintrin.h>
#include <isa-l/crc.h>
#include <xxhash.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

using ChecksumFn = std::uint64_t (*)(const unsigned char*, std::size_t);

constexpr std::uint32_t kCrc32cCheck = 0xE3069283;  // CRC32C("123456789")
constexpr std::uint64_t kSalt = 0x9E3779B97F4A7C15;

std::uint64_t load64(const unsigned char* p) {
  std::uint64_t word;
  std::memcpy(&word, p, sizeof word);
  return word;
}

// ISA-L works on the raw CRC register: the standard CRC32C starts from ~0 and inverts the result.
// From 256 bytes ISA-L takes an AVX-512 path that returns without vzeroupper; the dirty upper vector
// state then slows later legacy-SSE code (libxxhash's XXH3 ran 3-4x slower after it), so a caller
// must clear it, and that is part of ISA-L's cost here.
__attribute__((target("avx"))) std::uint64_t isal_crc32c(const unsigned char* p, std::size_t n) {
  const std::uint32_t crc = ~crc32_iscsi(const_cast<unsigned char*>(p), static_cast<int>(n), 0xFFFFFFFF);
  _mm256_zeroupper();
  return crc;
}

// Raw CRC32C register `crc` continued over p[0, n).
__attribute__((target("sse4.2"))) std::uint32_t sse42_extend(std::uint32_t crc, const unsigned char* p,
                                                            std::size_t n) {
  std::uint64_t wide = crc;
  for (; n >= 8; p += 8, n -= 8) wide = _mm_crc32_u64(wide, load64(p));
  auto narrow = static_cast<std::uint32_t>(wide);
  for (; n > 0; ++p, --n) narrow = _mm_crc32_u8(narrow, *p);
  return narrow;
}

__attribute__((target("sse4.2"))) std::uint64_t sse42_crc32c(const unsigned char* p, std::size_t n) {
  return ~sse42_extend(0xFFFFFFFF, p, n);
}

// x^e mod P for the CRC32C polynomial, bit-reflected like the CRC register.
constexpr std::uint32_t xpow_mod_p(std::uint64_t e) {
  std::uint32_t v = 0x80000000;  // x^0
  for (; e > 0; --e) v = (v >> 1) ^ ((v & 1) != 0 ? 0x82F63B78 : 0);
  return v;
}

// The 3-way loop runs three independent CRCs over adjacent lanes of `lane` bytes (hiding the
// crc32 instruction's 3-cycle latency) and then joins them: shifting a register over n zero bytes
// multiplies it by x^(8n); a carry-less multiply by x^(8n-33) followed by crc32 of the 64-bit
// product does that (the multiply contributes x^1, crc32 x^32).
struct Tier {
  std::size_t lane;
  std::uint32_t shift_one;  // over one lane
  std::uint32_t shift_two;  // over two lanes
};
constexpr Tier make_tier(std::size_t lane) {
  return {lane, xpow_mod_p(8 * lane - 33), xpow_mod_p(16 * lane - 33)};
}
constexpr std::array kTiers = {make_tier(4096), make_tier(256), make_tier(32)};

__attribute__((target("sse4.2,pclmul"))) std::uint64_t shift_crc(std::uint64_t crc, std::uint32_t k) {
  const __m128i product = _mm_clmulepi64_si128(_mm_cvtsi64_si128(static_cast<long long>(crc)),
                                               _mm_cvtsi32_si128(static_cast<int>(k)), 0);
  return _mm_crc32_u64(0, static_cast<std::uint64_t>(_mm_cvtsi128_si64(product)));
}

__attribute__((target("sse4.2,pclmul"))) std::uint64_t sse42_crc32c_3way(const unsigned char* p,
                                                                        std::size_t n) {
  std::uint64_t a = 0xFFFFFFFF;
  for (const Tier& tier : kTiers) {
    for (; n >= 3 * tier.lane; p += 3 * tier.lane, n -= 3 * tier.lane) {
      std::uint64_t b = 0;
      std::uint64_t c = 0;
      for (std::size_t i = 0; i < tier.lane; i += 8) {
        a = _mm_crc32_u64(a, load64(p + i));
        b = _mm_crc32_u64(b, load64(p + tier.lane + i));
        c = _mm_crc32_u64(c, load64(p + 2 * tier.lane + i));
      }
      a = shift_crc(a, tier.shift_two) ^ shift_crc(b, tier.shift_one) ^ c;
    }
  }
  return ~sse42_extend(static_cast<std::uint32_t>(a), p, n);
}

struct Candidate {
  const char* name;
  ChecksumFn fn;
};

constexpr std::array<Candidate, 3> kCrc32cs = {{
    {"isal_crc32c", isal_crc32c},
    {"sse42_crc32c", sse42_crc32c},
    {"sse42_crc32c_3way", sse42_crc32c_3way},
}};

constexpr std::array<Candidate, 3> kHashes = {{
    {"xxh3_64", [](const unsigned char* p, std::size_t n) -> std::uint64_t { return XXH3_64bits(p, n); }},
    {"xxh3_64_seeded",
     [](const unsigned char* p, std::size_t n) -> std::uint64_t { return XXH3_64bits_withSeed(p, n, kSalt); }},
    {"xxh32", [](const unsigned char* p, std::size_t n) -> std::uint64_t { return XXH32(p, n, 0); }},
}};

struct Size {
  std::size_t bytes;
  const char* label;
};

constexpr std::array<Size, 5> kSizes = {{
    {48 + 64, "112B"},
    {48 + 256, "304B"},
    {48 + 1024, "1072B"},
    {64 << 10, "64KiB"},
    {1 << 20, "1MiB"},
}};

std::vector<unsigned char> random_bytes(std::size_t n) {
  std::mt19937_64 rng(42);
  std::vector<unsigned char> bytes(n);
  for (unsigned char& byte : bytes) byte = static_cast<unsigned char>(rng());
  return bytes;
}

[[noreturn]] void fail(const char* what, std::size_t n, std::uint64_t got, std::uint64_t want) {
  std::fprintf(stderr, "checksum_bench: %s wrong at %zu bytes: %08llx, expected %08llx\n", what, n,
               static_cast<unsigned long long>(got), static_cast<unsigned long long>(want));
  std::abort();
}

void verify_crc32cs(const std::vector<unsigned char>& data) {
  const auto* check = reinterpret_cast<const unsigned char*>("123456789");
  for (const Candidate& crc : kCrc32cs) {
    if (crc.fn(check, 9) != kCrc32cCheck) fail(crc.name, 9, crc.fn(check, 9), kCrc32cCheck);
  }
  std::vector<std::size_t> lengths;
  for (std::size_t n = 0; n <= 16 << 10; ++n) lengths.push_back(n);
  for (const Size& size : kSizes) lengths.push_back(size.bytes);
  for (const std::size_t n : lengths) {
    const std::uint64_t want = kCrc32cs[0].fn(data.data(), n);
    for (const Candidate& crc : kCrc32cs) {
      if (crc.fn(data.data(), n) != want) fail(crc.name, n, crc.fn(data.data(), n), want);
    }
  }
}

void register_all(const std::vector<unsigned char>& data) {
  for (const Size& size : kSizes) {
    for (const auto& group : {kCrc32cs, kHashes}) {
      for (const Candidate& candidate : group) {
        const std::string name = std::string("checksum_") + size.label + "/" + candidate.name;
        benchmark::RegisterBenchmark(name.c_str(), [&data, size, candidate](benchmark::State& state) {
          for (auto _ : state) benchmark::DoNotOptimize(candidate.fn(data.data(), size.bytes));
          state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(size.bytes));
        });
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (__builtin_cpu_supports("sse4.2") == 0 || __builtin_cpu_supports("pclmul") == 0 ||
      __builtin_cpu_supports("avx") == 0) {
    std::fprintf(stderr, "checksum_bench: this CPU lacks SSE4.2, PCLMULQDQ or AVX\n");
    return 1;
  }
  const std::vector<unsigned char> data = random_bytes(kSizes.back().bytes);
  verify_crc32cs(data);
  register_all(data);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
