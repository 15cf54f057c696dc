// Histogram: counts of observed values in doubling buckets, for metrics (fdatasync latency, group
// sizes). Recording is a few relaxed atomic adds, wait-free, from any thread; a snapshot taken
// while others record may be off by the observations under way (each counter is exact on its
// own), which a metrics scrape tolerates.
//
//   bucket i counts values <= first_bound << i; the last also counts everything larger.
#pragma once

#include <array>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "annal/base/assert.h"

namespace annal {

struct HistogramSnapshot {
  struct Bucket {
    std::uint64_t upper_bound;  // inclusive; the last bucket's is UINT64_MAX (+Inf)
    std::uint64_t cumulative;   // observations <= upper_bound
  };
  std::vector<Bucket> buckets;
  std::uint64_t count = 0;
  std::uint64_t sum = 0;
};

class Histogram {
 public:
  static constexpr std::size_t kBucketsMax = 40;

  Histogram(std::uint64_t first_bound, std::size_t buckets) : first_bound_(first_bound), buckets_(buckets) {
    ANNAL_ASSERT(first_bound > 0 && buckets >= 2 && buckets <= kBucketsMax);
    ANNAL_ASSERT(std::bit_width(first_bound) + buckets - 2 < 64);  // every bound fits
  }

  void observe(std::uint64_t value) noexcept {
    std::size_t bucket = 0;
    while (bucket + 1 < buckets_ && value > (first_bound_ << bucket)) ++bucket;
    counts_[bucket].fetch_add(1, std::memory_order_relaxed);
    sum_.fetch_add(value, std::memory_order_relaxed);
  }

  [[nodiscard]] HistogramSnapshot snapshot() const {
    HistogramSnapshot out;
    out.buckets.reserve(buckets_);
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < buckets_; ++i) {
      cumulative += counts_[i].load(std::memory_order_relaxed);
      out.buckets.push_back({i + 1 == buckets_ ? UINT64_MAX : first_bound_ << i, cumulative});
    }
    out.count = cumulative;
    out.sum = sum_.load(std::memory_order_relaxed);
    return out;
  }

 private:
  const std::uint64_t first_bound_;
  const std::size_t buckets_;
  std::array<std::atomic<std::uint64_t>, kBucketsMax> counts_{};
  std::atomic<std::uint64_t> sum_{0};
};

}  // namespace annal
