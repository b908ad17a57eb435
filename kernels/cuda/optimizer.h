// Fused optimiser updates on the GPU over one flat range, mirroring
// kernels/cpu/optimizer.h (same hyper-parameter structs, same float arithmetic; the
// bias corrections are computed on the host exactly as the CPU does). Pointers are
// device memory. Thread-safe for disjoint ranges; ordering is the stream's.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cpu/optimizer.h"

namespace lockstep::kernels::cuda {

using SgdHyper = ::lockstep::kernels::cpu::SgdHyper;
using AdamHyper = ::lockstep::kernels::cpu::AdamHyper;

// param, grad, momentum_buf (n); momentum_buf may be null when h.momentum == 0.
void SgdStep(const SgdHyper& h, float* param, const float* grad, float* momentum_buf, int64_t n,
             cudaStream_t stream);
// param, grad, m, v (n). Adam (h.decoupled == false) or AdamW (true).
void AdamStep(const AdamHyper& h, float* param, const float* grad, float* m, float* v, int64_t n,
              cudaStream_t stream);

}  // namespace lockstep::kernels::cuda
