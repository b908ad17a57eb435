// Layer normalisation over the last dimension on the CPU. The scale is stored
// zero-centred: y = xhat * (1 + gamma) + beta, so an all-zero initialisation is
// the identity scale (Megatron's "layernorm_1p"; our ParamInit has no ones).
// Raw pointers, no allocation; thread-safe for disjoint outputs.
#pragma once

#include <cstdint>

namespace lockstep::kernels::cpu {

// x, y (rows, cols); gamma, beta (cols); mean, rstd (rows) saved for backward.
// xhat = (x - mean) * rstd, rstd = 1 / sqrt(var + eps), var the biased variance.
void LayerNormForward(const float* x, const float* gamma, const float* beta, int64_t rows,
                      int64_t cols, float eps, float* y, float* mean, float* rstd);
// dx (may be null) from dy; dgamma/dbeta = grad_beta * old + sum over rows.
// grad_beta is 0 (overwrite) or 1 (accumulate).
void LayerNormBackward(const float* x, const float* gamma, const float* mean, const float* rstd,
                       const float* dy, int64_t rows, int64_t cols, float grad_beta, float* dx,
                       float* dgamma, float* dbeta);

}  // namespace lockstep::kernels::cpu
