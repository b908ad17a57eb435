// Losses against direct formulas in double and central finite differences.
#include "kernels/cpu/loss.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "tests/kernels/kernels_test_util.h"

namespace lockstep::kernels::cpu {
namespace {

using testing::TestRng;

double DirectXent(const std::vector<float>& z, const std::vector<int32_t>& labels, int64_t classes) {
  double total = 0.0;
  for (size_t r = 0; r < labels.size(); ++r) {
    double sum = 0.0;
    for (int64_t j = 0; j < classes; ++j) sum += std::exp(static_cast<double>(z[r * classes + j]));
    total += -std::log(std::exp(static_cast<double>(z[r * classes + labels[r]])) / sum);
  }
  return total;
}

TEST(CpuSoftmaxCrossEntropyTest, MatchesDirectFormula) {
  TestRng rng(31);
  const int64_t rows = 5, classes = 7;
  std::vector<float> z = rng.Vector(rows * classes, -3.0f, 3.0f);
  std::vector<int32_t> labels = {0, 6, 3, 3, 1};
  EXPECT_NEAR(SoftmaxCrossEntropy(z.data(), labels.data(), rows, classes, 1.0f, nullptr),
              DirectXent(z, labels, classes), 1e-9);
}

TEST(CpuSoftmaxCrossEntropyTest, GradientMatchesFiniteDifferences) {
  TestRng rng(32);
  const int64_t rows = 3, classes = 5;
  const float scale = 0.25f;
  std::vector<float> z = rng.Vector(rows * classes, -2.0f, 2.0f);
  std::vector<int32_t> labels = {4, 0, 2};
  std::vector<float> dz(z.size());
  SoftmaxCrossEntropy(z.data(), labels.data(), rows, classes, scale, dz.data());
  const float h = 1e-2f;
  for (size_t i = 0; i < z.size(); ++i) {
    std::vector<float> zp = z, zm = z;
    zp[i] += h;
    zm[i] -= h;
    const double fd = (DirectXent(zp, labels, classes) - DirectXent(zm, labels, classes)) /
                      (static_cast<double>(zp[i]) - zm[i]) * scale;
    EXPECT_NEAR(dz[i], fd, 1e-4) << i;
  }
}

TEST(CpuSoftmaxCrossEntropyTest, StableForHugeLogits) {
  // Row 0: label is the max by 10 -> loss ~ log(1 + 2 e^-10). Row 1: label 20 below.
  std::vector<float> z = {1e4f, 9990.0f, 9990.0f, -1e4f, -9980.0f, -1e4f};
  std::vector<int32_t> labels = {0, 0};
  std::vector<float> dz(6);
  const double loss = SoftmaxCrossEntropy(z.data(), labels.data(), 2, 3, 1.0f, dz.data());
  const double row0 = std::log1p(2.0 * std::exp(-10.0));
  const double row1 = 20.0 + std::log1p(2.0 * std::exp(-20.0));
  EXPECT_NEAR(loss, row0 + row1, 1e-6);
  for (float g : dz) EXPECT_TRUE(std::isfinite(g));
  EXPECT_NEAR(dz[3], -1.0, 1e-6);   // softmax of the label ~ e^-20
  EXPECT_NEAR(dz[4], 1.0, 1e-6);
}

TEST(CpuSoftmaxTest, RowsSumToOneAndMatchDirect) {
  TestRng rng(33);
  std::vector<float> z = rng.Vector(12, -4.0f, 4.0f), p(12);
  Softmax(z.data(), 3, 4, p.data());
  for (int r = 0; r < 3; ++r) {
    double sum = 0.0, denom = 0.0;
    for (int j = 0; j < 4; ++j) denom += std::exp(static_cast<double>(z[r * 4 + j]));
    for (int j = 0; j < 4; ++j) {
      sum += p[r * 4 + j];
      EXPECT_NEAR(p[r * 4 + j], std::exp(static_cast<double>(z[r * 4 + j])) / denom, 1e-7);
    }
    EXPECT_NEAR(sum, 1.0, 1e-6);
  }
}

TEST(CpuCountCorrectTest, CountsArgmaxFirstOnTies) {
  std::vector<float> z = {0.1f, 0.9f, 0.0f,   // argmax 1
                          0.5f, 0.5f, 0.2f,   // tie -> first (0)
                          -1.f, -2.f, -0.5f,  // argmax 2
                          3.0f, 3.0f, 3.0f};  // tie -> 0
  std::vector<int32_t> labels = {1, 1, 2, 0};
  EXPECT_EQ(CountCorrect(z.data(), labels.data(), 4, 3), 3);
}

double DirectMse(const std::vector<float>& p, const std::vector<float>& t, int64_t row_len) {
  double s = 0.0;
  for (size_t i = 0; i < p.size(); ++i) s += (static_cast<double>(p[i]) - t[i]) * (p[i] - t[i]);
  return s / row_len;
}

TEST(CpuMeanSquaredErrorTest, ValueAndGradientMatchFiniteDifferences) {
  TestRng rng(34);
  const int64_t n = 12, row_len = 4;
  const float scale = 0.5f;
  std::vector<float> p = rng.Vector(n), t = rng.Vector(n), dp(n);
  EXPECT_NEAR(MeanSquaredError(p.data(), t.data(), n, row_len, scale, dp.data()),
              DirectMse(p, t, row_len), 1e-9);
  for (int64_t i = 0; i < n; ++i) {
    std::vector<float> pp = p, pm = p;
    pp[i] += 1e-2f;
    pm[i] -= 1e-2f;
    const double fd = (DirectMse(pp, t, row_len) - DirectMse(pm, t, row_len)) /
                      (static_cast<double>(pp[i]) - pm[i]) * scale;
    EXPECT_NEAR(dp[i], fd, 1e-5) << i;
  }
}

// Reference BCE by the textbook formula in long double (fine for moderate logits).
double DirectBce(const std::vector<float>& z, const std::vector<float>& t, int64_t row_len) {
  long double s = 0.0L;
  for (size_t i = 0; i < z.size(); ++i) {
    const long double sig = 1.0L / (1.0L + std::exp(-static_cast<long double>(z[i])));
    s += -(t[i] * std::log(sig) + (1.0L - t[i]) * std::log(1.0L - sig));
  }
  return static_cast<double>(s / row_len);
}

TEST(CpuBinaryCrossEntropyTest, ValueAndGradientMatchFiniteDifferences) {
  TestRng rng(35);
  const int64_t n = 10, row_len = 5;
  const float scale = 2.0f;
  std::vector<float> z = rng.Vector(n, -4.0f, 4.0f), t = rng.Vector(n, 0.0f, 1.0f), dz(n);
  EXPECT_NEAR(BinaryCrossEntropyWithLogits(z.data(), t.data(), n, row_len, scale, dz.data()),
              DirectBce(z, t, row_len), 1e-9);
  for (int64_t i = 0; i < n; ++i) {
    std::vector<float> zp = z, zm = z;
    zp[i] += 1e-2f;
    zm[i] -= 1e-2f;
    const double fd = (DirectBce(zp, t, row_len) - DirectBce(zm, t, row_len)) /
                      (static_cast<double>(zp[i]) - zm[i]) * scale;
    EXPECT_NEAR(dz[i], fd, 1e-5) << i;
  }
}

TEST(CpuBinaryCrossEntropyTest, StableForLogitsOfMagnitudeHundred) {
  // Correct confident predictions cost ~e^-100; wrong ones cost ~100.
  std::vector<float> z = {100.0f, -100.0f, 100.0f, -100.0f};
  std::vector<float> t = {1.0f, 0.0f, 0.0f, 1.0f};
  std::vector<float> dz(4);
  const double loss = BinaryCrossEntropyWithLogits(z.data(), t.data(), 4, 1, 1.0f, dz.data());
  EXPECT_NEAR(loss, 200.0, 1e-9);
  EXPECT_TRUE(std::isfinite(loss));
  EXPECT_NEAR(dz[0], 0.0, 1e-30);
  EXPECT_NEAR(dz[1], 0.0, 1e-30);
  EXPECT_FLOAT_EQ(dz[2], 1.0f);
  EXPECT_FLOAT_EQ(dz[3], -1.0f);
  // A single correct one: log1p(e^-100) ~ 3.72e-44, not 0 and not NaN.
  const double tiny = BinaryCrossEntropyWithLogits(z.data(), t.data(), 1, 1, 1.0f, nullptr);
  EXPECT_GT(tiny, 0.0);
  EXPECT_NEAR(tiny, std::exp(-100.0), 1e-50);
}

}  // namespace
}  // namespace lockstep::kernels::cpu
