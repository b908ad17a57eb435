// 2-D max pooling on the GPU, NHWC, mirroring kernels/cpu/pool.h (same shape struct,
// same argmax convention: flat NHWC index into x, first maximum in window scan order).
// Both directions are bitwise equal to the CPU kernels. Pointers are device memory.
// Thread-safe; ordering is the stream's.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cpu/pool.h"

namespace lockstep::kernels::cuda {

using Pool2dShape = ::lockstep::kernels::cpu::Pool2dShape;

// y, argmax (N, out_h, out_w, C) from x (N, in_h, in_w, C).
void MaxPool2dForward(const Pool2dShape& s, const float* x, float* y, int32_t* argmax,
                      cudaStream_t stream);
// dx (N, in_h, in_w, C) = sum of dy over the outputs whose argmax is that element, added
// in output order (as the CPU does); written, not accumulated. No atomics.
void MaxPool2dBackward(const Pool2dShape& s, const float* dy, const int32_t* argmax, float* dx,
                       cudaStream_t stream);

}  // namespace lockstep::kernels::cuda
