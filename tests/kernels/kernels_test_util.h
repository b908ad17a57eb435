// Seeded random test data for the CPU kernel tests. Uses std::mt19937 (its
// output sequence is fixed by the standard) and our own float conversion, so the
// data are identical on every standard library. Not thread-safe (one per test).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace lockstep::kernels::testing {

class TestRng {
 public:
  explicit TestRng(uint32_t seed) : gen_(seed) {}
  // Uniform in [lo, hi).
  float Uniform(float lo, float hi) {
    const float u = static_cast<float>(gen_() >> 8) * (1.0f / 16777216.0f);
    return lo + (hi - lo) * u;
  }
  std::vector<float> Vector(int64_t n, float lo = -1.0f, float hi = 1.0f) {
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = Uniform(lo, hi);
    return v;
  }
  uint32_t Next() { return gen_(); }

 private:
  std::mt19937 gen_;
};

// max |a - b| / max(1, |b|) over the elements.
double MaxRelError(const std::vector<float>& a, const std::vector<double>& b);

}  // namespace lockstep::kernels::testing
