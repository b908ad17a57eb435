// Elementwise CUDA launchers mirroring kernels/cpu/elementwise.h: same arguments and
// semantics plus the stream they are enqueued on. Pointers are device memory; nothing
// is allocated; every launch is checked (LS_CUDA_CHECK_LAUNCH). Deterministic.
// Callable from any host thread; ordering is the stream's.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cpu/elementwise.h"

namespace lockstep::kernels::cuda {

using Activation = ::lockstep::kernels::cpu::Activation;

// y (rows, cols) = f(y + bias[c]); bias may be null. act must not be GELU (as on the CPU).
void BiasActivationForward(float* y, const float* bias, int64_t rows, int64_t cols, Activation act,
                           cudaStream_t stream);
// y (rows, cols) += bias (cols).
void BiasAdd(float* y, const float* bias, int64_t rows, int64_t cols, cudaStream_t stream);
// dbias (cols) = beta * dbias + column sums of dy (rows, cols), summed in double in a
// fixed order. beta is 0 (overwrite) or 1 (accumulate). Few columns over many rows (a
// convolution's bias: N*H*W rows) are split into row chunks whose double partials a
// second pass adds in chunk order; the chunking depends only on (rows, cols), so the
// result is bitwise repeatable. workspace: BiasBackwardWorkspaceBytes(rows, cols) bytes
// (may be null when that is 0), 8-byte aligned.
size_t BiasBackwardWorkspaceBytes(int64_t rows, int64_t cols);
void BiasBackward(const float* dy, int64_t rows, int64_t cols, float beta, float* dbias, void* workspace,
                  cudaStream_t stream);

// y = f(x) over n (x == y allowed).
void ActivationForward(Activation act, const float* x, float* y, int64_t n, cudaStream_t stream);
// dx = dy * f'(.) over n: reads x for GELU, y otherwise (the other may be null). dx == dy allowed.
void ActivationBackward(Activation act, const float* x, const float* y, const float* dy, float* dx,
                        int64_t n, cudaStream_t stream);

// x *= s over n.
void Scale(float* x, int64_t n, float s, cudaStream_t stream);
// y += a * x over n.
void Axpy(float a, const float* x, float* y, int64_t n, cudaStream_t stream);

}  // namespace lockstep::kernels::cuda
