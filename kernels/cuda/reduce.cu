// SumOfSquares in two passes. The number of pass-1 blocks is a function of n only
// (not of the device), which is what makes the result reproducible across GPUs.
#include "common/check.h"
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/reduce.h"

namespace lockstep::kernels::cuda {
namespace {

constexpr int kReduceThreads = 256;
constexpr int64_t kItemsPerThread = 8;  // before another block is worth it
constexpr int64_t kMaxPartials = 1024;  // pass 2 is one block over these

int64_t PartialCount(int64_t n) {
  const int64_t per_block = kReduceThreads * kItemsPerThread;
  const int64_t blocks = (n + per_block - 1) / per_block;
  return blocks < 1 ? 1 : (blocks > kMaxPartials ? kMaxPartials : blocks);
}

// Block b: thread t adds x[i]^2 for i = b*T + t, stepping by gridDim*T.
__global__ void SumOfSquaresPartialKernel(const float* x, int64_t n, double* partials) {
  __shared__ double scratch[kReduceThreads];
  double acc = 0.0;
  LS_GRID_STRIDE_LOOP(i, n) {
    const double v = x[i];
    acc += v * v;
  }
  const double total = BlockSum(acc, scratch);
  if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

__global__ void SumPartialsKernel(const double* partials, int64_t count, double* out) {
  __shared__ double scratch[kReduceThreads];
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) acc += partials[i];
  const double total = BlockSum(acc, scratch);
  if (threadIdx.x == 0) *out = total;
}

}  // namespace

int64_t SumOfSquaresWorkspaceElems(int64_t n) { return PartialCount(n); }

void SumOfSquares(const float* x, int64_t n, double* out, double* workspace, cudaStream_t stream) {
  LS_CHECK_GE(n, 0) << "SumOfSquares";
  LS_CHECK(out != nullptr && workspace != nullptr) << "SumOfSquares: null out or workspace";
  const int64_t blocks = PartialCount(n);
  SumOfSquaresPartialKernel<<<static_cast<unsigned int>(blocks), kReduceThreads, 0, stream>>>(
      x, n, workspace);
  LS_CUDA_CHECK_LAUNCH();
  SumPartialsKernel<<<1, kReduceThreads, 0, stream>>>(workspace, blocks, out);
  LS_CUDA_CHECK_LAUNCH();
}

}  // namespace lockstep::kernels::cuda
