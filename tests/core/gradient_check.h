// Finite-difference gradient checking for layers: L = sum(y * r) for a fixed
// random r, so dL/dy = r; central differences in float with a stated tolerance.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "runtime/core/layer.h"

namespace lockstep::testing {

// Deterministic test data in [lo, hi).
inline std::vector<float> RandomVector(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 gen(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = lo + (hi - lo) * static_cast<float>(gen() >> 8) / 16777216.0f;
  return v;
}

// Pushes values away from 0 so ReLU kinks are never crossed by a perturbation.
inline void AvoidZero(std::vector<float>* v, float margin) {
  for (auto& x : *v) {
    if (std::fabs(x) < margin) x = x < 0 ? -margin - std::fabs(x) : margin + x;
  }
}

struct GradCheckOptions {
  float epsilon = 1e-2f;
  double rel_tol = 2e-2;  // |numeric - analytic| <= abs_tol + rel_tol * |numeric|
  double abs_tol = 2e-3;
};

// Checks dx and every parameter gradient of `layer` (already built with batch-free
// input shape) on batch `batch` with input `x` and parameter values `params`.
void CheckLayerGradients(Layer& layer, Backend& backend, int64_t batch, std::vector<float> x,
                         const StepContext& ctx_template, GradCheckOptions opt = {});

}  // namespace lockstep::testing
