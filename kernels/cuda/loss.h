// Fused softmax + cross-entropy on the GPU, mirroring kernels/cpu/loss.h: one pass
// per row computes the loss (in double), the gradient and whether the argmax hits
// the label; a second, single-block pass sums rows in a fixed order (deterministic,
// no atomics). Pointers are device memory. Thread-safe; ordering is the stream's.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace lockstep::kernels::cuda {

// Bytes of device workspace SoftmaxCrossEntropy needs for `rows` rows.
size_t SoftmaxCrossEntropyWorkspaceBytes(int64_t rows);

// logits (rows, classes), labels (rows) in [0, classes).
// *loss_sum (one device double) = sum over rows of -log softmax(row)[label].
// dlogits (rows, classes; may be null) = (softmax - onehot) * grad_scale.
// *correct (one device int64; may be null) = rows whose argmax (first maximum on ties)
// equals the label — cpu::CountCorrect.
// A label outside [0, classes) makes that row's loss and gradient NaN (the CPU aborts;
// the GPU cannot, so the NaN loss is the report).
void SoftmaxCrossEntropy(const float* logits, const int32_t* labels, int64_t rows, int64_t classes,
                         float grad_scale, float* dlogits, double* loss_sum, int64_t* correct,
                         void* workspace, cudaStream_t stream);

// probs (rows, classes) = softmax of each row of logits.
void Softmax(const float* logits, int64_t rows, int64_t classes, float* probs, cudaStream_t stream);

}  // namespace lockstep::kernels::cuda
