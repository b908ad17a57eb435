// Device versions of the activations of kernels/cpu/elementwise.h: the same
// formulas, the same sign split for sigmoid, GELU with the tanh approximation.
// (CUDA only; included by the .cu files.)
#pragma once

#include "kernels/cpu/elementwise.h"

namespace lockstep::kernels::cuda {

using Activation = ::lockstep::kernels::cpu::Activation;

constexpr float kGeluC = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kGeluA = 0.044715f;

__device__ __forceinline__ float ActivateOne(Activation act, float v) {
  switch (act) {
    case Activation::kIdentity:
      return v;
    case Activation::kRelu:
      return v > 0.0f ? v : 0.0f;
    case Activation::kTanh:
      return tanhf(v);
    case Activation::kSigmoid:
      if (v >= 0.0f) return 1.0f / (1.0f + expf(-v));
      {
        const float e = expf(v);
        return e / (1.0f + e);
      }
    case Activation::kGelu: {
      const float t = tanhf(kGeluC * (v + kGeluA * v * v * v));
      return 0.5f * v * (1.0f + t);
    }
  }
  return v;
}

// dx for one element given x (GELU), y (the others) and dy.
__device__ __forceinline__ float ActivateGrad(Activation act, float x, float y, float dy) {
  switch (act) {
    case Activation::kIdentity:
      return dy;
    case Activation::kRelu:
      return y > 0.0f ? dy : 0.0f;
    case Activation::kTanh:
      return dy * (1.0f - y * y);
    case Activation::kSigmoid:
      return dy * y * (1.0f - y);
    case Activation::kGelu: {
      const float t = tanhf(kGeluC * (x + kGeluA * x * x * x));
      const float dt = kGeluC * (1.0f + 3.0f * kGeluA * x * x) * (1.0f - t * t);
      return dy * (0.5f * (1.0f + t) + 0.5f * x * dt);
    }
  }
  return dy;
}

}  // namespace lockstep::kernels::cuda
