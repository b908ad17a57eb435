// Layer normalisation over the last dimension on the GPU, mirroring
// kernels/cpu/layer_norm.h: zero-centred scale, y = xhat * (1 + gamma) + beta, mean and
// rstd saved per row. Forward outputs and dx are bitwise the CPU's scalar arithmetic
// (same double partial sums in the same order, see kernels/cuda/layer_norm_order.h;
// the CPU kernels' AVX2 clone may fuse multiply-adds, a last-bit difference); dgamma /
// dbeta are too for rows <= kLnMinChunkRows and otherwise deterministic double sums in
// a fixed chunked order (equal after rounding to float in practice, not guaranteed).
// No atomics. Pointers are device memory; asynchronous on `stream`. Thread-safe;
// ordering is the stream's.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace lockstep::kernels::cuda {

// x, y (rows, cols); gamma, beta (cols); mean, rstd (rows). cols >= 1.
void LayerNormForward(const float* x, const float* gamma, const float* beta, int64_t rows,
                      int64_t cols, float eps, float* y, float* mean, float* rstd,
                      cudaStream_t stream);

// Bytes of device workspace LayerNormBackward needs: one double partial of dgamma and
// of dbeta per (row chunk, column), at most 2 * kLnMaxChunks * cols doubles; 0 when
// rows == 0. The workspace must be 8-byte aligned.
size_t LayerNormBackwardWorkspaceBytes(int64_t rows, int64_t cols);

// dx (rows, cols; may be null: not computed) written from dy; dgamma / dbeta (cols) =
// grad_beta * old + sum over rows (grad_beta 0 overwrites and never reads old).
void LayerNormBackward(const float* x, const float* gamma, const float* mean, const float* rstd,
                       const float* dy, int64_t rows, int64_t cols, float grad_beta, float* dx,
                       float* dgamma, float* dbeta, void* workspace, cudaStream_t stream);

}  // namespace lockstep::kernels::cuda
