// Per-element terms of the regression losses, shared by the CUDA kernels
// (kernels/cuda/regression_loss.cu) and their host tests, written as
// kernels/cpu/loss.cc evaluates them so the gradients match it (bitwise for MSE;
// for BCE up to the device's exp). Header-only, no CUDA runtime; pure, thread-safe.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/cuda/philox.h"  // LS_HOST_DEVICE

namespace lockstep::kernels::cuda {

// Factor of (pred - target) in dpred, rounded in float as the CPU does.
LS_HOST_DEVICE float MseGradFactor(int64_t row_len, float grad_scale) {
  return 2.0f / static_cast<float>(row_len) * grad_scale;
}
// (pred - target)^2 in double; the loss is the sum over elements divided by row_len.
LS_HOST_DEVICE double MseTerm(float pred, float target) {
  const double d = static_cast<double>(pred) - target;
  return d * d;
}
LS_HOST_DEVICE float MseGrad(float pred, float target, float factor) {
  return (pred - target) * factor;
}

// Factor of (sigmoid(x) - t) in dlogits, in double.
LS_HOST_DEVICE double BceGradFactor(int64_t row_len, float grad_scale) {
  return static_cast<double>(grad_scale) / static_cast<double>(row_len);
}
// max(x, 0) - x t + log(1 + exp(-|x|)) in double: never overflows, exact tails.
LS_HOST_DEVICE double BceTerm(float logit, float target) {
  const double x = logit, t = target;
  return (x > 0 ? x : 0.0) - x * t + ::log1p(::exp(-::fabs(x)));
}
// sigmoid without overflow for either sign.
LS_HOST_DEVICE double StableSigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + ::exp(-x));
  const double e = ::exp(x);
  return e / (1.0 + e);
}
LS_HOST_DEVICE float BceGrad(float logit, float target, double factor) {
  return static_cast<float>((StableSigmoid(logit) - static_cast<double>(target)) * factor);
}

// Blocks of the first reduction pass over n elements: a function of n alone, so the
// summation order (and the bits of the loss) never depends on the device.
constexpr int kRegressionLossThreads = 256;
constexpr int64_t kRegressionLossMaxBlocks = 1024;
LS_HOST_DEVICE int64_t RegressionLossBlocks(int64_t n) {
  if (n <= 0) return 0;
  const int64_t blocks = (n + kRegressionLossThreads - 1) / kRegressionLossThreads;
  return blocks < kRegressionLossMaxBlocks ? blocks : kRegressionLossMaxBlocks;
}

}  // namespace lockstep::kernels::cuda
