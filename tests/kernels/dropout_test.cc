// Philox4x32-10 known answers (Random123 kat_vectors) and dropout mask properties.
#include "kernels/cpu/dropout.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "tests/kernels/kernels_test_util.h"

namespace lockstep::kernels::cpu {
namespace {

using testing::TestRng;
using Words = std::array<uint32_t, 4>;

TEST(CpuPhiloxTest, KnownAnswerZeros) {
  EXPECT_EQ(Philox4x32({0, 0, 0, 0}, {0, 0}),
            (Words{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}));
}

TEST(CpuPhiloxTest, KnownAnswerAllOnes) {
  EXPECT_EQ(Philox4x32({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
                       {0xffffffffu, 0xffffffffu}),
            (Words{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}));
}

TEST(CpuPhiloxTest, KnownAnswerPi) {
  EXPECT_EQ(Philox4x32({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
                       {0xa4093822u, 0x299f31d0u}),
            (Words{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}));
}

struct DropoutRun {
  std::vector<float> y;
  std::vector<uint8_t> mask;
};

DropoutRun RunDropout(const DropoutKey& key, const std::vector<float>& x, int64_t rows, int64_t row_len,
               int64_t first_row, float rate) {
  DropoutRun r;
  r.y.resize(x.size());
  r.mask.resize(x.size());
  DropoutForward(key, x.data(), r.y.data(), r.mask.data(), rows, row_len, first_row, rate);
  return r;
}

DropoutKey Key(uint64_t seed, uint32_t layer, uint64_t step) {
  DropoutKey k;
  k.seed = seed;
  k.layer = layer;
  k.step = step;
  return k;
}

TEST(CpuDropoutTest, SameKeySameMaskAndScaledOutput) {
  TestRng rng(51);
  const int64_t rows = 6, len = 37;
  const float rate = 0.4f;
  std::vector<float> x = rng.Vector(rows * len);
  const DropoutKey k = Key(0x1234567890abcdefull, 3, 17);
  DropoutRun a = RunDropout(k, x, rows, len, 10, rate), b = RunDropout(k, x, rows, len, 10, rate);
  EXPECT_EQ(a.mask, b.mask);
  EXPECT_EQ(a.y, b.y);
  for (size_t i = 0; i < x.size(); ++i) {
    ASSERT_TRUE(a.mask[i] == 0 || a.mask[i] == 1);
    EXPECT_EQ(a.y[i], a.mask[i] ? x[i] * (1.0f / (1.0f - rate)) : 0.0f);
  }
}

TEST(CpuDropoutTest, MaskFollowsDocumentedCounterLayout) {
  const DropoutKey k = Key(0xfeedface00000007ull, 5, (uint64_t{3} << 32) | 9);
  const int64_t rows = 3, len = 11, first = 40;
  std::vector<float> x(rows * len, 1.0f);
  DropoutRun a = RunDropout(k, x, rows, len, first, 0.5f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t e = 0; e < len; ++e) {
      const Words w = Philox4x32({static_cast<uint32_t>(e / 4), static_cast<uint32_t>(first + r),
                                  9u, 3u ^ (5u << 16)},
                                 {0x00000007u, 0xfeedfaceu});
      const float u = static_cast<float>(w[e % 4] >> 8) / 16777216.0f;
      EXPECT_EQ(a.mask[r * len + e], u >= 0.5f ? 1 : 0) << "row " << r << " elem " << e;
    }
}

TEST(CpuDropoutTest, DifferentStepLayerOrSampleGiveDifferentMasks) {
  const int64_t len = 256;
  std::vector<float> x(len, 1.0f);
  const std::vector<uint8_t> base = RunDropout(Key(7, 1, 100), x, 1, len, 5, 0.5f).mask;
  EXPECT_NE(RunDropout(Key(7, 1, 101), x, 1, len, 5, 0.5f).mask, base);                  // step
  EXPECT_NE(RunDropout(Key(7, 1, 100 + (uint64_t{1} << 32)), x, 1, len, 5, 0.5f).mask, base);  // step hi
  EXPECT_NE(RunDropout(Key(7, 2, 100), x, 1, len, 5, 0.5f).mask, base);                  // layer
  EXPECT_NE(RunDropout(Key(7, 1, 100), x, 1, len, 6, 0.5f).mask, base);                  // sample
  EXPECT_NE(RunDropout(Key(8, 1, 100), x, 1, len, 5, 0.5f).mask, base);                  // seed
  EXPECT_NE(RunDropout(Key(7 + (uint64_t{1} << 32), 1, 100), x, 1, len, 5, 0.5f).mask, base);
}

TEST(CpuDropoutTest, KeepFractionWithinStatisticalBounds) {
  const int64_t rows = 64, len = 1563;  // 100,032 draws
  std::vector<float> x(rows * len, 1.0f);
  for (float rate : {0.1f, 0.5f, 0.8f}) {
    DropoutRun a = RunDropout(Key(99, 0, 1), x, rows, len, 0, rate);
    double kept = 0;
    for (uint8_t m : a.mask) kept += m;
    const double n = static_cast<double>(a.mask.size()), p = 1.0 - rate;
    const double sd = std::sqrt(n * p * (1.0 - p));
    EXPECT_NEAR(kept, n * p, 6.0 * sd) << "rate " << rate;  // ~2e-9 false-failure odds
  }
}

TEST(CpuDropoutTest, RateZeroKeepsEverything) {
  TestRng rng(52);
  std::vector<float> x = rng.Vector(50);
  DropoutRun a = RunDropout(Key(1, 1, 1), x, 5, 10, 0, 0.0f);
  EXPECT_EQ(a.y, x);
  for (uint8_t m : a.mask) EXPECT_EQ(m, 1);
}

TEST(CpuDropoutTest, BackwardAppliesMaskAndScale) {
  TestRng rng(53);
  const int64_t n = 200;
  const float rate = 0.25f;
  std::vector<float> x = rng.Vector(n), dy = rng.Vector(n), dx(n);
  DropoutRun a = RunDropout(Key(3, 4, 5), x, 4, 50, 0, rate);
  DropoutBackward(dy.data(), a.mask.data(), dx.data(), n, rate);
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(dx[i], a.mask[i] ? dy[i] * (1.0f / 0.75f) : 0.0f);
  std::vector<float> inplace = dy;
  DropoutBackward(inplace.data(), a.mask.data(), inplace.data(), n, rate);
  EXPECT_EQ(inplace, dx);
}

// A sample's mask must not depend on which rank (batch slice) processes it.
TEST(CpuDropoutTest, MaskIndependentOfBatchSplit) {
  const int64_t rows = 8, len = 29;
  TestRng rng(54);
  std::vector<float> x = rng.Vector(rows * len);
  const DropoutKey k = Key(42, 2, 7);
  DropoutRun whole = RunDropout(k, x, rows, len, 0, 0.5f);
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<float> row(x.begin() + r * len, x.begin() + (r + 1) * len);
    DropoutRun single = RunDropout(k, row, 1, len, r, 0.5f);
    EXPECT_EQ(single.mask, std::vector<uint8_t>(whole.mask.begin() + r * len,
                                                whole.mask.begin() + (r + 1) * len))
        << "row " << r;
    EXPECT_EQ(single.y, std::vector<float>(whole.y.begin() + r * len, whole.y.begin() + (r + 1) * len));
  }
  // Two "ranks" of 4 rows each.
  DropoutRun second = RunDropout(k, std::vector<float>(x.begin() + 4 * len, x.end()), 4, len, 4, 0.5f);
  EXPECT_EQ(second.mask, std::vector<uint8_t>(whole.mask.begin() + 4 * len, whole.mask.end()));
}

}  // namespace
}  // namespace lockstep::kernels::cpu
