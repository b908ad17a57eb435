// CUDA Conv2d (im2col + cuBLASLt, kernels/cuda/conv.h) against a direct convolution in
// double (tests/cuda/conv_reference.h; the CPU conv needs OpenBLAS, which the GPU test
// bundle lacks): forward, backward data (overwriting a NaN-poisoned dx) and backward
// filter with beta 0 (over NaNs) and 1, on the shared shape family, the Fashion-MNIST
// CNN's layers, several im2col chunks and an empty batch; the im2col / col2im launchers
// bitwise against the host index helpers; and bitwise repeatability. Tolerance: 1e-4
// of the sum of |terms| of each element (fp32 rounding of up to 288-term sums).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cuda/conv.h"
#include "kernels/cuda/conv_index.h"
#include "tests/cuda/conv_reference.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/kernels/kernels_test_util.h"

namespace lockstep::kernels::cuda {
namespace {

using ::lockstep::kernels::testing::TestRng;
using testing::BitwiseEqual;
using testing::ConvReference;
using testing::ConvShape;
using testing::DescribeConv;
using testing::DeviceBuffer;
using testing::MakeConvShape;
using testing::MatchesReference;

constexpr double kRelTol = 1e-4;
// Run through the public functions (the default chunk bound) rather than internal::.
constexpr size_t kDefaultChunks = std::numeric_limits<size_t>::max();

struct ConvInputs {
  std::vector<float> x, w, dy, dw_old;
};

ConvInputs MakeInputs(const ConvShape& s, uint32_t seed) {
  TestRng rng(seed);
  ConvInputs in;
  in.x = rng.Vector(s.batch * s.in_h * s.in_w * s.in_c);
  in.w = rng.Vector(s.col_cols() * s.out_c);
  in.dy = rng.Vector(s.col_rows() * s.out_c);
  in.dw_old = rng.Vector(s.col_cols() * s.out_c);
  return in;
}

struct ConvOutputs {
  std::vector<float> y, dx, dw_beta0, dw_beta1;
};

class CudaConvTest : public testing::CudaLtTest {
 protected:
  // All three directions on the device; y, dx and the beta-0 dw start as NaN garbage.
  ConvOutputs Run(const ConvShape& s, const ConvInputs& in, size_t max_chunk_bytes) {
    const bool public_api = max_chunk_bytes == kDefaultChunks;
    const size_t ws_bytes =
        public_api ? Conv2dWorkspaceBytes(s) : internal::Conv2dWorkspaceBytes(s, max_chunk_bytes);
    DeviceBuffer<unsigned char> ws(static_cast<int64_t>(ws_bytes));
    DeviceBuffer<float> x(in.x), w(in.w), dy(in.dy), dw1(in.dw_old);
    DeviceBuffer<float> y(s.col_rows() * s.out_c), dx(s.batch * s.in_h * s.in_w * s.in_c);
    DeviceBuffer<float> dw0(s.col_cols() * s.out_c);
    const cublasLtHandle_t lt = lt_->handle();
    const GemmWorkspace gws = lt_->workspace();
    if (public_api) {
      Conv2dForward(lt, gws, s, x.get(), w.get(), y.get(), ws.get(), stream_);
      Conv2dBackwardData(lt, gws, s, dy.get(), w.get(), dx.get(), ws.get(), stream_);
      Conv2dBackwardFilter(lt, gws, s, x.get(), dy.get(), 0.0f, dw0.get(), ws.get(), stream_);
      Conv2dBackwardFilter(lt, gws, s, x.get(), dy.get(), 1.0f, dw1.get(), ws.get(), stream_);
    } else {
      const size_t m = max_chunk_bytes;
      internal::Conv2dForward(lt, gws, s, x.get(), w.get(), y.get(), ws.get(), m, stream_);
      internal::Conv2dBackwardData(lt, gws, s, dy.get(), w.get(), dx.get(), ws.get(), m, stream_);
      internal::Conv2dBackwardFilter(lt, gws, s, x.get(), dy.get(), 0.0f, dw0.get(), ws.get(), m,
                                     stream_);
      internal::Conv2dBackwardFilter(lt, gws, s, x.get(), dy.get(), 1.0f, dw1.get(), ws.get(), m,
                                     stream_);
    }
    Sync();
    return {y.Download(), dx.Download(), dw0.Download(), dw1.Download()};
  }

