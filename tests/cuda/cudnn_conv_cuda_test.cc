// CudnnConvolution against a direct convolution in double written here (the CPU conv
// kernel needs BLAS, which the GPU test bundle lacks): forward, backward-data and
// backward-filter (beta 0 and 1), in deterministic and free mode, for padded, strided,
// anisotropic, 1x1 and Fashion-MNIST shapes. Outputs start as NaN (DeviceBuffer's
// poison), so every pass is checked to overwrite. Tolerance: 1e-4 of the sum of the
// magnitudes of the terms (fp32 sums in cuDNN's order, possibly FFT / Winograd).
// Deterministic mode must repeat bitwise; the reported workspace must suffice.
// Compiled to nothing without cuDNN.
#if LOCKSTEP_HAVE_CUDNN

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/cuda/cudnn_conv.h"
#include "kernels/cuda/filter_layout_index.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/kernels/kernels_test_util.h"

namespace lockstep::kernels::cuda {
namespace {

using ::lockstep::kernels::testing::TestRng;
using testing::BitwiseEqual;
using testing::DeviceBuffer;

using CudnnConvTest = testing::CudaTest;

Conv2dShape Make(int64_t n, int64_t h, int64_t w, int64_t ic, int64_t oc, int64_t kh, int64_t kw,
                 int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
  Conv2dShape s;
  s.batch = n;
  s.in_h = h;
  s.in_w = w;
  s.in_c = ic;
  s.out_c = oc;
  s.kernel_h = kh;
  s.kernel_w = kw;
  s.stride_h = sh;
  s.stride_w = sw;
  s.pad_h = ph;
  s.pad_w = pw;
  return s;
}

::testing::Message Describe(const Conv2dShape& s) {
  return ::testing::Message() << "N=" << s.batch << " H=" << s.in_h << " W=" << s.in_w
                              << " C=" << s.in_c << " K=" << s.out_c << " kernel " << s.kernel_h
                              << "x" << s.kernel_w << " stride " << s.stride_h << "," << s.stride_w
                              << " pad " << s.pad_h << "," << s.pad_w;
}

Conv2dShape FashionMnistConv1() { return Make(64, 28, 28, 1, 32, 3, 3, 1, 1, 1, 1); }
Conv2dShape FashionMnistConv2() { return Make(64, 14, 14, 32, 64, 3, 3, 1, 1, 1, 1); }

std::vector<Conv2dShape> Shapes() {
  return {
      Make(1, 5, 5, 1, 1, 3, 3, 1, 1, 0, 0),     // smallest: one channel in and out
      Make(3, 7, 9, 3, 5, 3, 3, 1, 1, 1, 1),     // padded, RGB-like, batch 3
      Make(2, 9, 8, 4, 6, 3, 3, 2, 2, 1, 1),     // stride 2, padded
      Make(3, 10, 7, 3, 4, 2, 5, 2, 1, 0, 2),    // anisotropic kernel, stride and pad
      Make(1, 6, 5, 8, 3, 1, 1, 1, 1, 0, 0),     // 1x1 pointwise
      Make(2, 6, 6, 5, 7, 1, 1, 2, 2, 0, 0),     // 1x1 stride 2 (skips rows and columns)
      Make(3, 4, 4, 1, 2, 4, 4, 1, 1, 0, 0),     // kernel covers the input: 1x1 output
      Make(1, 11, 13, 17, 9, 5, 3, 3, 2, 2, 1),  // odd sizes, wide stride, last rows unused
      FashionMnistConv1(),
      FashionMnistConv2(),
  };
}

int64_t XCount(const Conv2dShape& s) { return s.batch * s.in_h * s.in_w * s.in_c; }
int64_t YCount(const Conv2dShape& s) { return s.batch * s.out_h() * s.out_w() * s.out_c; }
int64_t WCount(const Conv2dShape& s) { return s.kernel_h * s.kernel_w * s.in_c * s.out_c; }

// Calls tap(x index, w index, y index) for every product of the convolution: output
// (n, oh, ow, oc) takes x (n, oh*sh - ph + kh, ow*sw - pw + kw, ic) * w (kh, kw, ic, oc)
// for every in-bounds input position. NHWC / HWIO offsets written out here.
template <typename Tap>
void ForEachProduct(const Conv2dShape& s, Tap tap) {
  const int64_t oh_n = s.out_h(), ow_n = s.out_w();
  for (int64_t n = 0; n < s.batch; ++n) {
    for (int64_t oh = 0; oh < oh_n; ++oh) {
      for (int64_t ow = 0; ow < ow_n; ++ow) {
        const int64_t y0 = ((n * oh_n + oh) * ow_n + ow) * s.out_c;
        for (int64_t kh = 0; kh < s.kernel_h; ++kh) {
          const int64_t ih = oh * s.stride_h - s.pad_h + kh;
          if (ih < 0 || ih >= s.in_h) continue;
          for (int64_t kw = 0; kw < s.kernel_w; ++kw) {
            const int64_t iw = ow * s.stride_w - s.pad_w + kw;
            if (iw < 0 || iw >= s.in_w) continue;
            for (int64_t ic = 0; ic < s.in_c; ++ic) {
              const int64_t xi = ((n * s.in_h + ih) * s.in_w + iw) * s.in_c + ic;
              const int64_t w0 = ((kh * s.kernel_w + kw) * s.in_c + ic) * s.out_c;
              for (int64_t oc = 0; oc < s.out_c; ++oc) tap(xi, w0 + oc, y0 + oc);
            }
          }
        }
      }
    }
  }
}

// The exact result in double and, per element, the sum of |terms| (the scale of the
// rounding error any fp32 summation order may make).
struct Reference {
  std::vector<double> value, scale;
  explicit Reference(int64_t n) : value(static_cast<size_t>(n), 0.0), scale(value) {}
  void Add(int64_t i, double term) {
    value[static_cast<size_t>(i)] += term;
    scale[static_cast<size_t>(i)] += std::fabs(term);
  }
};

Reference ForwardReference(const Conv2dShape& s, const std::vector<float>& x,
                           const std::vector<float>& w) {
  Reference r(YCount(s));
  ForEachProduct(s, [&](int64_t xi, int64_t wi, int64_t yi) {
    r.Add(yi, static_cast<double>(x[xi]) * w[wi]);
  });
  return r;
}

Reference BackwardDataReference(const Conv2dShape& s, const std::vector<float>& dy,
                                const std::vector<float>& w) {
  Reference r(XCount(s));
  ForEachProduct(s, [&](int64_t xi, int64_t wi, int64_t yi) {
    r.Add(xi, static_cast<double>(dy[yi]) * w[wi]);
  });
  return r;
}

// beta * dw0 + the filter gradient (dw0 ignored when beta is 0).
Reference BackwardFilterReference(const Conv2dShape& s, const std::vector<float>& x,
                                  const std::vector<float>& dy, float beta,
                                  const std::vector<float>& dw0) {
  Reference r(WCount(s));
  if (beta != 0.0f) {
    for (int64_t i = 0; i < WCount(s); ++i) r.Add(i, dw0[static_cast<size_t>(i)]);
  }
  ForEachProduct(s, [&](int64_t xi, int64_t wi, int64_t yi) {
    r.Add(wi, static_cast<double>(x[xi]) * dy[yi]);
  });
  return r;
}

// |got - value| <= rel * scale + 1e-6 * max scale (the floor covers FFT-style
// algorithms, whose error follows the whole signal's size); NaN fails.
::testing::AssertionResult MatchesReference(const std::vector<float>& got, const Reference& want,
                                            double rel = 1e-4) {
  if (got.size() != want.value.size()) {
    return ::testing::AssertionFailure()
           << "size " << got.size() << " vs reference " << want.value.size();
  }
  double max_scale = 0.0;
  for (const double sc : want.scale) max_scale = std::max(max_scale, sc);
  int64_t bad = 0;
  ::testing::Message first;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want.value[i]);
    if (!(err <= rel * want.scale[i] + 1e-6 * max_scale)) {
      if (bad < 5) {
        first << "\n  [" << i << "] got " << got[i] << " want " << want.value[i] << " (scale "
              << want.scale[i] << ")";
      }
      ++bad;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << bad << " of " << got.size() << " elements off" << first;
}

// The fixture's stream is non-blocking, so it is not ordered after DeviceBuffer's
// poisoning memset and upload (legacy default stream), nor before its download: the
// whole device is synchronised on both sides of the passes under test.
void DeviceSync() { LS_CUDA_CHECK(cudaDeviceSynchronize()); }

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
  for (const Conv2dShape& s : Shapes()) {
    SCOPED_TRACE(Describe(s));
    const Inputs in = RandomInputs(s, rng);
    const Reference want = ForwardReference(s, in.x, in.w);
    for (CudnnConvolution* conv : {&exact, &free_mode}) {
      SCOPED_TRACE(conv->deterministic() ? "deterministic" : "free");
      DeviceBuffer<float> x(in.x), w(in.w), y(YCount(s));
      DeviceBuffer<uint8_t> ws(static_cast<int64_t>(conv->WorkspaceBytes(s)));
      DeviceSync();
      conv->Forward(s, x.get(), w.get(), y.get(), ws.get(), stream_);
      DeviceSync();
      EXPECT_TRUE(MatchesReference(y.Download(), want));
    }
  }
}

TEST_F(CudnnConvTest, BackwardDataMatchesDirectConvolutionAndOverwrites) {
  TestRng rng(12);
  CudnnConvolution exact(/*deterministic=*/true), free_mode(/*deterministic=*/false);
  for (const Conv2dShape& s : Shapes()) {
    SCOPED_TRACE(Describe(s));
    const Inputs in = RandomInputs(s, rng);
    const Reference want = BackwardDataReference(s, in.dy, in.w);
    for (CudnnConvolution* conv : {&exact, &free_mode}) {
      SCOPED_TRACE(conv->deterministic() ? "deterministic" : "free");
      DeviceBuffer<float> dy(in.dy), w(in.w), dx(XCount(s));  // dx starts NaN
      DeviceBuffer<uint8_t> ws(static_cast<int64_t>(conv->WorkspaceBytes(s)));
      DeviceSync();
      conv->BackwardData(s, dy.get(), w.get(), dx.get(), ws.get(), stream_);
      DeviceSync();
      EXPECT_TRUE(MatchesReference(dx.Download(), want));
    }
  }
}

TEST_F(CudnnConvTest, BackwardFilterMatchesDirectConvolutionWithBetaZeroAndOne) {
  TestRng rng(13);
  CudnnConvolution exact(/*deterministic=*/true), free_mode(/*deterministic=*/false);
  for (const Conv2dShape& s : Shapes()) {
    SCOPED_TRACE(Describe(s));
    const Inputs in = RandomInputs(s, rng);
    for (CudnnConvolution* conv : {&exact, &free_mode}) {
      SCOPED_TRACE(conv->deterministic() ? "deterministic" : "free");
      DeviceBuffer<float> x(in.x), dy(in.dy);
      DeviceBuffer<uint8_t> ws(static_cast<int64_t>(conv->WorkspaceBytes(s)));
      DeviceBuffer<float> dw_new(WCount(s));  // starts NaN: beta 0 must not read it
      DeviceSync();
      conv->BackwardFilter(s, x.get(), dy.get(), 0.0f, dw_new.get(), ws.get(), stream_);
      DeviceSync();
      EXPECT_TRUE(MatchesReference(dw_new.Download(),
                                   BackwardFilterReference(s, in.x, in.dy, 0.0f, in.dw0)))
          << "beta 0";
      DeviceBuffer<float> dw_acc(in.dw0);
      DeviceSync();
      conv->BackwardFilter(s, x.get(), dy.get(), 1.0f, dw_acc.get(), ws.get(), stream_);
      DeviceSync();
      EXPECT_TRUE(MatchesReference(dw_acc.Download(),
                                   BackwardFilterReference(s, in.x, in.dy, 1.0f, in.dw0)))
          << "beta 1";
    }
  }
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
  for (const Conv2dShape& s : Shapes()) {
    SCOPED_TRACE(Describe(s));
    const Inputs in = RandomInputs(s, rng);
    DeviceBuffer<uint8_t> ws(static_cast<int64_t>(conv.WorkspaceBytes(s)));
    const PassResults first = RunAllPasses(conv, s, in, ws.get(), stream_);
    const PassResults second = RunAllPasses(conv, s, in, ws.get(), stream_);
    EXPECT_TRUE(BitwiseEqual(second.y, first.y)) << "forward";
    EXPECT_TRUE(BitwiseEqual(second.dx, first.dx)) << "backward data";
    EXPECT_TRUE(BitwiseEqual(second.dw, first.dw)) << "backward filter";
  }
}

TEST_F(CudnnConvTest, ReportedWorkspaceSufficesAndIsStable) {
  constexpr int64_t kTail = 1 << 16;
  constexpr uint8_t kGuard = 0x5A;
  TestRng rng(15);
  CudnnConvolution exact(/*deterministic=*/true), free_mode(/*deterministic=*/false);
  for (const Conv2dShape& s : Shapes()) {
    SCOPED_TRACE(Describe(s));
    const Inputs in = RandomInputs(s, rng);
    const Reference y_want = ForwardReference(s, in.x, in.w);
    const Reference dx_want = BackwardDataReference(s, in.dy, in.w);
    const Reference dw_want = BackwardFilterReference(s, in.x, in.dy, 1.0f, in.dw0);
    for (CudnnConvolution* conv : {&exact, &free_mode}) {
      SCOPED_TRACE(conv->deterministic() ? "deterministic" : "free");
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
      EXPECT_TRUE(MatchesReference(got.y, y_want)) << "forward";
      EXPECT_TRUE(MatchesReference(got.dx, dx_want)) << "backward data";
      EXPECT_TRUE(MatchesReference(got.dw, dw_want)) << "backward filter";
    }
  }
}

TEST_F(CudnnConvTest, EmptyBatchNeedsNoWorkspaceAndLeavesOrZeroesTheFilterGradient) {
  CudnnConvolution conv(/*deterministic=*/true);
  const Conv2dShape s = Make(0, 7, 7, 3, 4, 3, 3, 1, 1, 1, 1);
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
  const Conv2dShape a = FashionMnistConv1(), b = Make(2, 9, 8, 4, 6, 3, 3, 2, 2, 1, 1);
  const size_t bytes = std::max(conv.WorkspaceBytes(a), conv.WorkspaceBytes(b));
  DeviceBuffer<uint8_t> ws(static_cast<int64_t>(bytes));
  for (const Conv2dShape& s : {a, b, a, b}) {
    SCOPED_TRACE(Describe(s));
    const Inputs in = RandomInputs(s, rng);
    DeviceBuffer<float> x(in.x), w(in.w), y(YCount(s));
    DeviceSync();
    conv.Forward(s, x.get(), w.get(), y.get(), ws.get(), stream_);
    DeviceSync();
    EXPECT_TRUE(MatchesReference(y.Download(), ForwardReference(s, in.x, in.w)));
  }
}

}  // namespace
}  // namespace lockstep::kernels::cuda

#endif  // LOCKSTEP_HAVE_CUDNN
