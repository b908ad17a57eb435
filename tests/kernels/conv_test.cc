// Conv2d (im2col + GEMM) against direct double-precision loops, adjoint loops
// for both gradients, and a finite-difference check of L = sum(y * r). The shape maker
// and the loops' product iteration are tests/kernels/conv_shapes.h (shared with the
// CUDA conv tests' reference).
#include "kernels/cpu/conv.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/cpu/gemm.h"
#include "tests/kernels/conv_shapes.h"
#include "tests/kernels/kernels_test_util.h"

namespace lockstep::kernels::cpu {
namespace {

using testing::DescribeConv;
using testing::ForEachConvProduct;
using testing::MakeConvShape;
using testing::MaxRelError;
using testing::TestRng;

// Shapes covering stride 2, padding, non-square kernels, channels > 1, batch > 1 and
// the 1x1 fast path.
std::vector<Conv2dShape> TestShapes() {
  return {
      MakeConvShape(2, 5, 6, 3, 4, 3, 3, 1, 1, 1, 1),
      MakeConvShape(3, 7, 7, 2, 5, 3, 2, 2, 2, 1, 1),
      MakeConvShape(1, 9, 8, 1, 2, 2, 3, 2, 1, 0, 1),
      MakeConvShape(2, 6, 5, 4, 3, 1, 1, 1, 1, 0, 0),
      MakeConvShape(2, 6, 5, 4, 3, 1, 1, 2, 2, 0, 0),
      MakeConvShape(2, 13, 13, 8, 16, 3, 3, 1, 1, 0, 0),
      MakeConvShape(3, 10, 9, 1, 16, 3, 3, 1, 1, 0, 0),  // one input channel: direct forward
      MakeConvShape(2, 12, 11, 1, 64, 2, 3, 1, 1, 0, 0),
      MakeConvShape(2, 7, 8, 1, 24, 3, 2, 1, 1, 0, 0),
      MakeConvShape(1, 4, 4, 2, 3, 5, 5, 1, 1, 2, 2),  // kernel wider than the input interior
  };
}

std::vector<double> NaiveForward(const Conv2dShape& s, const std::vector<float>& x,
                                 const std::vector<float>& w) {
  std::vector<double> y(s.col_rows() * s.out_c, 0.0);
  ForEachConvProduct(
      s, [&](int64_t xi, int64_t wi, int64_t yi) { y[yi] += static_cast<double>(x[xi]) * w[wi]; });
  return y;
}

std::vector<double> NaiveBackwardData(const Conv2dShape& s, const std::vector<float>& dy,
                                      const std::vector<float>& w) {
  std::vector<double> dx(s.batch * s.in_h * s.in_w * s.in_c, 0.0);
  ForEachConvProduct(s, [&](int64_t xi, int64_t wi, int64_t yi) {
    dx[xi] += static_cast<double>(dy[yi]) * w[wi];
  });
  return dx;
}

std::vector<double> NaiveBackwardFilter(const Conv2dShape& s, const std::vector<float>& x,
                                        const std::vector<float>& dy) {
  std::vector<double> dw(s.col_cols() * s.out_c, 0.0);
  ForEachConvProduct(s, [&](int64_t xi, int64_t wi, int64_t yi) {
    dw[wi] += static_cast<double>(x[xi]) * dy[yi];
  });
  return dw;
}

struct ConvData {
  std::vector<float> x, w, dy, ws;
};

ConvData MakeData(const Conv2dShape& s, uint32_t seed) {
  TestRng rng(seed);
  ConvData d;
  d.x = rng.Vector(s.batch * s.in_h * s.in_w * s.in_c);
  d.w = rng.Vector(s.col_cols() * s.out_c);
  d.dy = rng.Vector(s.col_rows() * s.out_c);
  d.ws.assign(Conv2dWorkspaceFloats(s), 0.0f);
  return d;
}

TEST(CpuConv2dTest, ForwardMatchesDirectConvolution) {
  for (const Conv2dShape& s : TestShapes()) {
    ConvData d = MakeData(s, 11);
    std::vector<float> y(s.col_rows() * s.out_c, NAN);
    Conv2dForward(s, d.x.data(), d.w.data(), y.data(), d.ws.data());
    EXPECT_LT(MaxRelError(y, NaiveForward(s, d.x, d.w)), 1e-5) << DescribeConv(s);
  }
}

TEST(CpuConv2dTest, BackwardDataMatchesAdjointLoop) {
  for (const Conv2dShape& s : TestShapes()) {
    ConvData d = MakeData(s, 12);
    std::vector<float> dx(d.x.size(), NAN);  // must be overwritten
    Conv2dBackwardData(s, d.dy.data(), d.w.data(), dx.data(), d.ws.data());
    EXPECT_LT(MaxRelError(dx, NaiveBackwardData(s, d.dy, d.w)), 1e-5) << DescribeConv(s);
  }
}

TEST(CpuConv2dTest, BackwardFilterMatchesAdjointLoop) {
  for (const Conv2dShape& s : TestShapes()) {
    ConvData d = MakeData(s, 13);
    std::vector<float> dw(d.w.size(), NAN);  // beta 0 must overwrite
    Conv2dBackwardFilter(s, d.x.data(), d.dy.data(), 0.0f, dw.data(), d.ws.data());
    EXPECT_LT(MaxRelError(dw, NaiveBackwardFilter(s, d.x, d.dy)), 1e-5) << DescribeConv(s);
  }
}

TEST(CpuConv2dTest, BackwardFilterBetaOneAccumulates) {
  for (const Conv2dShape& s : TestShapes()) {
    ConvData d = MakeData(s, 14);
    TestRng rng(99);
    std::vector<float> dw = rng.Vector(d.w.size());
    std::vector<double> ref = NaiveBackwardFilter(s, d.x, d.dy);
    for (size_t i = 0; i < ref.size(); ++i) ref[i] += dw[i];
    Conv2dBackwardFilter(s, d.x.data(), d.dy.data(), 1.0f, dw.data(), d.ws.data());
    EXPECT_LT(MaxRelError(dw, ref), 1e-5) << DescribeConv(s);
  }
}

// L = sum(y * r): dL/dx = BackwardData(r), dL/dw = BackwardFilter(r). L is linear in
// each input, so a large central step has no truncation error, only rounding.
TEST(CpuConv2dTest, GradientsMatchFiniteDifferences) {
  for (const Conv2dShape& s : TestShapes()) {
    ConvData d = MakeData(s, 15);
    const std::vector<float>& r = d.dy;
    auto loss = [&](const std::vector<float>& x, const std::vector<float>& w) {
      std::vector<float> y(s.col_rows() * s.out_c);
      std::vector<float> ws(Conv2dWorkspaceFloats(s));
      Conv2dForward(s, x.data(), w.data(), y.data(), ws.data());
      double l = 0.0;
      for (size_t i = 0; i < y.size(); ++i) l += static_cast<double>(y[i]) * r[i];
      return l;
    };
    std::vector<float> dx(d.x.size()), dw(d.w.size());
    Conv2dBackwardData(s, r.data(), d.w.data(), dx.data(), d.ws.data());
    Conv2dBackwardFilter(s, d.x.data(), r.data(), 0.0f, dw.data(), d.ws.data());
    const float h = 0.5f;
    TestRng pick(7);
    for (int trial = 0; trial < 6; ++trial) {
      const size_t i = pick.Next() % d.x.size();
      std::vector<float> xp = d.x, xm = d.x;
      xp[i] += h;
      xm[i] -= h;
      const double fd = (loss(xp, d.w) - loss(xm, d.w)) / (2.0 * h);
      EXPECT_NEAR(dx[i], fd, 1e-3 * std::max(1.0, std::fabs(fd))) << DescribeConv(s) << " dx " << i;
      const size_t j = pick.Next() % d.w.size();
      std::vector<float> wp = d.w, wm = d.w;
      wp[j] += h;
      wm[j] -= h;
      const double fdw = (loss(d.x, wp) - loss(d.x, wm)) / (2.0 * h);
      EXPECT_NEAR(dw[j], fdw, 1e-3 * std::max(1.0, std::fabs(fdw)))
          << DescribeConv(s) << " dw " << j;
    }
  }
}

// A per-sample im2col above the workspace cap (16 Mi floats) forces one GEMM per
// sample; the results must still match the direct loops.
TEST(CpuConv2dTest, LargeInputsAreChunkedAndStillCorrect) {
  const Conv2dShape s = MakeConvShape(2, 120, 120, 128, 2, 3, 3, 1, 1, 1, 1);
  ASSERT_LT(Conv2dWorkspaceFloats(s), static_cast<size_t>(s.col_rows() * s.col_cols()));
  ConvData d = MakeData(s, 16);
  std::vector<float> y(s.col_rows() * s.out_c), dx(d.x.size()), dw(d.w.size());
  Conv2dForward(s, d.x.data(), d.w.data(), y.data(), d.ws.data());
  // Float sums over K = 1152 (and 28800 for dw) terms: tolerance scaled accordingly.
  EXPECT_LT(MaxRelError(y, NaiveForward(s, d.x, d.w)), 1e-4);
  Conv2dBackwardData(s, d.dy.data(), d.w.data(), dx.data(), d.ws.data());
  EXPECT_LT(MaxRelError(dx, NaiveBackwardData(s, d.dy, d.w)), 1e-4);
  Conv2dBackwardFilter(s, d.x.data(), d.dy.data(), 0.0f, dw.data(), d.ws.data());
  EXPECT_LT(MaxRelError(dw, NaiveBackwardFilter(s, d.x, d.dy)), 1e-4);
}

// The im2col rows are built and consumed in cache-sized pieces of whole samples
// (256 KiB): here 129,600 floats per sample, so each of the 5 samples is its own
// piece, and the filter gradient sums the pieces (beta 1: onto what dw held). With 1
// and with 2 threads (pieces inside each thread's samples).
TEST(CpuConv2dTest, CacheSizedPiecesMatchNaive) {
  const int before = BlasThreads();
  const Conv2dShape s = MakeConvShape(5, 30, 30, 16, 8, 3, 3, 1, 1, 1, 1);
  for (int threads : {1, 2}) {
    SetBlasThreads(threads);
    ConvData d = MakeData(s, 23);
    std::vector<float> y(s.col_rows() * s.out_c, NAN), dx(d.x.size(), NAN);
    Conv2dForward(s, d.x.data(), d.w.data(), y.data(), d.ws.data());
    EXPECT_LT(MaxRelError(y, NaiveForward(s, d.x, d.w)), 1e-5) << threads << " threads";
    Conv2dBackwardData(s, d.dy.data(), d.w.data(), dx.data(), d.ws.data());
    EXPECT_LT(MaxRelError(dx, NaiveBackwardData(s, d.dy, d.w)), 1e-5) << threads << " threads";
    TestRng rng(99);
    std::vector<float> dw = rng.Vector(d.w.size());
    std::vector<double> ref = NaiveBackwardFilter(s, d.x, d.dy);
    for (size_t i = 0; i < ref.size(); ++i) ref[i] += dw[i];
    Conv2dBackwardFilter(s, d.x.data(), d.dy.data(), 1.0f, dw.data(), d.ws.data());
    // Sums over 4,500 terms per weight.
    EXPECT_LT(MaxRelError(dw, ref), 1e-4) << threads << " threads";
  }
  SetBlasThreads(before);
}

TEST(CpuConv2dTest, PointwiseFastPathNeedsNoWorkspace) {
  EXPECT_EQ(Conv2dWorkspaceFloats(MakeConvShape(4, 5, 5, 8, 8, 1, 1, 1, 1, 0, 0)), 0u);
  EXPECT_GT(Conv2dWorkspaceFloats(MakeConvShape(4, 5, 5, 8, 8, 1, 1, 2, 2, 0, 0)), 0u);
}

TEST(CpuConv2dTest, ForwardIsBitwiseDeterministic) {
  const Conv2dShape s = MakeConvShape(4, 13, 13, 32, 64, 3, 3, 1, 1, 0, 0);
  ConvData d = MakeData(s, 17);
  std::vector<float> y1(s.col_rows() * s.out_c), y2(y1.size());
  Conv2dForward(s, d.x.data(), d.w.data(), y1.data(), d.ws.data());
  Conv2dForward(s, d.x.data(), d.w.data(), y2.data(), d.ws.data());
  EXPECT_EQ(y1, y2);
}

// With several BLAS threads the samples are split over threads (each its own
// im2col + GEMM, dw summed over the parts): still the naive results, beta 1 too.
TEST(CpuConv2dTest, SamplesSplitOverThreadsMatchNaive) {
  const int before = BlasThreads();
  SetBlasThreads(3);
  for (const Conv2dShape& s : TestShapes()) {
    ConvData d = MakeData(s, 21);
    std::vector<float> y(s.col_rows() * s.out_c, NAN), dx(d.x.size(), NAN);
    Conv2dForward(s, d.x.data(), d.w.data(), y.data(), d.ws.data());
    EXPECT_LT(MaxRelError(y, NaiveForward(s, d.x, d.w)), 1e-5) << DescribeConv(s);
    Conv2dBackwardData(s, d.dy.data(), d.w.data(), dx.data(), d.ws.data());
    EXPECT_LT(MaxRelError(dx, NaiveBackwardData(s, d.dy, d.w)), 1e-5) << DescribeConv(s);
    TestRng rng(98);
    std::vector<float> dw = rng.Vector(d.w.size());
    std::vector<double> ref = NaiveBackwardFilter(s, d.x, d.dy);
    for (size_t i = 0; i < ref.size(); ++i) ref[i] += dw[i];
    Conv2dBackwardFilter(s, d.x.data(), d.dy.data(), 1.0f, dw.data(), d.ws.data());
    EXPECT_LT(MaxRelError(dw, ref), 1e-5) << DescribeConv(s);
  }
  EXPECT_EQ(BlasThreads(), 3) << "the BLAS thread count is restored after a parallel region";
  SetBlasThreads(before);
}

}  // namespace
}  // namespace lockstep::kernels::cpu