  void CheckAgainstDirect(const ConvShape& s, size_t max_chunk_bytes, uint32_t seed) {
    SCOPED_TRACE(DescribeConv(s) + (max_chunk_bytes == kDefaultChunks
                                        ? std::string(" default chunks")
                                        : " max_chunk_bytes=" + std::to_string(max_chunk_bytes)));
    const ConvInputs in = MakeInputs(s, seed);
    const ConvOutputs out = Run(s, in, max_chunk_bytes);
    EXPECT_TRUE(MatchesReference(out.y, testing::DirectConvForward(s, in.x, in.w), kRelTol))
        << "forward";
    EXPECT_TRUE(MatchesReference(out.dx, testing::DirectConvBackwardData(s, in.dy, in.w), kRelTol))
        << "backward data";
    const ConvReference dw = testing::DirectConvBackwardFilter(s, in.x, in.dy);
    EXPECT_TRUE(MatchesReference(out.dw_beta0, dw, kRelTol)) << "backward filter, beta 0";
    EXPECT_TRUE(MatchesReference(out.dw_beta1, testing::PlusOldGradient(dw, in.dw_old), kRelTol))
        << "backward filter, beta 1";
  }

};

int64_t ColsBytesPerSample(const ConvShape& s) {
  return s.out_h() * s.out_w() * s.col_cols() * int64_t{sizeof(float)};
}

TEST_F(CudaConvTest, ShapeFamilyMatchesDirectConvolution) {
  uint32_t seed = 100;
  for (const ConvShape& s : testing::ConvShapeFamily())
    CheckAgainstDirect(s, kDefaultChunks, ++seed);
}

TEST_F(CudaConvTest, FashionMnistCnnLayersMatchDirectConvolution) {
  CheckAgainstDirect(testing::FashionMnistConv1(), kDefaultChunks, 201);
  CheckAgainstDirect(testing::FashionMnistConv2(), kDefaultChunks, 202);
}

TEST_F(CudaConvTest, ChunkedBatchesMatchDirectConvolution) {
  const ConvShape s = MakeConvShape(5, 9, 8, 3, 4, 3, 3, 1, 1, 1, 1);
  const int64_t per = ColsBytesPerSample(s);
  // Two samples a chunk (chunks of 2, 2, 1): the workspace holds exactly two samples.
  EXPECT_EQ(internal::Conv2dWorkspaceBytes(s, static_cast<size_t>(2 * per + 5)),
            static_cast<size_t>(2 * per));
  CheckAgainstDirect(s, static_cast<size_t>(2 * per + 5), 301);
  // A bound below one sample still runs one sample a chunk.
  EXPECT_EQ(internal::Conv2dWorkspaceBytes(s, 16), static_cast<size_t>(per));
  CheckAgainstDirect(s, 16, 302);
  // Strided, padded, anisotropic, batch 3 in three chunks.
  const ConvShape t = MakeConvShape(3, 7, 6, 3, 4, 3, 2, 2, 1, 1, 0);
  CheckAgainstDirect(t, static_cast<size_t>(ColsBytesPerSample(t)), 303);
  // The CNN's second layer in chunks of 7 samples (the last one of 1).
  const ConvShape cnn = testing::FashionMnistConv2();
  CheckAgainstDirect(cnn, static_cast<size_t>(7 * ColsBytesPerSample(cnn)), 304);
}

// The layer's bias and ReLU in the GEMMs' epilogue: each chunk's GEMM applies them to
// its own rows (chunks of 2, 2 and 1 samples), and the pointwise path to all of them.
TEST_F(CudaConvTest, ForwardEpilogueAddsBiasAndReluInEveryChunk) {
  const ConvShape chunked = MakeConvShape(5, 9, 8, 3, 4, 3, 3, 1, 1, 1, 1);
  const ConvShape pointwise = MakeConvShape(3, 6, 5, 4, 3, 1, 1, 1, 1, 0, 0);
  TestRng rng(801);
  for (const ConvShape& s : {chunked, pointwise}) {
    const ConvInputs in = MakeInputs(s, 802);
    const std::vector<float> bias = rng.Vector(s.out_c);
    const ConvReference conv = testing::DirectConvForward(s, in.x, in.w);
    for (GemmEpilogue e : {GemmEpilogue::kBias, GemmEpilogue::kRelu, GemmEpilogue::kBiasRelu}) {
      const bool with_bias = e != GemmEpilogue::kRelu, relu = e != GemmEpilogue::kBias;
      SCOPED_TRACE(DescribeConv(s) + (with_bias ? " bias" : "") + (relu ? " relu" : ""));
      ConvReference want = conv;
      for (size_t i = 0; i < want.value.size(); ++i) {
        const double b = with_bias ? bias[i % static_cast<size_t>(s.out_c)] : 0.0;
        want.value[i] += b;
        want.magnitude[i] += std::fabs(b);
        if (relu) want.value[i] = std::max(want.value[i], 0.0);
      }
      const size_t chunk = static_cast<size_t>(2 * ColsBytesPerSample(s) + 5);
      DeviceBuffer<unsigned char> ws(static_cast<int64_t>(internal::Conv2dWorkspaceBytes(s, chunk)));
      DeviceBuffer<float> x(in.x), w(in.w), d_bias(bias), y(s.col_rows() * s.out_c);
      internal::Conv2dForward(lt_->handle(), lt_->workspace(), s, x.get(), w.get(), y.get(), ws.get(), chunk,
                              stream_, /*allow_tf32=*/false, e, with_bias ? d_bias.get() : nullptr);
      Sync();
      EXPECT_TRUE(MatchesReference(y.Download(), want, kRelTol));
    }
  }
}

TEST_F(CudaConvTest, PointwiseNeedsNoWorkspace) {
  const ConvShape s = MakeConvShape(3, 6, 5, 4, 3, 1, 1, 1, 1, 0, 0);
  EXPECT_EQ(Conv2dWorkspaceBytes(s), 0u);
  CheckAgainstDirect(s, kDefaultChunks, 401);  // ws.get() is null here
}

TEST_F(CudaConvTest, EmptyBatch) {
  for (const ConvShape& s : {MakeConvShape(0, 5, 5, 3, 4, 3, 3, 1, 1, 1, 1),
                             MakeConvShape(0, 5, 5, 3, 4, 1, 1, 1, 1, 0, 0)}) {
    SCOPED_TRACE(DescribeConv(s));
    const ConvInputs in = MakeInputs(s, 501);
    const ConvOutputs out = Run(s, in, kDefaultChunks);
    EXPECT_TRUE(out.y.empty());
    EXPECT_TRUE(out.dx.empty());
    EXPECT_TRUE(BitwiseEqual(out.dw_beta0, std::vector<float>(in.dw_old.size(), 0.0f)))
        << "beta 0 over no samples: zeros";
    EXPECT_TRUE(BitwiseEqual(out.dw_beta1, in.dw_old)) << "beta 1 over no samples: unchanged";
  }
}

TEST_F(CudaConvTest, Im2colAndCol2imLaunchersAreBitwiseTheHostHelpers) {
  // The last shape's cols (22.6 M floats) need more than one grid-stride pass.
  std::vector<ConvShape> shapes = testing::ConvShapeFamily();
  shapes.push_back(MakeConvShape(100, 28, 28, 32, 1, 3, 3, 1, 1, 1, 1));
  TestRng rng(601);
  for (const ConvShape& s : shapes) {
    SCOPED_TRACE(DescribeConv(s));
    const ConvDims d = ResolveConvDims(s);
    const int64_t in_n = s.batch * s.in_h * s.in_w * s.in_c, cols_n = s.col_rows() * s.col_cols();
    const std::vector<float> x = rng.Vector(in_n), cols = rng.Vector(cols_n, -3.0f, 3.0f);
    std::vector<float> want_cols(static_cast<size_t>(cols_n)), want_dx(static_cast<size_t>(in_n));
    for (int64_t i = 0; i < cols_n; ++i) {
      want_cols[i] = Im2colValue(d, x.data(), i / s.col_cols(), i % s.col_cols());
    }
    for (int64_t i = 0; i < in_n; ++i) want_dx[i] = Col2imGatherValue(d, cols.data(), i);
    DeviceBuffer<float> d_x(x), d_cols_in(cols), d_cols(cols_n), d_dx(in_n);  // outputs: NaN
    Im2col(s, d_x.get(), d_cols.get(), stream_);
    Col2im(s, d_cols_in.get(), d_dx.get(), stream_);
    Sync();
    EXPECT_TRUE(BitwiseEqual(d_cols.Download(), want_cols)) << "im2col";
    EXPECT_TRUE(BitwiseEqual(d_dx.Download(), want_dx)) << "col2im";
  }
}

TEST_F(CudaConvTest, RunsAreBitwiseRepeatable) {
  const ConvShape cnn = testing::FashionMnistConv2();
  const ConvShape strided = MakeConvShape(3, 7, 6, 3, 4, 3, 3, 2, 2, 1, 1);
  const struct {
    ConvShape s;
    size_t max_chunk_bytes;
  } cases[] = {{cnn, kDefaultChunks},
               {cnn, static_cast<size_t>(7 * ColsBytesPerSample(cnn))},
               {strided, kDefaultChunks},
               {strided, 1}};
  uint32_t seed = 700;
  for (const auto& c : cases) {
    SCOPED_TRACE(DescribeConv(c.s) + " max_chunk_bytes=" + std::to_string(c.max_chunk_bytes));
    const ConvInputs in = MakeInputs(c.s, ++seed);
    const ConvOutputs a = Run(c.s, in, c.max_chunk_bytes);
    const ConvOutputs b = Run(c.s, in, c.max_chunk_bytes);
    EXPECT_TRUE(BitwiseEqual(a.y, b.y)) << "y";
    EXPECT_TRUE(BitwiseEqual(a.dx, b.dx)) << "dx";
    EXPECT_TRUE(BitwiseEqual(a.dw_beta0, b.dw_beta0)) << "dw, beta 0";
    EXPECT_TRUE(BitwiseEqual(a.dw_beta1, b.dw_beta1)) << "dw, beta 1";
  }
}

}  // namespace
}  // namespace lockstep::kernels::cuda
