// CUDA elementwise kernels against the CPU kernels on the same random inputs.
// Sizes include 1, odd sizes and sizes just off the 256-thread block.
#include <gtest/gtest.h>

#include <vector>

#include "kernels/cpu/elementwise.h"
#include "kernels/cuda/elementwise.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/kernels/kernels_test_util.h"

namespace lockstep::kernels::cuda {
namespace {

using ::lockstep::kernels::testing::TestRng;
using testing::AllClose;
using testing::BitwiseEqual;
using testing::DeviceBuffer;

struct Shape {
  int64_t rows, cols;
};
const Shape kShapes[] = {{1, 1}, {1, 7}, {3, 257}, {129, 33}, {1000, 13}, {2, 1031}};
const int64_t kLengths[] = {1, 5, 255, 256, 257, 4099, 100003};

// transcendental functions (tanhf, expf) differ by a few ulp between CUDA and glibc.
constexpr double kAbs = 2e-6, kRel = 2e-6;

const char* Name(Activation a) {
  switch (a) {
    case Activation::kIdentity:
      return "identity";
    case Activation::kRelu:
      return "relu";
    case Activation::kTanh:
      return "tanh";
    case Activation::kSigmoid:
      return "sigmoid";
    case Activation::kGelu:
      return "gelu";
  }
  return "?";
}

using CudaElementwiseTest = testing::CudaTest;

TEST_F(CudaElementwiseTest, BiasActivationForwardMatchesCpu) {
  TestRng rng(11);
  for (Activation act :
       {Activation::kIdentity, Activation::kRelu, Activation::kTanh, Activation::kSigmoid}) {
    for (const Shape& s : kShapes) {
      for (bool with_bias : {true, false}) {
        SCOPED_TRACE(::testing::Message() << Name(act) << " rows=" << s.rows << " cols=" << s.cols
                                          << " bias=" << with_bias);
        std::vector<float> y = rng.Vector(s.rows * s.cols, -4.0f, 4.0f);
        const std::vector<float> bias = rng.Vector(s.cols);
        DeviceBuffer<float> dy(y), dbias(bias);
        BiasActivationForward(dy.get(), with_bias ? dbias.get() : nullptr, s.rows, s.cols, act,
                              stream_);
        cpu::BiasActivationForward(y.data(), with_bias ? bias.data() : nullptr, s.rows, s.cols,
                                   act);
        const bool exact = act == Activation::kIdentity || act == Activation::kRelu;
        if (exact) {
          EXPECT_TRUE(BitwiseEqual(dy.Download(), y));
        } else {
          EXPECT_TRUE(AllClose(dy.Download(), y, kAbs, kRel));
        }
      }
    }
  }
}

TEST_F(CudaElementwiseTest, BiasAddIsExact) {
  TestRng rng(12);
  for (const Shape& s : kShapes) {
    SCOPED_TRACE(::testing::Message() << "rows=" << s.rows << " cols=" << s.cols);
    std::vector<float> y = rng.Vector(s.rows * s.cols);
    const std::vector<float> bias = rng.Vector(s.cols);
    DeviceBuffer<float> dy(y), dbias(bias);
    BiasAdd(dy.get(), dbias.get(), s.rows, s.cols, stream_);
    cpu::BiasAdd(y.data(), bias.data(), s.rows, s.cols);
    EXPECT_TRUE(BitwiseEqual(dy.Download(), y));
  }
}

TEST_F(CudaElementwiseTest, BiasBackwardMatchesCpuOverwriteAndAccumulate) {
  TestRng rng(13);
  // Also many rows over few columns (a convolution's bias), split into row chunks.
  const Shape shapes[] = {{1, 1},     {7, 33},     {1000, 65}, {5000, 3}, {17, 1},
                          {0, 9},     {3, 300},    {50176, 32}, {40000, 7}, {100003, 64}};
  for (const Shape& s : shapes) {
    for (float beta : {0.0f, 1.0f}) {
      SCOPED_TRACE(::testing::Message()
                   << "rows=" << s.rows << " cols=" << s.cols << " beta=" << beta);
      const std::vector<float> dy = rng.Vector(s.rows * s.cols);
      std::vector<float> dbias = rng.Vector(s.cols);
      DeviceBuffer<float> d_dy(dy), d_dbias(dbias), d_again(dbias);
      DeviceBuffer<double> ws(std::max<size_t>(1, BiasBackwardWorkspaceBytes(s.rows, s.cols) / sizeof(double)));
      BiasBackward(d_dy.get(), s.rows, s.cols, beta, d_dbias.get(), ws.get(), stream_);
      BiasBackward(d_dy.get(), s.rows, s.cols, beta, d_again.get(), ws.get(), stream_);
      cpu::BiasBackward(dy.data(), s.rows, s.cols, beta, dbias.data());
      // Both sum in double and round once: at most the last bit can differ.
      const std::vector<float> got = d_dbias.Download();
      EXPECT_TRUE(testing::WithinUlps(got, dbias, 1));
      EXPECT_TRUE(BitwiseEqual(d_again.Download(), got)) << "repeatable";
    }
  }
}

TEST_F(CudaElementwiseTest, ActivationForwardAndBackwardMatchCpu) {
  TestRng rng(14);
  for (Activation act : {Activation::kIdentity, Activation::kRelu, Activation::kTanh,
                         Activation::kSigmoid, Activation::kGelu}) {
    for (int64_t n : kLengths) {
      SCOPED_TRACE(::testing::Message() << Name(act) << " n=" << n);
      const std::vector<float> x = rng.Vector(n, -6.0f, 6.0f);
      const std::vector<float> dy = rng.Vector(n);
      std::vector<float> y(n), dx(n);
      cpu::ActivationForward(act, x.data(), y.data(), n);
      cpu::ActivationBackward(act, x.data(), y.data(), dy.data(), dx.data(), n);
      DeviceBuffer<float> d_x(x), d_y(n), d_dy(dy), d_dx(n);
      ActivationForward(act, d_x.get(), d_y.get(), n, stream_);
      const std::vector<float> got_y = d_y.Download();
      EXPECT_TRUE(AllClose(got_y, y, kAbs, kRel)) << "forward";
      // Backward from the CPU's y so that only the backward formula is compared.
      d_y.Upload(y);
      ActivationBackward(act, d_x.get(), d_y.get(), d_dy.get(), d_dx.get(), n, stream_);
      EXPECT_TRUE(AllClose(d_dx.Download(), dx, kAbs, kRel)) << "backward";
    }
  }
}

TEST_F(CudaElementwiseTest, ActivationInPlace) {
  TestRng rng(15);
  const int64_t n = 1025;
  const std::vector<float> x = rng.Vector(n, -3.0f, 3.0f);
  std::vector<float> y(n);
  cpu::ActivationForward(Activation::kGelu, x.data(), y.data(), n);
  DeviceBuffer<float> d(x);
  ActivationForward(Activation::kGelu, d.get(), d.get(), n, stream_);
  EXPECT_TRUE(AllClose(d.Download(), y, kAbs, kRel));
  // dx == dy, ReLU reads only y.
  const std::vector<float> dy = rng.Vector(n);
  std::vector<float> dx(n);
  cpu::ActivationBackward(Activation::kRelu, x.data(), x.data(), dy.data(), dx.data(), n);
  DeviceBuffer<float> d_y(x), d_g(dy);
  ActivationBackward(Activation::kRelu, nullptr, d_y.get(), d_g.get(), d_g.get(), n, stream_);
  EXPECT_TRUE(BitwiseEqual(d_g.Download(), dx));
}

TEST_F(CudaElementwiseTest, ScaleAndAxpyAreExact) {
  TestRng rng(16);
  for (int64_t n : kLengths) {
    SCOPED_TRACE(::testing::Message() << "n=" << n);
    std::vector<float> x = rng.Vector(n), y = rng.Vector(n);
    DeviceBuffer<float> d_x(x), d_y(y);
    Scale(d_x.get(), n, -0.37f, stream_);
    cpu::Scale(x.data(), n, -0.37f);
    EXPECT_TRUE(BitwiseEqual(d_x.Download(), x)) << "Scale";
    Axpy(1.7f, d_x.get(), d_y.get(), n, stream_);
    // Not cpu::Axpy: its AVX2 clone fuses the multiply-add (GCC contracts in C++ mode);
    // the GPU (--fmad=false) and this loop (no clones) round the product, then the sum.
    for (int64_t i = 0; i < n; ++i) {
      const float product = 1.7f * x[static_cast<size_t>(i)];
      y[static_cast<size_t>(i)] = y[static_cast<size_t>(i)] + product;
    }
    EXPECT_TRUE(BitwiseEqual(d_y.Download(), y)) << "Axpy";
  }
}

}  // namespace
}  // namespace lockstep::kernels::cuda
