// MSE and BCE-with-logits: a grid-stride pass (grid size a function of n only)
// writes the gradient and leaves one double partial per block (BlockSum's fixed
// tree); one block then sums the partials in a fixed order and divides by row_len.
#include "common/check.h"
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/regression_loss.h"
#include "kernels/cuda/regression_loss_terms.h"

namespace lockstep::kernels::cuda {
namespace {

constexpr int kThreadsPerBlock = kRegressionLossThreads;

struct MseOp {
  float factor;
  __device__ double Loss(float x, float t) const { return MseTerm(x, t); }
  __device__ float Grad(float x, float t) const { return MseGrad(x, t, factor); }
};

struct BceOp {
  double factor;
  __device__ double Loss(float x, float t) const { return BceTerm(x, t); }
  __device__ float Grad(float x, float t) const { return BceGrad(x, t, factor); }
};

// x, target, grad (n); partials (gridDim.x).
template <typename Op>
__global__ void __launch_bounds__(kThreadsPerBlock)
    ElementLossKernel(Op op, const float* x, const float* target, int64_t n, float* grad,
                      double* partials) {
  __shared__ double scratch[kThreadsPerBlock];
  double part = 0.0;
  LS_GRID_STRIDE_LOOP(i, n) {
    const float xi = x[i], ti = target[i];
    part += op.Loss(xi, ti);
    if (grad != nullptr) grad[i] = op.Grad(xi, ti);
  }
  const double total = BlockSum(part, scratch);
  if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

__global__ void __launch_bounds__(kThreadsPerBlock)
    SumPartialsKernel(const double* partials, int64_t count, int64_t row_len, double* loss_sum) {
  __shared__ double scratch[kThreadsPerBlock];
  double part = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) part += partials[i];
  const double total = BlockSum(part, scratch);
  if (threadIdx.x == 0) *loss_sum = total / static_cast<double>(row_len);
}

template <typename Op>
void Launch(const char* what, Op op, const float* x, const float* target, int64_t n,
            int64_t row_len, float* grad, double* loss_sum, void* workspace, cudaStream_t stream) {
  LS_CHECK_GE(n, 0) << what << ": n";
  LS_CHECK(loss_sum != nullptr) << what << ": null loss_sum";
  const int64_t blocks = RegressionLossBlocks(n);
  LS_CHECK(blocks == 0 || workspace != nullptr) << what << ": null workspace";
  double* partials = static_cast<double*>(workspace);
  if (blocks > 0) {
    ElementLossKernel<<<static_cast<unsigned int>(blocks), kThreadsPerBlock, 0, stream>>>(
        op, x, target, n, grad, partials);
    LS_CUDA_CHECK_LAUNCH();
  }
  SumPartialsKernel<<<1, kThreadsPerBlock, 0, stream>>>(partials, blocks, row_len, loss_sum);
  LS_CUDA_CHECK_LAUNCH();
}

}  // namespace

size_t RegressionLossWorkspaceBytes(int64_t n, int64_t /*row_len*/) {
  return static_cast<size_t>(RegressionLossBlocks(n)) * sizeof(double);
}

void MeanSquaredError(const float* pred, const float* target, int64_t n, int64_t row_len,
                      float grad_scale, float* dpred, double* loss_sum, void* workspace,
                      cudaStream_t stream) {
  LS_CHECK_GT(row_len, 0) << "MeanSquaredError: row_len";
  Launch("MeanSquaredError", MseOp{MseGradFactor(row_len, grad_scale)}, pred, target, n, row_len,
         dpred, loss_sum, workspace, stream);
}

void BinaryCrossEntropyWithLogits(const float* logits, const float* target, int64_t n,
                                  int64_t row_len, float grad_scale, float* dlogits,
                                  double* loss_sum, void* workspace, cudaStream_t stream) {
  LS_CHECK_GT(row_len, 0) << "BinaryCrossEntropyWithLogits: row_len";
  Launch("BinaryCrossEntropyWithLogits", BceOp{BceGradFactor(row_len, grad_scale)}, logits, target,
         n, row_len, dlogits, loss_sum, workspace, stream);
}

}  // namespace lockstep::kernels::cuda
