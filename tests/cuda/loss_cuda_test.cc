// Fused softmax + cross-entropy (+ accuracy) against the CPU kernels, including
// a vocabulary-sized row (more classes than threads), batch 1 and frequent ties.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/loss.h"
#include "kernels/cuda/loss.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/kernels/kernels_test_util.h"

namespace lockstep::kernels::cuda {
namespace {

using ::lockstep::kernels::testing::TestRng;
using testing::AllClose;
using testing::DeviceBuffer;

using CudaLossTest = testing::CudaTest;

struct Shape {
  int64_t rows, classes;
};

std::vector<int32_t> Labels(TestRng& rng, int64_t rows, int64_t classes) {
  std::vector<int32_t> labels(rows);
  for (auto& l : labels) l = static_cast<int32_t>(rng.Next() % classes);
  return labels;
}

struct GpuLoss {
  double loss = 0;
  int64_t correct = 0;
  std::vector<float> dlogits;
};

GpuLoss RunGpu(const std::vector<float>& logits, const std::vector<int32_t>& labels, int64_t rows,
               int64_t classes, float grad_scale, cudaStream_t stream) {
  DeviceBuffer<float> d_logits(logits), d_dlogits(rows * classes);
  DeviceBuffer<int32_t> d_labels(labels);
  DeviceBuffer<double> d_loss(1);
  DeviceBuffer<int64_t> d_correct(1);
  DeviceBuffer<char> ws(static_cast<int64_t>(SoftmaxCrossEntropyWorkspaceBytes(rows)));
  SoftmaxCrossEntropy(d_logits.get(), d_labels.get(), rows, classes, grad_scale, d_dlogits.get(),
                      d_loss.get(), d_correct.get(), ws.get(), stream);
  return {d_loss.Download()[0], d_correct.Download()[0], d_dlogits.Download()};
}

// What the GPU computes, in double on the host: exp in double, one rounding to float
// per gradient element. The CPU kernel is the looser reference: it computes each
// exponential in float (FastExp, <= 2 ulp, FMA in its AVX2 clone), so it is compared
// with bounds derived from that.
struct DoubleReference {
  double loss = 0;
  std::vector<float> dlogits;
};

DoubleReference SoftmaxCrossEntropyInDouble(const std::vector<float>& logits, const std::vector<int32_t>& labels,
                                            int64_t rows, int64_t classes, float grad_scale) {
  DoubleReference ref;
  ref.dlogits.resize(static_cast<size_t>(rows * classes));
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = logits.data() + r * classes;
    double mx = row[0];
    for (int64_t j = 1; j < classes; ++j) mx = std::max(mx, static_cast<double>(row[j]));
    double sum = 0;
    for (int64_t j = 0; j < classes; ++j) sum += std::exp(static_cast<double>(row[j]) - mx);
    const int32_t label = labels[static_cast<size_t>(r)];
    for (int64_t j = 0; j < classes; ++j) {
      const double p = std::exp(static_cast<double>(row[j]) - mx) / sum;
      ref.dlogits[static_cast<size_t>(r * classes + j)] = static_cast<float>((j == label ? p - 1.0 : p) * grad_scale);
    }
    ref.loss += std::log(sum) - (static_cast<double>(row[label]) - mx);
  }
  return ref;
}

TEST_F(CudaLossTest, SoftmaxCrossEntropyMatchesCpu) {
  TestRng rng(31);
  const Shape shapes[] = {{1, 1}, {1, 10}, {7, 3}, {64, 10}, {33, 1000}, {5, 50001}, {300, 257}};
  for (const Shape& s : shapes) {
    SCOPED_TRACE(::testing::Message() << "rows=" << s.rows << " classes=" << s.classes);
    const std::vector<float> logits = rng.Vector(s.rows * s.classes, -8.0f, 8.0f);
    const std::vector<int32_t> labels = Labels(rng, s.rows, s.classes);
    const float grad_scale = 1.0f / static_cast<float>(s.rows);
    std::vector<float> dlogits(s.rows * s.classes);
    const double cpu_loss = cpu::SoftmaxCrossEntropy(logits.data(), labels.data(), s.rows, s.classes,
                                                     grad_scale, dlogits.data());
    const int64_t want_correct = cpu::CountCorrect(logits.data(), labels.data(), s.rows, s.classes);
    const DoubleReference want = SoftmaxCrossEntropyInDouble(logits, labels, s.rows, s.classes, grad_scale);
    const GpuLoss got = RunGpu(logits, labels, s.rows, s.classes, grad_scale, stream_);
    // Tight against the double reference (only the summation order differs; one float
    // rounding per gradient element may fall the other way).
    EXPECT_NEAR(got.loss, want.loss, 1e-12 * (1.0 + std::fabs(want.loss)));
    EXPECT_TRUE(AllClose(got.dlogits, want.dlogits, 1e-9 * grad_scale, 2.5e-7));
    // Within FastExp's error of the CPU kernel: 2 ulp per exponential, so ~2.4e-7 of
    // each row's log-sum and of each probability.
    EXPECT_NEAR(got.loss, cpu_loss, 1e-6 * static_cast<double>(s.rows) + 1e-12 * std::fabs(cpu_loss));
    EXPECT_TRUE(AllClose(got.dlogits, dlogits, 1e-6 * grad_scale, 1e-6));
    EXPECT_EQ(got.correct, want_correct);
  }
}

TEST_F(CudaLossTest, AccuracyTakesTheFirstMaximumOnTies) {
  TestRng rng(32);
  // Logits from {0, 1, 2}: most rows have a tied maximum. Labels favour tied positions.
  for (const Shape& s : {Shape{1, 2}, Shape{257, 5}, Shape{64, 300}}) {
    SCOPED_TRACE(::testing::Message() << "rows=" << s.rows << " classes=" << s.classes);
    std::vector<float> logits(s.rows * s.classes);
    for (auto& v : logits) v = static_cast<float>(rng.Next() % 3);
    std::vector<int32_t> labels(s.rows);
    for (int64_t r = 0; r < s.rows; ++r) {
      // Label: a random position holding the row maximum (first or a later tie).
      float mx = -1;
      for (int64_t j = 0; j < s.classes; ++j) mx = std::max(mx, logits[r * s.classes + j]);
      std::vector<int32_t> at_max;
      for (int64_t j = 0; j < s.classes; ++j) {
        if (logits[r * s.classes + j] == mx) at_max.push_back(static_cast<int32_t>(j));
      }
      labels[r] = at_max[rng.Next() % at_max.size()];
    }
    const int64_t want = cpu::CountCorrect(logits.data(), labels.data(), s.rows, s.classes);
    const GpuLoss got = RunGpu(logits, labels, s.rows, s.classes, 1.0f, stream_);
    EXPECT_EQ(got.correct, want);
  }
}

TEST_F(CudaLossTest, HugeLogitsStayFinite) {
  const int64_t rows = 3, classes = 4;
  const std::vector<float> logits = {1e30f, -1e30f, 0, 5, -3e4f, 3e4f, 1, 2, 80, 90, 100, -100};
  const std::vector<int32_t> labels = {1, 0, 2};
  std::vector<float> dlogits(rows * classes);
  const double want =
      cpu::SoftmaxCrossEntropy(logits.data(), labels.data(), rows, classes, 0.5f, dlogits.data());
  const GpuLoss got = RunGpu(logits, labels, rows, classes, 0.5f, stream_);
  ASSERT_TRUE(std::isfinite(got.loss));
  EXPECT_NEAR(got.loss, want, 1e-9 * std::fabs(want));
  EXPECT_TRUE(AllClose(got.dlogits, dlogits, 1e-9, 1e-6));
}

TEST_F(CudaLossTest, OptionalOutputsMayBeNull) {
  TestRng rng(33);
  const int64_t rows = 9, classes = 11;
  const std::vector<float> logits = rng.Vector(rows * classes);
  const std::vector<int32_t> labels = Labels(rng, rows, classes);
  const double want =
      cpu::SoftmaxCrossEntropy(logits.data(), labels.data(), rows, classes, 1.0f, nullptr);
  DeviceBuffer<float> d_logits(logits);
  DeviceBuffer<int32_t> d_labels(labels);
  DeviceBuffer<double> d_loss(1);
  DeviceBuffer<char> ws(static_cast<int64_t>(SoftmaxCrossEntropyWorkspaceBytes(rows)));
  SoftmaxCrossEntropy(d_logits.get(), d_labels.get(), rows, classes, 1.0f, nullptr, d_loss.get(),
                      nullptr, ws.get(), stream_);
  EXPECT_NEAR(d_loss.Download()[0], want, 1e-12 * want);
}

TEST_F(CudaLossTest, ZeroRowsGiveZeroLoss) {
  DeviceBuffer<double> d_loss(1);
  DeviceBuffer<int64_t> d_correct(1);
  SoftmaxCrossEntropy(nullptr, nullptr, 0, 10, 1.0f, nullptr, d_loss.get(), d_correct.get(),
                      nullptr, stream_);
  EXPECT_EQ(d_loss.Download()[0], 0.0);
  EXPECT_EQ(d_correct.Download()[0], 0);
}

TEST_F(CudaLossTest, LabelOutOfRangeGivesNaNLoss) {
  const std::vector<float> logits = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f};
  const std::vector<int32_t> labels = {1, 3};  // 3 is not a class of 3
  const GpuLoss got = RunGpu(logits, labels, 2, 3, 1.0f, stream_);
  EXPECT_TRUE(std::isnan(got.loss));
  EXPECT_FALSE(std::isnan(got.dlogits[0]));  // the valid row's gradient is intact
  EXPECT_TRUE(std::isnan(got.dlogits[3]));
}

TEST_F(CudaLossTest, SoftmaxMatchesCpu) {
  TestRng rng(34);
  for (const Shape& s : {Shape{1, 1}, Shape{1, 3}, Shape{17, 300}, Shape{2, 40000}}) {
    SCOPED_TRACE(::testing::Message() << "rows=" << s.rows << " classes=" << s.classes);
    const std::vector<float> logits = rng.Vector(s.rows * s.classes, -10.0f, 10.0f);
    std::vector<float> probs(s.rows * s.classes);
    cpu::Softmax(logits.data(), s.rows, s.classes, probs.data());
    DeviceBuffer<float> d_logits(logits), d_probs(s.rows * s.classes);
    Softmax(d_logits.get(), s.rows, s.classes, d_probs.get(), stream_);
    EXPECT_TRUE(AllClose(d_probs.Download(), probs, 1e-12, 1e-6));
  }
}

}  // namespace
}  // namespace lockstep::kernels::cuda
