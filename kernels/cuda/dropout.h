// Dropout on the GPU with the counter scheme of kernels/cpu/dropout.h: the mask is a
// pure function of (seed, layer, step, global sample, element), bitwise equal to the
// CPU's for the same arguments. Pointers are device memory. Thread-safe; ordering is
// the stream's.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cpu/dropout.h"

namespace lockstep::kernels::cuda {

using DropoutKey = ::lockstep::kernels::cpu::DropoutKey;

// x, y, mask (rows, row_len); row r is global sample first_global_row + r. Kept
// elements are scaled by 1/(1-rate); mask[i] = 1 when kept. y == x allowed. rate in [0, 1).
void DropoutForward(const DropoutKey& key, const float* x, float* y, uint8_t* mask, int64_t rows,
                    int64_t row_len, int64_t first_global_row, float rate, cudaStream_t stream);
// dx = mask ? dy / (1 - rate) : 0 over n. dx == dy allowed.
void DropoutBackward(const float* dy, const uint8_t* mask, float* dx, int64_t n, float rate,
                     cudaStream_t stream);

}  // namespace lockstep::kernels::cuda
