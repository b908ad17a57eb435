// Filter layout conversion on the GPU between lockstep's HWIO and cuDNN's OHWI (KRSC),
// for the cuDNN convolutions (cudnn_conv.h); the index maps are in
// filter_layout_index.h. Pointers are device memory; source and destination must not
// overlap. Asynchronous on the stream. Thread-safe.
#pragma once

#include <cuda_runtime.h>

#include "kernels/cuda/filter_layout_index.h"

namespace lockstep::kernels::cuda {

// ohwi (out_c, kh, kw, in_c) = hwio (kh, kw, in_c, out_c), transposed.
void FilterHwioToOhwi(const FilterDims& d, const float* hwio, float* ohwi, cudaStream_t stream);

// hwio (kh, kw, in_c, out_c) = beta * hwio + ohwi (out_c, kh, kw, in_c) transposed;
// beta is 0 (overwrite, hwio not read) or 1 (accumulate). One add per element: bitwise
// repeatable.
void FilterOhwiToHwio(const FilterDims& d, const float* ohwi, float beta, float* hwio,
                      cudaStream_t stream);

}  // namespace lockstep::kernels::cuda
