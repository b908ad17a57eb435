// fast_math.h against double-precision libm over dense sweeps: relative error
// bounds, saturation at the ends, NaN propagation, and the activations that use
// them (tanh, sigmoid, GELU) through ActivationForward.
#include "kernels/cpu/fast_math.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/elementwise.h"

namespace lockstep::kernels::cpu {
namespace {

constexpr double kUlp = 5.960464477539063e-08;  // 2^-24, half an ulp of 1

// Every float in [lo, hi] whose spacing is about `step` relative (plus the exact ends).
std::vector<float> Sweep(float lo, float hi) {
  std::vector<float> xs;
  for (float x = lo; x < hi;) {
    xs.push_back(x);
    const float next = x + std::max(std::abs(x) * 3e-6f, 1e-7f);
    x = next > x ? next : std::nextafter(x, hi);
  }
  xs.push_back(hi);
  return xs;
}

TEST(FastMathTest, ExpRelativeErrorWithinTwoUlp) {
  double worst = 0;
  for (float x : Sweep(-87.0f, 88.0f)) {
    const double want = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::abs(FastExp(x) - want) / want);
  }
  EXPECT_LT(worst, 4 * kUlp) << worst / kUlp << " ulp";
  EXPECT_EQ(FastExp(0.0f), 1.0f);
}

TEST(FastMathTest, ExpClampsInsteadOfOverflowing) {
  EXPECT_TRUE(std::isfinite(FastExp(1000.0f)));
  EXPECT_GT(FastExp(1000.0f), 1e38f);
  EXPECT_GE(FastExp(-1000.0f), 0.0f);
  EXPECT_LT(FastExp(-1000.0f), 2e-38f);
}

TEST(FastMathTest, TanhRelativeErrorWithinFiveHalfUlps) {
  double worst = 0, worst_x = 0;
  for (float x : Sweep(-12.0f, 12.0f)) {
    const double want = std::tanh(static_cast<double>(x));
    const double err = want == 0 ? std::abs(FastTanh(x)) : std::abs(FastTanh(x) - want) / std::abs(want);
    if (err > worst) worst = err, worst_x = x;
  }
  EXPECT_LT(worst, 5 * kUlp) << worst / kUlp << " half-ulps at x=" << worst_x;
  EXPECT_EQ(FastTanh(0.0f), 0.0f);
  EXPECT_EQ(FastTanh(20.0f), 1.0f);
  EXPECT_EQ(FastTanh(-20.0f), -1.0f);
  EXPECT_EQ(FastTanh(1e-30f), 1e-30f);  // odd polynomial: exact for tiny x
  for (float x : {0.3f, 0.7f, 2.5f}) EXPECT_EQ(FastTanh(-x), -FastTanh(x));
}

TEST(FastMathTest, SigmoidRelativeErrorWithinSixHalfUlps) {
  double worst = 0;
  for (float x : Sweep(-80.0f, 80.0f)) {
    const double want = 1.0 / (1.0 + std::exp(-static_cast<double>(x)));
    worst = std::max(worst, std::abs(FastSigmoid(x) - want) / want);
  }
  EXPECT_LT(worst, 6 * kUlp) << worst / kUlp << " half-ulps";
  EXPECT_EQ(FastSigmoid(0.0f), 0.5f);
  EXPECT_EQ(FastSigmoid(200.0f), 1.0f);
  EXPECT_GE(FastSigmoid(-200.0f), 0.0f);
  EXPECT_LT(FastSigmoid(-200.0f), 1e-37f);
}

TEST(FastMathTest, NanPropagates) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(std::isnan(FastExp(nan)));
  EXPECT_TRUE(std::isnan(FastTanh(nan)));
  EXPECT_TRUE(std::isnan(FastSigmoid(nan)));
}

// The vectorised activation loops (odd lengths exercise the scalar tails) agree with
// libm in double to a few ulp.
TEST(FastMathTest, VectorisedActivationsMatchLibm) {
  std::vector<float> x;
  for (int i = 0; i < 1003; ++i) x.push_back(-15.0f + 30.0f * static_cast<float>(i) / 1002.0f);
  std::vector<float> y(x.size());
  ActivationForward(Activation::kTanh, x.data(), y.data(), static_cast<int64_t>(x.size()));
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(y[i], std::tanh(static_cast<double>(x[i])), 2e-7) << x[i];
  ActivationForward(Activation::kSigmoid, x.data(), y.data(), static_cast<int64_t>(x.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_NEAR(y[i], 1.0 / (1.0 + std::exp(-static_cast<double>(x[i]))), 2e-7) << x[i];
  }
  ActivationForward(Activation::kGelu, x.data(), y.data(), static_cast<int64_t>(x.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    const double v = x[i];
    const double want = 0.5 * v * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
    EXPECT_NEAR(y[i], want, 2e-6 * std::max(1.0, std::abs(want))) << x[i];
  }
}

}  // namespace
}  // namespace lockstep::kernels::cpu
