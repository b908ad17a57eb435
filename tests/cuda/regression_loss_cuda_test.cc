// MSE and BCE-with-logits on the GPU against kernels/cpu/loss: odd n, row_len 1 and
// 17 (n not always a multiple of it), more elements than one grid pass covers,
// logits of +-80 and beyond, null gradients, grad_scale != 1, n = 0 and bitwise
// repeatability. The per-element terms are also checked on the host (no device).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/cpu/loss.h"
#include "kernels/cuda/regression_loss.h"
#include "kernels/cuda/regression_loss_terms.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/kernels/kernels_test_util.h"

namespace lockstep::kernels::cuda {
namespace {

using ::lockstep::kernels::testing::TestRng;
using testing::AllClose;
using testing::BitwiseEqual;
using testing::DeviceBuffer;

using CudaRegressionLossTest = testing::CudaTest;

enum class Loss { kMse, kBce };

const char* Name(Loss l) { return l == Loss::kMse ? "MSE" : "BCE"; }

double CpuLoss(Loss l, const std::vector<float>& x, const std::vector<float>& t, int64_t row_len,
               float grad_scale, float* grad) {
  const int64_t n = static_cast<int64_t>(x.size());
  return l == Loss::kMse
             ? cpu::MeanSquaredError(x.data(), t.data(), n, row_len, grad_scale, grad)
             : cpu::BinaryCrossEntropyWithLogits(x.data(), t.data(), n, row_len, grad_scale, grad);
}

struct GpuResult {
  double loss = 0;
  std::vector<float> grad;
};

GpuResult RunGpu(Loss l, const std::vector<float>& x, const std::vector<float>& t, int64_t row_len,
                 float grad_scale, bool with_grad, cudaStream_t stream) {
  const int64_t n = static_cast<int64_t>(x.size());
  DeviceBuffer<float> d_x(x), d_t(t), d_grad(with_grad ? n : 0);
  DeviceBuffer<double> d_loss(1);
  DeviceBuffer<char> ws(static_cast<int64_t>(RegressionLossWorkspaceBytes(n, row_len)));
  float* grad = with_grad ? d_grad.get() : nullptr;
  if (l == Loss::kMse) {
    MeanSquaredError(d_x.get(), d_t.get(), n, row_len, grad_scale, grad, d_loss.get(), ws.get(),
                     stream);
  } else {
    BinaryCrossEntropyWithLogits(d_x.get(), d_t.get(), n, row_len, grad_scale, grad, d_loss.get(),
                                 ws.get(), stream);
  }
  return {d_loss.Download()[0], d_grad.Download()};
}

struct Case {
  int64_t n, row_len;
};

// Targets: regression values for MSE; probabilities in [0, 1] (some exactly 0 or 1) for BCE.
std::vector<float> Targets(Loss l, TestRng& rng, int64_t n) {
  if (l == Loss::kMse) return rng.Vector(n, -3.0f, 3.0f);
  std::vector<float> t = rng.Vector(n, 0.0f, 1.0f);
  for (int64_t i = 0; i < n; i += 3) t[i] = static_cast<float>(rng.Next() % 2);
  return t;
}

void ExpectGradientsMatch(Loss l, const std::vector<float>& got, const std::vector<float>& want) {
  if (l == Loss::kMse) {
    EXPECT_TRUE(BitwiseEqual(got, want));  // same float operations as the CPU
  } else {
    EXPECT_TRUE(AllClose(got, want, 1e-30, 1e-6));  // the device's exp may differ by an ulp
  }
}

TEST_F(CudaRegressionLossTest, MatchesCpu) {
  TestRng rng(81);
  // 300001 > 1024 blocks * 256 threads: threads loop; 100 is not a multiple of 17.
  const Case cases[] = {{1, 1}, {17, 17}, {7, 1}, {1001, 1}, {17 * 61, 17}, {100, 17}, {300001, 1}};
  for (Loss l : {Loss::kMse, Loss::kBce}) {
    for (const Case& c : cases) {
      for (float grad_scale : {1.0f, 0.37f}) {
        SCOPED_TRACE(::testing::Message() << Name(l) << " n=" << c.n << " row_len=" << c.row_len
                                          << " grad_scale=" << grad_scale);
        const std::vector<float> x = rng.Vector(c.n, -6.0f, 6.0f);
        const std::vector<float> t = Targets(l, rng, c.n);
        std::vector<float> grad(c.n);
        const double want = CpuLoss(l, x, t, c.row_len, grad_scale, grad.data());
        const GpuResult got = RunGpu(l, x, t, c.row_len, grad_scale, true, stream_);
        EXPECT_NEAR(got.loss, want, 1e-12 * (1.0 + std::fabs(want)));
        ExpectGradientsMatch(l, got.grad, grad);
      }
    }
  }
}

TEST_F(CudaRegressionLossTest, BceIsStableForHugeLogits) {
  const std::vector<float> x = {80, -80, 80, -80, 30, -30, 1e4f, -1e4f, 88.5f, -104, 0, 1e-7f};
  const std::vector<float> t = {1, 0, 0, 1, 0.5f, 0.25f, 1, 1, 0, 0.5f, 0.5f, 0};
  for (int64_t row_len : {int64_t{1}, int64_t{3}}) {
    SCOPED_TRACE(::testing::Message() << "row_len=" << row_len);
    std::vector<float> grad(x.size());
    const double want = CpuLoss(Loss::kBce, x, t, row_len, 0.5f, grad.data());
    const GpuResult got = RunGpu(Loss::kBce, x, t, row_len, 0.5f, true, stream_);
    ASSERT_TRUE(std::isfinite(got.loss));
    EXPECT_NEAR(got.loss, want, 1e-12 * (1.0 + std::fabs(want)));
    for (float g : got.grad) EXPECT_TRUE(std::isfinite(g));
    ExpectGradientsMatch(Loss::kBce, got.grad, grad);
  }
}

TEST_F(CudaRegressionLossTest, NullGradientGivesTheSameLoss) {
  TestRng rng(82);
  for (Loss l : {Loss::kMse, Loss::kBce}) {
    SCOPED_TRACE(Name(l));
    const int64_t n = 17 * 33;
    const std::vector<float> x = rng.Vector(n, -4.0f, 4.0f);
    const std::vector<float> t = Targets(l, rng, n);
    const double want = CpuLoss(l, x, t, 17, 2.0f, nullptr);
    const GpuResult without = RunGpu(l, x, t, 17, 2.0f, false, stream_);
    const GpuResult with = RunGpu(l, x, t, 17, 2.0f, true, stream_);
    EXPECT_NEAR(without.loss, want, 1e-12 * (1.0 + std::fabs(want)));
    EXPECT_EQ(without.loss, with.loss);  // the gradient does not change the reduction
  }
}

TEST_F(CudaRegressionLossTest, ZeroElementsGiveZeroLoss) {
  for (Loss l : {Loss::kMse, Loss::kBce}) {
    SCOPED_TRACE(Name(l));
    EXPECT_EQ(RegressionLossWorkspaceBytes(0, 4), 0u);
    DeviceBuffer<double> d_loss(1);  // poisoned: NaN until written
    if (l == Loss::kMse) {
      MeanSquaredError(nullptr, nullptr, 0, 4, 1.0f, nullptr, d_loss.get(), nullptr, stream_);
    } else {
      BinaryCrossEntropyWithLogits(nullptr, nullptr, 0, 4, 1.0f, nullptr, d_loss.get(), nullptr,
                                   stream_);
    }
    EXPECT_EQ(d_loss.Download()[0], 0.0);
  }
}

TEST_F(CudaRegressionLossTest, BitwiseRepeatable) {
  TestRng rng(83);
  for (Loss l : {Loss::kMse, Loss::kBce}) {
    SCOPED_TRACE(Name(l));
    const int64_t n = 123457;
    const std::vector<float> x = rng.Vector(n, -10.0f, 10.0f);
    const std::vector<float> t = Targets(l, rng, n);
    const GpuResult a = RunGpu(l, x, t, 17, 0.25f, true, stream_);
    const GpuResult b = RunGpu(l, x, t, 17, 0.25f, true, stream_);
    EXPECT_EQ(a.loss, b.loss);
    EXPECT_TRUE(BitwiseEqual(a.grad, b.grad));
  }
}

// Host only: the kernels' per-element terms summed in the CPU's order are the CPU's
// loss and gradient bit for bit (same libm on the host).
TEST(CudaRegressionLossTermsTest, TermsReproduceTheCpuOnTheHost) {
  TestRng rng(84);
  for (Loss l : {Loss::kMse, Loss::kBce}) {
    for (const Case c : {Case{1, 1}, Case{100, 17}, Case{17 * 9, 17}}) {
      SCOPED_TRACE(::testing::Message() << Name(l) << " n=" << c.n << " row_len=" << c.row_len);
      std::vector<float> x = rng.Vector(c.n, -6.0f, 6.0f);
      if (l == Loss::kBce && c.n > 4) {
        x[0] = 80;
        x[1] = -80;
        x[2] = 1e4f;
        x[3] = -1e4f;
      }
      const std::vector<float> t = Targets(l, rng, c.n);
      const float grad_scale = 0.37f;
      std::vector<float> want_grad(c.n), grad(c.n);
      const double want = CpuLoss(l, x, t, c.row_len, grad_scale, want_grad.data());
      double total = 0.0;
      const float mse_factor = MseGradFactor(c.row_len, grad_scale);
      const double bce_factor = BceGradFactor(c.row_len, grad_scale);
      for (int64_t i = 0; i < c.n; ++i) {
        total += l == Loss::kMse ? MseTerm(x[i], t[i]) : BceTerm(x[i], t[i]);
        grad[i] =
            l == Loss::kMse ? MseGrad(x[i], t[i], mse_factor) : BceGrad(x[i], t[i], bce_factor);
      }
      EXPECT_EQ(total / static_cast<double>(c.row_len), want);
      EXPECT_TRUE(BitwiseEqual(grad, want_grad));
    }
  }
}

TEST(CudaRegressionLossTermsTest, BlocksDependOnNOnlyAndCoverIt) {
  EXPECT_EQ(RegressionLossBlocks(0), 0);
  EXPECT_EQ(RegressionLossBlocks(1), 1);
  EXPECT_EQ(RegressionLossBlocks(kRegressionLossThreads), 1);
  EXPECT_EQ(RegressionLossBlocks(kRegressionLossThreads + 1), 2);
  EXPECT_EQ(RegressionLossBlocks(int64_t{1} << 40), kRegressionLossMaxBlocks);
  for (int64_t n : {int64_t{1}, int64_t{255}, int64_t{300001}}) {
    EXPECT_EQ(RegressionLossWorkspaceBytes(n, 17), RegressionLossBlocks(n) * sizeof(double));
  }
}

}  // namespace
}  // namespace lockstep::kernels::cuda
