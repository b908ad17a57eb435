// One grid-stride pass per optimiser step; each element of every buffer is read and
// written once. The target is built with --fmad=false, so these are the CPU's
// roundings operation for operation.
#include <cmath>

#include "common/check.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/optimizer.h"

namespace lockstep::kernels::cuda {
namespace {

__global__ void SgdPlainKernel(float lr, float wd, float* param, const float* grad, int64_t n) {
  LS_GRID_STRIDE_LOOP(i, n) { param[i] -= lr * (grad[i] + wd * param[i]); }
}

__global__ void SgdMomentumKernel(SgdHyper h, float* param, const float* grad, float* momentum_buf,
                                  int64_t n) {
  const float lr = h.lr, mu = h.momentum, wd = h.weight_decay;
  LS_GRID_STRIDE_LOOP(i, n) {
    const float g = grad[i] + wd * param[i];
    const float buf = h.first_step ? g : mu * momentum_buf[i] + g;
    momentum_buf[i] = buf;
    const float update = h.nesterov ? g + mu * buf : buf;
    param[i] -= lr * update;
  }
}

struct AdamParams {
  float lr, eps, b1, b2, one_b1, one_b2, inv_bc1, inv_bc2, l2, decay;
};

__global__ void AdamKernel(AdamParams a, float* param, const float* grad, float* m, float* v,
                           int64_t n) {
  LS_GRID_STRIDE_LOOP(i, n) {
    const float p = param[i];
    const float g = grad[i] + a.l2 * p;
    const float mi = a.b1 * m[i] + a.one_b1 * g;
    const float vi = a.b2 * v[i] + a.one_b2 * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] = p - a.decay * p - a.lr * (mi * a.inv_bc1) / (sqrtf(vi * a.inv_bc2) + a.eps);
  }
}

}  // namespace

void SgdStep(const SgdHyper& h, float* param, const float* grad, float* momentum_buf, int64_t n,
             cudaStream_t stream) {
  LS_CHECK_GE(n, 0) << "SgdStep";
  if (n == 0) return;
  if (h.momentum == 0.0f) {
    SgdPlainKernel<<<GridFor(n), kThreads, 0, stream>>>(h.lr, h.weight_decay, param, grad, n);
  } else {
    LS_CHECK(momentum_buf != nullptr)
        << "SgdStep: momentum " << h.momentum << " needs a momentum buffer";
    SgdMomentumKernel<<<GridFor(n), kThreads, 0, stream>>>(h, param, grad, momentum_buf, n);
  }
  LS_CUDA_CHECK_LAUNCH();
}

void AdamStep(const AdamHyper& h, float* param, const float* grad, float* m, float* v, int64_t n,
              cudaStream_t stream) {
  LS_CHECK_GE(h.step, 1) << "AdamStep: step is 1-based";
  LS_CHECK_GE(n, 0) << "AdamStep";
  if (n == 0) return;
  const double t = static_cast<double>(h.step);
  AdamParams a;
  a.inv_bc1 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(h.beta1), t)));
  a.inv_bc2 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(h.beta2), t)));
  a.b1 = h.beta1;
  a.b2 = h.beta2;
  a.one_b1 = 1.0f - h.beta1;
  a.one_b2 = 1.0f - h.beta2;
  a.lr = h.lr;
  a.eps = h.eps;
  a.l2 = h.decoupled ? 0.0f : h.weight_decay;
  a.decay = h.decoupled ? h.lr * h.weight_decay : 0.0f;
  AdamKernel<<<GridFor(n), kThreads, 0, stream>>>(a, param, grad, m, v, n);
  LS_CUDA_CHECK_LAUNCH();
}

}  // namespace lockstep::kernels::cuda
