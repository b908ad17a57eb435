// MaxPool2d against a naive loop, including padding, stride != window and ties.
#include "kernels/cpu/pool.h"

#include <gtest/gtest.h>

#include <limits>
#include <vector>

#include "tests/kernels/kernels_test_util.h"

namespace lockstep::kernels::cpu {
namespace {

using testing::TestRng;

Pool2dShape MakePool(int64_t n, int64_t h, int64_t w, int64_t c, int64_t wh, int64_t ww,
                     int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
  Pool2dShape s;
  s.batch = n;
  s.in_h = h;
  s.in_w = w;
  s.channels = c;
  s.window_h = wh;
  s.window_w = ww;
  s.stride_h = sh;
  s.stride_w = sw;
  s.pad_h = ph;
  s.pad_w = pw;
  return s;
}

std::vector<Pool2dShape> PoolShapes() {
  return {MakePool(2, 6, 6, 3, 2, 2, 2, 2, 0, 0), MakePool(2, 7, 5, 4, 3, 3, 2, 2, 1, 1),
          MakePool(1, 5, 8, 2, 2, 3, 1, 2, 0, 1), MakePool(3, 4, 4, 1, 3, 2, 1, 1, 1, 0)};
}

// Naive reference: scans the window in (kh, kw) order, keeps the first maximum.
void NaivePool(const Pool2dShape& s, const std::vector<float>& x, std::vector<float>* y,
               std::vector<int32_t>* arg) {
  const int64_t oh_n = s.out_h(), ow_n = s.out_w();
  y->assign(s.batch * oh_n * ow_n * s.channels, 0.0f);
  arg->assign(y->size(), -1);
  for (int64_t n = 0; n < s.batch; ++n)
    for (int64_t oh = 0; oh < oh_n; ++oh)
      for (int64_t ow = 0; ow < ow_n; ++ow)
        for (int64_t c = 0; c < s.channels; ++c) {
          float best = -std::numeric_limits<float>::infinity();
          int32_t best_i = -1;
          for (int64_t kh = 0; kh < s.window_h; ++kh)
            for (int64_t kw = 0; kw < s.window_w; ++kw) {
              const int64_t ih = oh * s.stride_h - s.pad_h + kh;
              const int64_t iw = ow * s.stride_w - s.pad_w + kw;
              if (ih < 0 || ih >= s.in_h || iw < 0 || iw >= s.in_w) continue;
              const int64_t i = ((n * s.in_h + ih) * s.in_w + iw) * s.channels + c;
              if (best_i < 0 || x[i] > best) {
                best = x[i];
                best_i = static_cast<int32_t>(i);
              }
            }
          const int64_t o = ((n * oh_n + oh) * ow_n + ow) * s.channels + c;
          (*y)[o] = best;
          (*arg)[o] = best_i;
        }
}

TEST(CpuMaxPool2dTest, ForwardMatchesNaive) {
  for (const Pool2dShape& s : PoolShapes()) {
    TestRng rng(21);
    std::vector<float> x = rng.Vector(s.batch * s.in_h * s.in_w * s.channels);
    std::vector<float> ref_y;
    std::vector<int32_t> ref_arg;
    NaivePool(s, x, &ref_y, &ref_arg);
    std::vector<float> y(ref_y.size());
    std::vector<int32_t> arg(ref_y.size());
    MaxPool2dForward(s, x.data(), y.data(), arg.data());
    EXPECT_EQ(y, ref_y);
    EXPECT_EQ(arg, ref_arg);
  }
}

// All-negative inputs: a padded zero must never win over a real (negative) value.
TEST(CpuMaxPool2dTest, PaddingNeverWins) {
  const Pool2dShape s = MakePool(1, 3, 3, 2, 3, 3, 2, 2, 1, 1);
  TestRng rng(22);
  std::vector<float> x = rng.Vector(18, -5.0f, -1.0f);
  std::vector<float> y(s.out_h() * s.out_w() * 2);
  std::vector<int32_t> arg(y.size());
  MaxPool2dForward(s, x.data(), y.data(), arg.data());
  for (size_t i = 0; i < y.size(); ++i) {
    EXPECT_LT(y[i], 0.0f);
    EXPECT_EQ(y[i], x[arg[i]]);
  }
}

TEST(CpuMaxPool2dTest, TiesPickFirstInScanOrder) {
  const Pool2dShape s = MakePool(1, 4, 4, 2, 2, 2, 2, 2, 0, 0);
  std::vector<float> x(32, 3.0f);  // every element ties
  std::vector<float> y(8);
  std::vector<int32_t> arg(8);
  MaxPool2dForward(s, x.data(), y.data(), arg.data());
  // Window (oh, ow) starts at (2 oh, 2 ow): first element index ((2oh)*4 + 2ow)*2 + c.
  for (int oh = 0; oh < 2; ++oh)
    for (int ow = 0; ow < 2; ++ow)
      for (int c = 0; c < 2; ++c) EXPECT_EQ(arg[(oh * 2 + ow) * 2 + c], (2 * oh * 4 + 2 * ow) * 2 + c);
}

TEST(CpuMaxPool2dTest, BackwardScattersToArgmaxAndAccumulatesOverlaps) {
  for (const Pool2dShape& s : PoolShapes()) {
    TestRng rng(23);
    const int64_t in_n = s.batch * s.in_h * s.in_w * s.channels;
    std::vector<float> x = rng.Vector(in_n);
    std::vector<float> y;
    std::vector<int32_t> arg;
    NaivePool(s, x, &y, &arg);
    std::vector<float> dy = rng.Vector(y.size());
    std::vector<double> ref(in_n, 0.0);
    for (size_t i = 0; i < dy.size(); ++i) ref[arg[i]] += dy[i];
    std::vector<float> dx(in_n, NAN);
    MaxPool2dBackward(s, dy.data(), arg.data(), dx.data());
    for (int64_t i = 0; i < in_n; ++i) EXPECT_NEAR(dx[i], ref[i], 1e-6) << i;
  }
}

}  // namespace
}  // namespace lockstep::kernels::cpu
