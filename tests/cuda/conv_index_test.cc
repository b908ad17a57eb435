// Host tests (no GPU) of the CUDA conv index math in kernels/cuda/conv_index.h, over
// every index of the shared shape family: im2col against a copy-into-a-padded-buffer
// reference, the col2im gather against a scatter-add reference (exact, integer-valued
// floats) and bitwise against the CPU's scatter order, the covering-window ranges
// against brute force, the chunk planner's bounds, and a whole conv (forward and both
// gradients, chunked as conv.cu chunks) built from the helpers and a naive matmul
// against a direct convolution.
#include "kernels/cuda/conv_index.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "tests/cuda/conv_reference.h"
#include "tests/kernels/kernels_test_util.h"

namespace lockstep::kernels::cuda {
namespace {

using ::lockstep::kernels::testing::TestRng;
using testing::ConvReference;
using testing::ConvShape;
using testing::ConvShapeFamily;
using testing::DescribeConv;

int64_t InputSize(const ConvShape& s) { return s.batch * s.in_h * s.in_w * s.in_c; }
int64_t ColsSize(const ConvShape& s) { return s.col_rows() * s.col_cols(); }

// Reference im2col: x copied into an explicitly zero-padded image, from which every
// window is read without bounds tests.
std::vector<float> PaddedCopyIm2col(const ConvShape& s, const std::vector<float>& x) {
  const int64_t ph = s.in_h + 2 * s.pad_h, pw = s.in_w + 2 * s.pad_w, c_n = s.in_c;
  std::vector<float> padded(static_cast<size_t>(s.batch * ph * pw * c_n), 0.0f);
  for (int64_t n = 0; n < s.batch; ++n)
    for (int64_t h = 0; h < s.in_h; ++h)
      for (int64_t w = 0; w < s.in_w; ++w)
        for (int64_t c = 0; c < c_n; ++c)
          padded[((n * ph + h + s.pad_h) * pw + w + s.pad_w) * c_n + c] =
              x[((n * s.in_h + h) * s.in_w + w) * c_n + c];
  std::vector<float> cols;
  for (int64_t n = 0; n < s.batch; ++n)
    for (int64_t oh = 0; oh < s.out_h(); ++oh)
      for (int64_t ow = 0; ow < s.out_w(); ++ow)
        for (int64_t kh = 0; kh < s.kernel_h; ++kh)
          for (int64_t kw = 0; kw < s.kernel_w; ++kw)
            for (int64_t c = 0; c < c_n; ++c)
              cols.push_back(
                  padded[((n * ph + oh * s.stride_h + kh) * pw + ow * s.stride_w + kw) * c_n + c]);
  return cols;
}

// Reference col2im: every cols entry added onto a zero-padded dx, in cols order (the
// order of the CPU's Col2imAccumulate), then the padding cropped off.
std::vector<float> PaddedScatterCol2im(const ConvShape& s, const std::vector<float>& cols) {
  const int64_t ph = s.in_h + 2 * s.pad_h, pw = s.in_w + 2 * s.pad_w, c_n = s.in_c;
  std::vector<float> padded(static_cast<size_t>(s.batch * ph * pw * c_n), 0.0f);
  size_t i = 0;
  for (int64_t n = 0; n < s.batch; ++n)
    for (int64_t oh = 0; oh < s.out_h(); ++oh)
      for (int64_t ow = 0; ow < s.out_w(); ++ow)
        for (int64_t kh = 0; kh < s.kernel_h; ++kh)
          for (int64_t kw = 0; kw < s.kernel_w; ++kw)
            for (int64_t c = 0; c < c_n; ++c)
              padded[((n * ph + oh * s.stride_h + kh) * pw + ow * s.stride_w + kw) * c_n + c] +=
                  cols[i++];
  std::vector<float> dx(static_cast<size_t>(InputSize(s)));
  for (int64_t n = 0; n < s.batch; ++n)
    for (int64_t h = 0; h < s.in_h; ++h)
      for (int64_t w = 0; w < s.in_w; ++w)
        for (int64_t c = 0; c < c_n; ++c)
          dx[((n * s.in_h + h) * s.in_w + w) * c_n + c] =
              padded[((n * ph + h + s.pad_h) * pw + w + s.pad_w) * c_n + c];
  return dx;
}

std::vector<float> HelperIm2col(const ConvShape& s, const float* x) {
  const ConvDims d = ResolveConvDims(s);
  std::vector<float> cols(static_cast<size_t>(ColsSize(s)));
  for (int64_t row = 0; row < s.col_rows(); ++row)
    for (int64_t col = 0; col < s.col_cols(); ++col)
      cols[row * s.col_cols() + col] = Im2colValue(d, x, row, col);
  return cols;
}

std::vector<float> HelperCol2im(const ConvShape& s, const float* cols) {
  const ConvDims d = ResolveConvDims(s);
  std::vector<float> dx(static_cast<size_t>(InputSize(s)));
  for (int64_t i = 0; i < InputSize(s); ++i) dx[i] = Col2imGatherValue(d, cols, i);
  return dx;
}

// Distinct nonzero integers (exact in float), so a wrong source or a missed zero shows.
std::vector<float> Iota(int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<float>(i + 1);
  return v;
}

// Integers in [-8, 8]: every sum is exact, whatever the order.
std::vector<float> SmallIntegers(TestRng& rng, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = static_cast<float>(static_cast<int>(rng.Next() % 17) - 8);
  return v;
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(ConvIndexHostTest, Im2colValueMatchesPaddedCopyReference) {
  for (const ConvShape& s : ConvShapeFamily()) {
    SCOPED_TRACE(DescribeConv(s));
    const std::vector<float> x = Iota(InputSize(s));
    EXPECT_EQ(HelperIm2col(s, x.data()), PaddedCopyIm2col(s, x));
  }
}

TEST(ConvIndexHostTest, Col2imGatherMatchesScatterAddReference) {
  TestRng rng(71);
  for (const ConvShape& s : ConvShapeFamily()) {
    SCOPED_TRACE(DescribeConv(s));
    const std::vector<float> cols = SmallIntegers(rng, ColsSize(s));
    EXPECT_EQ(HelperCol2im(s, cols.data()), PaddedScatterCol2im(s, cols));
  }
}

// With rounding (non-integer values) the sum depends on its order: the gather must add
// in the order the CPU scatters, so the same cols give bitwise the same dx.
TEST(ConvIndexHostTest, Col2imGatherIsBitwiseTheScatterOrder) {
  TestRng rng(72);
  for (const ConvShape& s : ConvShapeFamily()) {
    SCOPED_TRACE(DescribeConv(s));
    const std::vector<float> cols = rng.Vector(ColsSize(s), -3.0f, 3.0f);
    EXPECT_TRUE(SameBits(HelperCol2im(s, cols.data()), PaddedScatterCol2im(s, cols)));
  }
}

TEST(ConvIndexHostTest, CoveringOutputsIsTheBruteForceRange) {
  for (int64_t kernel = 1; kernel <= 5; ++kernel)
    for (int64_t stride = 1; stride <= 4; ++stride)
      for (int64_t pad = 0; pad <= kernel; ++pad)
        for (int64_t in_n = 1; in_n <= 9; ++in_n) {
          const int64_t span = in_n + 2 * pad - kernel;
          if (span < 0) continue;
          const int64_t out_n = span / stride + 1;
          for (int64_t in = 0; in < in_n; ++in) {
            int64_t want_lo = -1, want_hi = -2, count = 0;
            for (int64_t o = 0; o < out_n; ++o) {
              const int64_t start = o * stride - pad;
              if (start <= in && in < start + kernel) {
                if (want_lo < 0) want_lo = o;
                want_hi = o;
                ++count;
              }
            }
            int64_t lo, hi;
            CoveringOutputs(in, pad, kernel, stride, out_n, &lo, &hi);
            SCOPED_TRACE(::testing::Message()
                         << "kernel=" << kernel << " stride=" << stride << " pad=" << pad
                         << " in_n=" << in_n << " in=" << in);
            if (count == 0) {
              EXPECT_GT(lo, hi);
            } else {
              EXPECT_EQ(lo, want_lo);
              EXPECT_EQ(hi, want_hi);
              EXPECT_EQ(hi - lo + 1, count);  // contiguous
            }
          }
        }
}

TEST(ConvIndexHostTest, ChunkSamplesIsTheLargestFittingCount) {
  for (const ConvShape& base : ConvShapeFamily()) {
    for (int64_t batch : {0, 1, 3, 64}) {
      ConvShape s = base;
      s.batch = batch;
      const int64_t per = s.out_h() * s.out_w() * s.col_cols() * 4;
      for (size_t max_bytes :
           {size_t{0}, size_t(per - 1), size_t(per), size_t(2 * per + 3), size_t(100 * per)}) {
        SCOPED_TRACE(::testing::Message() << DescribeConv(s) << " max_bytes=" << max_bytes);
        const int64_t chunk = ConvChunkSamples(s, max_bytes);
        EXPECT_GE(chunk, 1);
        EXPECT_LE(chunk, std::max<int64_t>(1, batch));
        if (chunk > 1) {
          EXPECT_LE(chunk * per, static_cast<int64_t>(max_bytes));
        }
        if (chunk < batch) {
          EXPECT_GT((chunk + 1) * per, static_cast<int64_t>(max_bytes));
        }
      }
    }
  }
}

// The GPU plan on the host: per chunk of whole samples (the planner's size, the same
// pointer offsets as conv.cu), im2col by the helper, a naive fp32 matmul, col2im by
// the helper; compared with the direct convolution.
struct HostConv {
  ConvShape s;
  size_t max_chunk_bytes;

  template <typename Fn>
  void ForEachChunk(Fn fn) const {
    const int64_t chunk = ConvChunkSamples(s, max_chunk_bytes);
    for (int64_t n0 = 0; n0 < s.batch; n0 += chunk) {
      ConvShape piece = s;
      piece.batch = std::min(chunk, s.batch - n0);
      fn(n0, piece);
    }
  }
  int64_t InPer() const { return s.in_h * s.in_w * s.in_c; }
  int64_t OutPer() const { return s.out_h() * s.out_w() * s.out_c; }

  std::vector<float> Forward(const std::vector<float>& x, const std::vector<float>& w) const {
    std::vector<float> y(static_cast<size_t>(s.col_rows() * s.out_c));
    const int64_t k = s.col_cols();
    ForEachChunk([&](int64_t n0, const ConvShape& piece) {
      const std::vector<float> cols = HelperIm2col(piece, x.data() + n0 * InPer());
      float* yp = y.data() + n0 * OutPer();
      for (int64_t r = 0; r < piece.col_rows(); ++r)
        for (int64_t o = 0; o < s.out_c; ++o) {
          float acc = 0.0f;
          for (int64_t j = 0; j < k; ++j) acc += cols[r * k + j] * w[j * s.out_c + o];
          yp[r * s.out_c + o] = acc;
        }
    });
    return y;
  }

  std::vector<float> BackwardData(const std::vector<float>& dy, const std::vector<float>& w) const {
    std::vector<float> dx(static_cast<size_t>(InputSize(s)));
    const int64_t k = s.col_cols();
    ForEachChunk([&](int64_t n0, const ConvShape& piece) {
      std::vector<float> dcols(static_cast<size_t>(ColsSize(piece)));
      const float* dyp = dy.data() + n0 * OutPer();
      for (int64_t r = 0; r < piece.col_rows(); ++r)
        for (int64_t j = 0; j < k; ++j) {
          float acc = 0.0f;
          for (int64_t o = 0; o < s.out_c; ++o) acc += dyp[r * s.out_c + o] * w[j * s.out_c + o];
          dcols[r * k + j] = acc;
        }
      const std::vector<float> part = HelperCol2im(piece, dcols.data());
      std::copy(part.begin(), part.end(), dx.begin() + n0 * InPer());
    });
    return dx;
  }

  std::vector<float> BackwardFilter(const std::vector<float>& x,
                                    const std::vector<float>& dy) const {
    const int64_t k = s.col_cols();
    std::vector<float> dw(static_cast<size_t>(k * s.out_c), 0.0f);
    ForEachChunk([&](int64_t n0, const ConvShape& piece) {
      const std::vector<float> cols = HelperIm2col(piece, x.data() + n0 * InPer());
      const float* dyp = dy.data() + n0 * OutPer();
      for (int64_t j = 0; j < k; ++j)
        for (int64_t o = 0; o < s.out_c; ++o) {
          float acc = 0.0f;
          for (int64_t r = 0; r < piece.col_rows(); ++r)
            acc += cols[r * k + j] * dyp[r * s.out_c + o];
          dw[j * s.out_c + o] += acc;
        }
    });
    return dw;
  }
};

TEST(ConvIndexHostTest, HelperConvMatchesDirectConvolution) {
  TestRng rng(73);
  for (const ConvShape& s : ConvShapeFamily()) {
    const int64_t per = s.out_h() * s.out_w() * s.col_cols() * 4;
    // Unchunked, two samples a chunk, and one sample a chunk (a bound below one sample).
    for (size_t max_bytes : {size_t{1} << 30, size_t(2 * per), size_t{1}}) {
      SCOPED_TRACE(::testing::Message() << DescribeConv(s) << " max_chunk_bytes=" << max_bytes);
      const HostConv conv{s, max_bytes};
      const std::vector<float> x = rng.Vector(InputSize(s));
      const std::vector<float> w = rng.Vector(s.col_cols() * s.out_c);
      const std::vector<float> dy = rng.Vector(s.col_rows() * s.out_c);
      EXPECT_TRUE(
          testing::MatchesReference(conv.Forward(x, w), testing::DirectConvForward(s, x, w), 1e-5))
          << "forward";
      EXPECT_TRUE(testing::MatchesReference(conv.BackwardData(dy, w),
                                            testing::DirectConvBackwardData(s, dy, w), 1e-5))
          << "backward data";
      EXPECT_TRUE(testing::MatchesReference(conv.BackwardFilter(x, dy),
                                            testing::DirectConvBackwardFilter(s, x, dy), 1e-5))
          << "backward filter";
    }
  }
}

}  // namespace
}  // namespace lockstep::kernels::cuda
