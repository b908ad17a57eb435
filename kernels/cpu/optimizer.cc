// Fused optimiser passes: each element of param/grad/state is read and written
// once. Bias corrections are computed once per call in double. Deterministic;
// callers may run disjoint ranges on different threads.
#include "kernels/cpu/optimizer.h"

#include <cmath>

#include "common/check.h"

namespace lockstep::kernels::cpu {

void SgdStep(const SgdHyper& h, float* param, const float* grad, float* momentum_buf, int64_t n) {
  const float lr = h.lr, mu = h.momentum, wd = h.weight_decay;
  if (mu == 0.0f) {
    for (int64_t i = 0; i < n; ++i) param[i] -= lr * (grad[i] + wd * param[i]);
    return;
  }
  LS_CHECK(momentum_buf != nullptr) << "SgdStep: momentum " << mu << " needs a momentum buffer";
  for (int64_t i = 0; i < n; ++i) {
    const float g = grad[i] + wd * param[i];
    const float buf = h.first_step ? g : mu * momentum_buf[i] + g;
    momentum_buf[i] = buf;
    const float update = h.nesterov ? g + mu * buf : buf;
    param[i] -= lr * update;
  }
}

void AdamStep(const AdamHyper& h, float* param, const float* grad, float* m, float* v, int64_t n) {
  LS_CHECK_GE(h.step, 1) << "AdamStep: step is 1-based";
  const double t = static_cast<double>(h.step);
  const float inv_bc1 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(h.beta1), t)));
  const float inv_bc2 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(h.beta2), t)));
  const float b1 = h.beta1, b2 = h.beta2, one_b1 = 1.0f - h.beta1, one_b2 = 1.0f - h.beta2;
  const float lr = h.lr, eps = h.eps;
  // Decoupled: p -= lr*wd*p (gradient untouched). Coupled: g = grad + wd*p.
  const float l2 = h.decoupled ? 0.0f : h.weight_decay;
  const float decay = h.decoupled ? lr * h.weight_decay : 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    const float p = param[i];
    const float g = grad[i] + l2 * p;
    const float mi = b1 * m[i] + one_b1 * g;
    const float vi = b2 * v[i] + one_b2 * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] = p - decay * p - lr * (mi * inv_bc1) / (std::sqrt(vi * inv_bc2) + eps);
  }
}

}  // namespace lockstep::kernels::cpu
