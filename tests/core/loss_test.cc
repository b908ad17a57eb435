// Loss values and gradients through the runtime's ComputeLoss, against direct
// formulas in double and central finite differences.
#include <gtest/gtest.h>

#include <cmath>

#include "runtime/core/loss.h"
#include "tests/core/gradient_check.h"

namespace lockstep {
namespace {

using testing::RandomVector;

double LossOf(Backend& be, LossKind kind, std::vector<float> out, Shape shape, const Tensor& targets) {
  Tensor o = Tensor::View(out.data(), shape, DType::kFloat32, be.device());
  return ComputeLoss(be, kind, o, targets, 1.0f, nullptr).sum;
}

void CheckLossGradient(LossKind kind, Shape shape, Tensor targets, std::vector<float> out) {
  auto be = CreateCpuBackend();
  std::vector<float> grad(out.size());
  Tensor o = Tensor::View(out.data(), shape, DType::kFloat32, be->device());
  Tensor g = Tensor::View(grad.data(), shape, DType::kFloat32, be->device());
  const float scale = 0.25f;
  ComputeLoss(*be, kind, o, targets, scale, &g);
  const float eps = 1e-2f;
  for (size_t i = 0; i < out.size(); ++i) {
    std::vector<float> p = out, m = out;
    p[i] += eps;
    m[i] -= eps;
    double numeric = scale * (LossOf(*be, kind, p, shape, targets) - LossOf(*be, kind, m, shape, targets)) / (2 * eps);
    EXPECT_NEAR(grad[i], numeric, 1e-3 + 1e-2 * std::fabs(numeric)) << LossName(kind) << " element " << i;
  }
}

TEST(Loss, SoftmaxCrossEntropyValueAndGradient) {
  auto be = CreateCpuBackend();
  std::vector<float> logits = RandomVector(12, 1, -2, 2);
  std::vector<int32_t> labels = {2, 0, 3};
  Tensor y = Tensor::View(labels.data(), {3}, DType::kInt32, be->device());
  double expected = 0;
  for (int r = 0; r < 3; ++r) {
    double z = 0;
    for (int c = 0; c < 4; ++c) z += std::exp(static_cast<double>(logits[r * 4 + c]));
    expected += std::log(z) - logits[r * 4 + labels[r]];
  }
  EXPECT_NEAR(LossOf(*be, LossKind::kSoftmaxCrossEntropy, logits, {3, 4}, y), expected, 1e-5);
  CheckLossGradient(LossKind::kSoftmaxCrossEntropy, {3, 4}, y, logits);
}

TEST(Loss, MeanSquaredErrorValueAndGradient) {
  auto be = CreateCpuBackend();
  std::vector<float> pred = RandomVector(6, 2), target = RandomVector(6, 3);
  Tensor t = Tensor::View(target.data(), {2, 3}, DType::kFloat32, be->device());
  double expected = 0;
  for (int i = 0; i < 6; ++i) expected += (pred[i] - target[i]) * (pred[i] - target[i]) / 3.0;
  EXPECT_NEAR(LossOf(*be, LossKind::kMeanSquaredError, pred, {2, 3}, t), expected, 1e-6);
  CheckLossGradient(LossKind::kMeanSquaredError, {2, 3}, t, pred);
}

TEST(Loss, BinaryCrossEntropyWithLogitsValueAndGradient) {
  auto be = CreateCpuBackend();
  std::vector<float> logits = RandomVector(4, 4, -3, 3), target = {1, 0, 1, 0};
  Tensor t = Tensor::View(target.data(), {4, 1}, DType::kFloat32, be->device());
  double expected = 0;
  for (int i = 0; i < 4; ++i) {
    double p = 1.0 / (1.0 + std::exp(-static_cast<double>(logits[i])));
    expected -= target[i] * std::log(p) + (1 - target[i]) * std::log(1 - p);
  }
  EXPECT_NEAR(LossOf(*be, LossKind::kBinaryCrossEntropyWithLogits, logits, {4, 1}, t), expected, 1e-5);
  CheckLossGradient(LossKind::kBinaryCrossEntropyWithLogits, {4, 1}, t, logits);
}

}  // namespace
}  // namespace lockstep
