// Elementwise kernels: bias, activations (backward vs finite differences),
// Scale/Axpy, SumOfSquares.
#include "kernels/cpu/elementwise.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/cpu/gemm.h"
#include "tests/kernels/kernels_test_util.h"

namespace lockstep::kernels::cpu {
namespace {

using testing::TestRng;

TEST(CpuBiasTest, AddAndBackwardMatchNaive) {
  TestRng rng(41);
  const int64_t rows = 7, cols = 300;  // > one 256-column block
  std::vector<float> y = rng.Vector(rows * cols), b = rng.Vector(cols);
  std::vector<float> y0 = y;
  BiasAdd(y.data(), b.data(), rows, cols);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) EXPECT_EQ(y[r * cols + c], y0[r * cols + c] + b[c]);
  std::vector<float> db(cols, NAN);
  BiasBackward(y0.data(), rows, cols, 0.0f, db.data());
  std::vector<float> db2 = b;
  BiasBackward(y0.data(), rows, cols, 1.0f, db2.data());
  for (int64_t c = 0; c < cols; ++c) {
    double s = 0.0;
    for (int64_t r = 0; r < rows; ++r) s += y0[r * cols + c];
    EXPECT_NEAR(db[c], s, 1e-6);
    EXPECT_NEAR(db2[c], s + b[c], 1e-6);
  }
}

// Large enough to be split over threads (rows in parts, summed in part order): still
// the naive column sums, onto dbias with beta 1, and the same bits on a second call.
TEST(CpuBiasTest, BackwardSplitOverThreadsMatchesNaive) {
  const int before = BlasThreads();
  SetBlasThreads(3);
  TestRng rng(43);
  const int64_t rows = 1001, cols = 300;
  std::vector<float> dy = rng.Vector(rows * cols), b = rng.Vector(cols);
  std::vector<float> db = b, again = b;
  BiasBackward(dy.data(), rows, cols, 1.0f, db.data());
  BiasBackward(dy.data(), rows, cols, 1.0f, again.data());
  EXPECT_EQ(db, again);
  for (int64_t c = 0; c < cols; ++c) {
    double s = b[c];
    for (int64_t r = 0; r < rows; ++r) s += dy[r * cols + c];
    EXPECT_NEAR(db[c], s, 1e-5 * (1.0 + std::abs(s))) << "column " << c;
  }
  SetBlasThreads(before);
}

double ActRef(Activation act, double x) {
  switch (act) {
    case Activation::kIdentity: return x;
    case Activation::kRelu: return x > 0 ? x : 0;
    case Activation::kTanh: return std::tanh(x);
    case Activation::kSigmoid: return 1.0 / (1.0 + std::exp(-x));
    case Activation::kGelu:
      return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
  }
  return NAN;
}

const char* Name(Activation a) {
  switch (a) {
    case Activation::kIdentity: return "identity";
    case Activation::kRelu: return "relu";
    case Activation::kTanh: return "tanh";
    case Activation::kSigmoid: return "sigmoid";
    case Activation::kGelu: return "gelu";
  }
  return "?";
}

const Activation kAll[] = {Activation::kIdentity, Activation::kRelu, Activation::kTanh,
                           Activation::kSigmoid, Activation::kGelu};

TEST(CpuActivationTest, ForwardMatchesFormula) {
  TestRng rng(42);
  std::vector<float> x = rng.Vector(200, -6.0f, 6.0f);
  x.push_back(-100.0f);  // sigmoid must not overflow
  x.push_back(100.0f);
  for (Activation a : kAll) {
    std::vector<float> y(x.size());
    ActivationForward(a, x.data(), y.data(), static_cast<int64_t>(x.size()));
    for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(y[i], ActRef(a, x[i]), 2e-6 * std::max(1.0f, std::fabs(x[i]))) << Name(a) << " x=" << x[i];
  }
}

TEST(CpuActivationTest, BackwardMatchesFiniteDifferences) {
  TestRng rng(43);
  std::vector<float> x = rng.Vector(100, -3.0f, 3.0f);
  for (float& v : x)
    if (std::fabs(v) < 0.05f) v = 0.5f;  // keep ReLU's kink out of the difference stencil
  const int64_t n = static_cast<int64_t>(x.size());
  for (Activation a : kAll) {
    std::vector<float> y(n), dy = rng.Vector(n), dx(n);
    ActivationForward(a, x.data(), y.data(), n);
    ActivationBackward(a, x.data(), y.data(), dy.data(), dx.data(), n);
    const double h = 1e-3;
    for (int64_t i = 0; i < n; ++i) {
      const double fd = (ActRef(a, x[i] + h) - ActRef(a, x[i] - h)) / (2 * h) * dy[i];
      EXPECT_NEAR(dx[i], fd, 1e-5) << Name(a) << " x=" << x[i];
    }
  }
}

TEST(CpuActivationTest, BackwardInPlaceOverDy) {
  TestRng rng(44);
  std::vector<float> x = rng.Vector(64, -2.0f, 2.0f), y(64), dy = rng.Vector(64), dx(64);
  for (Activation a : kAll) {
    ActivationForward(a, x.data(), y.data(), 64);
    ActivationBackward(a, x.data(), y.data(), dy.data(), dx.data(), 64);
    std::vector<float> inplace = dy;
    ActivationBackward(a, x.data(), y.data(), inplace.data(), inplace.data(), 64);
    EXPECT_EQ(inplace, dx) << Name(a);
  }
}

TEST(CpuScaleAxpyTest, MatchNaive) {
  TestRng rng(45);
  std::vector<float> x = rng.Vector(37), y = rng.Vector(37);
  std::vector<float> sx = x, ay = y;
  Scale(sx.data(), 37, -1.5f);
  Axpy(0.25f, x.data(), ay.data(), 37);
  for (int i = 0; i < 37; ++i) {
    EXPECT_EQ(sx[i], x[i] * -1.5f);
    EXPECT_FLOAT_EQ(ay[i], 0.25f * x[i] + y[i]);
  }
}

TEST(CpuSumOfSquaresTest, ExactOnIntegerData) {
  // Integers up to 1000 squared sum to < 2^53: exact in double regardless of order.
  TestRng rng(46);
  const int64_t n = 100003;
  std::vector<float> x(n);
  long long ref = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int v = static_cast<int>(rng.Next() % 2001) - 1000;
    x[i] = static_cast<float>(v);
    ref += static_cast<long long>(v) * v;
  }
  EXPECT_EQ(SumOfSquares(x.data(), n), static_cast<double>(ref));
  EXPECT_EQ(SumOfSquares(x.data(), 5), static_cast<double>(x[0] * x[0] + x[1] * x[1] +
                                                           x[2] * x[2] + x[3] * x[3] + x[4] * x[4]));
  EXPECT_EQ(SumOfSquares(x.data(), 0), 0.0);
}

}  // namespace
}  // namespace lockstep::kernels::cpu
