// The bundle has no BLAS (the GPU machine may lack OpenBLAS), but the CPU reference
// kernels' ParallelRanges saves and restores the BLAS thread count around its
// workers. Without a BLAS there is no pool to size: report one thread, ignore sets.
// Only tests/cuda/bundle links this file; the real build uses kernels/cpu/gemm.cc.
#include "kernels/cpu/gemm.h"

namespace lockstep::kernels::cpu {

void SetBlasThreads(int /*threads*/) {}
int BlasThreads() { return 1; }

}  // namespace lockstep::kernels::cpu
