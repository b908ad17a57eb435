// CudnnConvolution against the direct convolution in double of tests/cuda/conv_reference.h
// (the CPU conv kernel needs BLAS, which the GPU test bundle lacks): forward,
// backward-data and backward-filter (beta 0 and 1), in deterministic and free mode, for
// the shared shape family, shapes of this test's own (one channel in and out, wide
// odd channel counts, kernels covering the input) and the Fashion-MNIST layers. Outputs
// start as NaN (DeviceBuffer's poison), so every pass is checked to overwrite.
// Tolerance: 1e-4 of the sum of the magnitudes of the terms (fp32 sums in cuDNN's
// order) plus 1e-6 of the largest such sum (FFT / Winograd errors follow the whole
// signal). Deterministic mode must repeat bitwise; the reported workspace must suffice.
// Compiled to nothing without cuDNN.
#if LOCKSTEP_HAVE_CUDNN

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <iterator>
#include <vector>

#include "kernels/cuda/cudnn_conv.h"
#include "tests/cuda/conv_reference.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/kernels/kernels_test_util.h"

namespace lockstep::kernels::cuda {
namespace {

using ::lockstep::kernels::testing::TestRng;
using testing::BitwiseEqual;
using testing::ConvReference;
using testing::DescribeConv;
using testing::DeviceBuffer;
using testing::DirectConvBackwardData;
using testing::DirectConvBackwardFilter;
using testing::DirectConvForward;
using testing::FashionMnistConv1;
using testing::FashionMnistConv2;
using testing::MakeConvShape;
using testing::PlusOldGradient;

using CudnnConvTest = testing::CudaTest;

// Beyond the shared family: the smallest case (one channel in and out), other batch,
// channel and padding mixes, a kernel covering the whole input, odd sizes with a wide
// stride that leaves the last rows unused, and the Fashion-MNIST CNN's layers.
std::vector<Conv2dShape> Shapes() {
  std::vector<Conv2dShape> shapes = testing::ConvShapeFamily();
  const Conv2dShape own[] = {
      MakeConvShape(1, 5, 5, 1, 1, 3, 3, 1, 1, 0, 0),     // one channel in and out
      MakeConvShape(3, 7, 9, 3, 5, 3, 3, 1, 1, 1, 1),     // padded, RGB-like, batch 3
      MakeConvShape(2, 9, 8, 4, 6, 3, 3, 2, 2, 1, 1),     // stride 2, padded
      MakeConvShape(3, 10, 7, 3, 4, 2, 5, 2, 1, 0, 2),    // anisotropic kernel, stride and pad
      MakeConvShape(1, 6, 5, 8, 3, 1, 1, 1, 1, 0, 0),     // 1x1 pointwise
      MakeConvShape(2, 6, 6, 5, 7, 1, 1, 2, 2, 0, 0),     // 1x1 stride 2 (skips rows and columns)
      MakeConvShape(3, 4, 4, 1, 2, 4, 4, 1, 1, 0, 0),     // kernel covers the input: 1x1 output
      MakeConvShape(1, 11, 13, 17, 9, 5, 3, 3, 2, 2, 1),  // odd sizes, wide stride, rows unused
      FashionMnistConv1(),
      FashionMnistConv2(),
  };
  shapes.insert(shapes.end(), std::begin(own), std::end(own));
  return shapes;
}

int64_t XCount(const Conv2dShape& s) { return s.batch * s.in_h * s.in_w * s.in_c; }
int64_t YCount(const Conv2dShape& s) { return s.batch * s.out_h() * s.out_w() * s.out_c; }
int64_t WCount(const Conv2dShape& s) { return s.kernel_h * s.kernel_w * s.in_c * s.out_c; }

// conv_reference.h's bound with no absolute term and the FFT floor of 1e-6 of the
// largest |terms| sum.
::testing::AssertionResult MatchesCudnnTolerance(const std::vector<float>& got,
                                                 const ConvReference& want) {
  return testing::MatchesReference(got, want, /*rel=*/1e-4, /*abs=*/0.0,
                                   /*max_magnitude_share=*/1e-6);
}

// The fixture's stream is non-blocking, so it is not ordered after DeviceBuffer's
// poisoning memset and upload (legacy default stream), nor before its download: the
// whole device is synchronised on both sides of the passes under test.
void DeviceSync() { LS_CUDA_CHECK(cudaDeviceSynchronize()); }

// Whether conv has algorithms for s; if not, says so (cuDNN may offer no deterministic
// algorithm for some shape: the backend then uses im2col for it) and counts it.
bool Usable(CudnnConvolution& conv, const Conv2dShape& s, int* unsupported) {
  std::string why;
  if (conv.Supports(s, &why)) return true;
  std::printf("[cudnn] %s: %s (the backend uses im2col here)\n", DescribeConv(s).c_str(), why.c_str());
  ++*unsupported;
  return false;
}

// Most of the shapes must be supported in both modes: a plan maker that rejects
// everything must not pass as "cuDNN has nothing for these".
void ExpectMostSupported(int unsupported, size_t shapes_times_modes) {
  EXPECT_LE(static_cast<size_t>(unsupported) * 4, shapes_times_modes)
      << unsupported << " of " << shapes_times_modes << " shape/mode pairs have no cuDNN algorithms";
}

struct Inputs {
  std::vector<float> x, w, dy, dw0;
};

Inputs RandomInputs(const Conv2dShape& s, TestRng& rng) {
  return {rng.Vector(XCount(s)), rng.Vector(WCount(s)), rng.Vector(YCount(s)),
          rng.Vector(WCount(s))};
}

TEST_F(CudnnConvTest, ForwardMatchesDirectConvolution) {
  TestRng rng(11);
  CudnnConvolution exact(/*deterministic=*/true), free_mode(/*deterministic=*/false);
  int unsupported = 0;
  for (const Conv2dShape& s : Shapes()) {
    SCOPED_TRACE(DescribeConv(s));
    const Inputs in = RandomInputs(s, rng);
    const ConvReference want = DirectConvForward(s, in.x, in.w);
    for (CudnnConvolution* conv : {&exact, &free_mode}) {
      SCOPED_TRACE(conv->deterministic() ? "deterministic" : "free");
      if (!Usable(*conv, s, &unsupported)) continue;
      DeviceBuffer<float> x(in.x), w(in.w), y(YCount(s));
      DeviceBuffer<uint8_t> ws(static_cast<int64_t>(conv->WorkspaceBytes(s)));
      DeviceSync();
      conv->Forward(s, x.get(), w.get(), y.get(), ws.get(), stream_);
      DeviceSync();
      EXPECT_TRUE(MatchesCudnnTolerance(y.Download(), want));
    }
  }
  ExpectMostSupported(unsupported, 2 * Shapes().size());
}

TEST_F(CudnnConvTest, BackwardDataMatchesDirectConvolutionAndOverwrites) {
  TestRng rng(12);
  CudnnConvolution exact(/*deterministic=*/true), free_mode(/*deterministic=*/false);
  int unsupported = 0;
  for (const Conv2dShape& s : Shapes()) {
    SCOPED_TRACE(DescribeConv(s));
    const Inputs in = RandomInputs(s, rng);
    const ConvReference want = DirectConvBackwardData(s, in.dy, in.w);
    for (CudnnConvolution* conv : {&exact, &free_mode}) {
      SCOPED_TRACE(conv->deterministic() ? "deterministic" : "free");
      if (!Usable(*conv, s, &unsupported)) continue;
      DeviceBuffer<float> dy(in.dy), w(in.w), dx(XCount(s));  // dx starts NaN
      DeviceBuffer<uint8_t> ws(static_cast<int64_t>(conv->WorkspaceBytes(s)));
      DeviceSync();
      conv->BackwardData(s, dy.get(), w.get(), dx.get(), ws.get(), stream_);
      DeviceSync();
      EXPECT_TRUE(MatchesCudnnTolerance(dx.Download(), want));
    }
  }
  ExpectMostSupported(unsupported, 2 * Shapes().size());
}

TEST_F(CudnnConvTest, BackwardFilterMatchesDirectConvolutionWithBetaZeroAndOne) {
  TestRng rng(13);
  CudnnConvolution exact(/*deterministic=*/true), free_mode(/*deterministic=*/false);
  int unsupported = 0;
  for (const Conv2dShape& s : Shapes()) {
    SCOPED_TRACE(DescribeConv(s));
    const Inputs in = RandomInputs(s, rng);
    for (CudnnConvolution* conv : {&exact, &free_mode}) {
      SCOPED_TRACE(conv->deterministic() ? "deterministic" : "free");
      if (!Usable(*conv, s, &unsupported)) continue;
      DeviceBuffer<float> x(in.x), dy(in.dy);
      DeviceBuffer<uint8_t> ws(static_cast<int64_t>(conv->WorkspaceBytes(s)));
      DeviceBuffer<float> dw_new(WCount(s));  // starts NaN: beta 0 must not read it
      DeviceSync();
      conv->BackwardFilter(s, x.get(), dy.get(), 0.0f, dw_new.get(), ws.get(), stream_);
      DeviceSync();
      EXPECT_TRUE(
          MatchesCudnnTolerance(dw_new.Download(), DirectConvBackwardFilter(s, in.x, in.dy)))
          << "beta 0";
      DeviceBuffer<float> dw_acc(in.dw0);
      DeviceSync();
      conv->BackwardFilter(s, x.get(), dy.get(), 1.0f, dw_acc.get(), ws.get(), stream_);
      DeviceSync();
      EXPECT_TRUE(MatchesCudnnTolerance(
          dw_acc.Download(), PlusOldGradient(DirectConvBackwardFilter(s, in.x, in.dy), in.dw0)))
          << "beta 1";
    }
  }
  ExpectMostSupported(unsupported, 2 * Shapes().size());
}

// All three passes (backward-filter with beta 1) of one shape, into fresh buffers.
struct PassResults {
  std::vector<float> y, dx, dw;
};

PassResults RunAllPasses(CudnnConvolution& conv, const Conv2dShape& s, const Inputs& in,
                         void* workspace, cudaStream_t stream) {
  DeviceBuffer<float> x(in.x), w(in.w), dy(in.dy), y(YCount(s)), dx(XCount(s)), dw(in.dw0);
  DeviceSync();
  conv.Forward(s, x.get(), w.get(), y.get(), workspace, stream);
  conv.BackwardData(s, dy.get(), w.get(), dx.get(), workspace, stream);
  conv.BackwardFilter(s, x.get(), dy.get(), 1.0f, dw.get(), workspace, stream);
  DeviceSync();
  return {y.Download(), dx.Download(), dw.Download()};
}

TEST_F(CudnnConvTest, DeterministicModeIsBitwiseRepeatable) {
  TestRng rng(14);
  CudnnConvolution conv(/*deterministic=*/true);
  int unsupported = 0;
  for (const Conv2dShape& s : Shapes()) {
    SCOPED_TRACE(DescribeConv(s));
    if (!Usable(conv, s, &unsupported)) continue;
    const Inputs in = RandomInputs(s, rng);
    DeviceBuffer<uint8_t> ws(static_cast<int64_t>(conv.WorkspaceBytes(s)));
    const PassResults first = RunAllPasses(conv, s, in, ws.get(), stream_);
    const PassResults second = RunAllPasses(conv, s, in, ws.get(), stream_);
    EXPECT_TRUE(BitwiseEqual(second.y, first.y)) << "forward";
    EXPECT_TRUE(BitwiseEqual(second.dx, first.dx)) << "backward data";
    EXPECT_TRUE(BitwiseEqual(second.dw, first.dw)) << "backward filter";
  }
  ExpectMostSupported(unsupported, Shapes().size());
}

TEST_F(CudnnConvTest, ReportedWorkspaceSufficesAndIsStable) {
  constexpr int64_t kTail = 1 << 16;
  constexpr uint8_t kGuard = 0x5A;
  TestRng rng(15);
  CudnnConvolution exact(/*deterministic=*/true), free_mode(/*deterministic=*/false);
  int unsupported = 0;
  for (const Conv2dShape& s : Shapes()) {
    SCOPED_TRACE(DescribeConv(s));
    const Inputs in = RandomInputs(s, rng);
    const ConvReference y_want = DirectConvForward(s, in.x, in.w);
    const ConvReference dx_want = DirectConvBackwardData(s, in.dy, in.w);
    const ConvReference dw_want = PlusOldGradient(DirectConvBackwardFilter(s, in.x, in.dy), in.dw0);
    for (CudnnConvolution* conv : {&exact, &free_mode}) {
      SCOPED_TRACE(conv->deterministic() ? "deterministic" : "free");
      if (!Usable(*conv, s, &unsupported)) continue;
      const size_t bytes = conv->WorkspaceBytes(s);
      EXPECT_EQ(conv->WorkspaceBytes(s), bytes);
      EXPECT_GE(bytes, static_cast<size_t>(WCount(s)) * sizeof(float));  // the filter scratch
      // Workspace poisoned (0xFF) up to `bytes`, then a guard region that must survive.
      DeviceBuffer<uint8_t> ws(static_cast<int64_t>(bytes) + kTail);
      LS_CUDA_CHECK(cudaMemset(ws.get() + bytes, kGuard, kTail));
      const PassResults got = RunAllPasses(*conv, s, in, ws.get(), stream_);
      std::vector<uint8_t> tail(static_cast<size_t>(kTail));
      LS_CUDA_CHECK(cudaMemcpy(tail.data(), ws.get() + bytes, tail.size(), cudaMemcpyDeviceToHost));
      const auto first_bad =
          std::find_if(tail.begin(), tail.end(), [&](uint8_t b) { return b != kGuard; });
      EXPECT_EQ(first_bad, tail.end())
          << "workspace overrun at byte " << bytes << " + " << (first_bad - tail.begin());
      // A poisoned workspace must not leak into the results.
      EXPECT_TRUE(MatchesCudnnTolerance(got.y, y_want)) << "forward";
      EXPECT_TRUE(MatchesCudnnTolerance(got.dx, dx_want)) << "backward data";
      EXPECT_TRUE(MatchesCudnnTolerance(got.dw, dw_want)) << "backward filter";
    }
  }
  ExpectMostSupported(unsupported, 2 * Shapes().size());
}

TEST_F(CudnnConvTest, EmptyBatchNeedsNoWorkspaceAndLeavesOrZeroesTheFilterGradient) {
  CudnnConvolution conv(/*deterministic=*/true);
  const Conv2dShape s = MakeConvShape(0, 7, 7, 3, 4, 3, 3, 1, 1, 1, 1);
  EXPECT_EQ(conv.WorkspaceBytes(s), 0u);
  conv.Forward(s, nullptr, nullptr, nullptr, nullptr, stream_);
  conv.BackwardData(s, nullptr, nullptr, nullptr, nullptr, stream_);

  DeviceBuffer<float> dw(WCount(s));  // NaN
  DeviceSync();
  conv.BackwardFilter(s, nullptr, nullptr, 0.0f, dw.get(), nullptr, stream_);
  DeviceSync();
  EXPECT_TRUE(BitwiseEqual(dw.Download(), std::vector<float>(WCount(s), 0.0f))) << "beta 0";

  TestRng rng(16);
  const std::vector<float> dw0 = rng.Vector(WCount(s));
  DeviceBuffer<float> kept(dw0);
  DeviceSync();
  conv.BackwardFilter(s, nullptr, nullptr, 1.0f, kept.get(), nullptr, stream_);
  DeviceSync();
  EXPECT_TRUE(BitwiseEqual(kept.Download(), dw0)) << "beta 1";
}

TEST_F(CudnnConvTest, ShapesShareACacheAcrossPasses) {
  // Alternating shapes reuse their cached plans: results stay correct after another
  // shape's plan was made and used in between.
  TestRng rng(17);
  CudnnConvolution conv(/*deterministic=*/true);
  const Conv2dShape a = FashionMnistConv1(), b = MakeConvShape(2, 9, 8, 4, 6, 3, 3, 2, 2, 1, 1);
  int unsupported = 0;
  if (!Usable(conv, a, &unsupported) || !Usable(conv, b, &unsupported)) GTEST_SKIP() << "see [cudnn] above";
  const size_t bytes = std::max(conv.WorkspaceBytes(a), conv.WorkspaceBytes(b));
  DeviceBuffer<uint8_t> ws(static_cast<int64_t>(bytes));
  for (const Conv2dShape& s : {a, b, a, b}) {
    SCOPED_TRACE(DescribeConv(s));
    const Inputs in = RandomInputs(s, rng);
    DeviceBuffer<float> x(in.x), w(in.w), y(YCount(s));
    DeviceSync();
    conv.Forward(s, x.get(), w.get(), y.get(), ws.get(), stream_);
    DeviceSync();
    EXPECT_TRUE(MatchesCudnnTolerance(y.Download(), DirectConvForward(s, in.x, in.w)));
  }
}

}  // namespace
}  // namespace lockstep::kernels::cuda

#endif  // LOCKSTEP_HAVE_CUDNN
