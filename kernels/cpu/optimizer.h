// Optimiser updates as one fused pass over a flat parameter buffer (and its
// gradient and state buffers of the same length). Raw pointers; thread-safe for
// disjoint ranges, so ZeRO-1 can update just the range a rank owns.
#pragma once

#include <cstdint>

namespace lockstep::kernels::cpu {

// PyTorch semantics: g = grad + weight_decay * p; buf = momentum * buf + g (buf = g on
// the first step when first_step is true); update = nesterov ? g + momentum * buf : buf
// (or g when momentum == 0); p -= lr * update.
struct SgdHyper {
  float lr = 0.01f;
  float momentum = 0.0f;
  float weight_decay = 0.0f;
  bool nesterov = false;
  bool first_step = false;
};
void SgdStep(const SgdHyper& h, float* param, const float* grad, float* momentum_buf, int64_t n);

// Adam (decoupled == false: L2 added to the gradient, g = grad + wd * p) and AdamW
// (decoupled == true: p -= lr * wd * p before the Adam update). step is 1-based.
// m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps).
struct AdamHyper {
  float lr = 0.001f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-7f;  // Keras default
  float weight_decay = 0.0f;
  bool decoupled = false;
  int64_t step = 1;
};
void AdamStep(const AdamHyper& h, float* param, const float* grad, float* m, float* v, int64_t n);

}  // namespace lockstep::kernels::cpu
