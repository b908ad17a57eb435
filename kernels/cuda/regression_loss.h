// Regression losses on the GPU, mirroring kernels/cpu/loss.h: mean squared error and
// binary cross-entropy with logits over n elements (rows of row_len outputs; n need
// not be a multiple of row_len, as on the CPU). The loss is the per-sample mean over
// row_len summed over samples, i.e. (sum over all n elements) / row_len, reduced in
// double in a fixed order (per-block tree sums, then one block over the blocks): no
// atomics, bitwise repeatable. Pointers are device memory. Thread-safe; ordering is
// the stream's.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace lockstep::kernels::cuda {

// Bytes of device workspace either loss needs for n elements (0 when n == 0).
size_t RegressionLossWorkspaceBytes(int64_t n, int64_t row_len);

// pred, target, dpred (n). *loss_sum (one device double) = sum (pred - target)^2 / row_len.
// dpred (may be null: loss only) = 2 (pred - target) / row_len * grad_scale, bitwise the CPU's.
void MeanSquaredError(const float* pred, const float* target, int64_t n, int64_t row_len,
                      float grad_scale, float* dpred, double* loss_sum, void* workspace,
                      cudaStream_t stream);

// logits, target, dlogits (n); targets in [0, 1]. *loss_sum = sum BCE(sigmoid(logit), target)
// / row_len, stable for any |logit|. dlogits (may be null) = (sigmoid(logit) - target) /
// row_len * grad_scale.
void BinaryCrossEntropyWithLogits(const float* logits, const float* target, int64_t n,
                                  int64_t row_len, float grad_scale, float* dlogits,
                                  double* loss_sum, void* workspace, cudaStream_t stream);

}  // namespace lockstep::kernels::cuda
