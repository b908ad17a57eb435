// Fully specified, portable random numbers for the data order: SplitMix64
// (seeding), xoshiro256** (the stream), Lemire's unbiased bounded integers and
// a Fisher-Yates shuffle. Never std::shuffle / std::uniform_int_distribution,
// whose outputs differ between standard libraries. Generators are plain values:
// one per thread, no shared state.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace lockstep {
namespace data {

// SplitMix64 (Steele, Lea, Flood 2014; Vigna's splitmix64.c).
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

 private:
  uint64_t state_;
};

// xoshiro256** 1.0 (Blackman, Vigna 2018), state seeded from SplitMix64 as its
// authors recommend (four consecutive outputs; never all zero).
class Xoshiro256StarStar {
 public:
  explicit Xoshiro256StarStar(uint64_t seed) {
    SplitMix64 sm(seed);
    for (uint64_t& w : s_) w = sm.Next();
  }
  // Raw state, for known-answer tests against the reference implementation.
  Xoshiro256StarStar(uint64_t s0, uint64_t s1, uint64_t s2, uint64_t s3) : s_{s0, s1, s2, s3} {}

  uint64_t Next() {
    const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = Rotl(s_[3], 45);
    return result;
  }

 private:
  static uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

// Uniform integer in [0, range), range >= 1, without bias: Lemire's
// multiply-and-reject ("Fast random integer generation in an interval", 2019).
template <typename Rng>
uint64_t UniformBelow(Rng& rng, uint64_t range) {
  unsigned __int128 m = static_cast<unsigned __int128>(rng.Next()) * range;
  uint64_t low = static_cast<uint64_t>(m);
  if (low < range) {
    const uint64_t threshold = (0 - range) % range;  // 2^64 mod range
    while (low < threshold) {
      m = static_cast<unsigned __int128>(rng.Next()) * range;
      low = static_cast<uint64_t>(m);
    }
  }
  return static_cast<uint64_t>(m >> 64);
}

// Fisher-Yates (Durstenfeld): for i = n-1 down to 1 swap a[i] with a[j], j uniform in [0, i].
template <typename T, typename Rng>
void Shuffle(std::vector<T>& a, Rng& rng) {
  for (size_t i = a.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(UniformBelow(rng, static_cast<uint64_t>(i)));
    std::swap(a[i - 1], a[j]);
  }
}

}  // namespace data
}  // namespace lockstep
