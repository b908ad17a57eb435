// Layer norm kernels. Row work (forward, dx): a group of kLnLanes = 8 consecutive
// threads per row, 32 rows per 256-thread block; lane j runs the CPU's partial sum j
// over columns j, j + 8, ... and the group exchanges its eight partials with width-8
// shuffles, so every lane holds the CPU's combined sum. A group's 8 lanes read 8
// consecutive floats per step (one 32-byte sector). Column sums (dgamma, dbeta): pass
// 1 has one thread per (column, row chunk) adding its chunk's rows in order into a
// double partial in the workspace; pass 2 one thread per column adding the chunks in
// order. Layout of the workspace: partial_dgamma (chunks, cols) then partial_dbeta
// (chunks, cols), doubles.
#include <cstdint>

#include "common/check.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/layer_norm.h"
#include "kernels/cuda/layer_norm_order.h"

namespace lockstep::kernels::cuda {
namespace {

constexpr int kRowThreads = 256;
constexpr int kRowsPerBlock = kRowThreads / kLnLanes;
constexpr int kColumnThreads = 256;

// The CPU's Combine of the eight partials held by this thread's group of 8 lanes.
// Every lane of the warp must call it (full-mask shuffles).
__device__ __forceinline__ double GroupCombine(double mine) {
  double p[kLnLanes];
#pragma unroll
  for (int k = 0; k < kLnLanes; ++k) p[k] = __shfl_sync(0xffffffffu, mine, k, kLnLanes);
  return LnCombine(p);
}

// The row loop is uniform across the block (row0), so whole warps run the shuffles;
// a group past the last row contributes zeros and writes nothing.
__global__ void __launch_bounds__(kRowThreads)
    LayerNormForwardKernel(const float* x, const float* gamma, const float* beta, int64_t rows,
                           int64_t cols, float eps, float* y, float* mean, float* rstd) {
  const int lane = threadIdx.x % kLnLanes;
  for (int64_t row0 = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock; row0 < rows;
       row0 += static_cast<int64_t>(gridDim.x) * kRowsPerBlock) {
    const int64_t r = row0 + threadIdx.x / kLnLanes;
    const bool active = r < rows;
    const float* xr = x + (active ? r : 0) * cols;
    const double mu = GroupCombine(active ? LnLaneSum(xr, cols, lane) : 0.0) /
                      static_cast<double>(cols);
    const double sq = GroupCombine(active ? LnLaneSquaredDeviation(xr, cols, lane, mu) : 0.0);
    if (active) {
      const float rs = LnRstd(sq, cols, eps);
      const float m = static_cast<float>(mu);
      if (lane == 0) {
        mean[r] = m;
        rstd[r] = rs;
      }
      float* yr = y + r * cols;
      for (int64_t c = lane; c < cols; c += kLnLanes) yr[c] = LnY(xr[c], m, rs, gamma[c], beta[c]);
    }
  }
}

__global__ void __launch_bounds__(kRowThreads)
    LayerNormDxKernel(const float* x, const float* gamma, const float* mean, const float* rstd,
                      const float* dy, int64_t rows, int64_t cols, float* dx) {
  const int lane = threadIdx.x % kLnLanes;
  for (int64_t row0 = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock; row0 < rows;
       row0 += static_cast<int64_t>(gridDim.x) * kRowsPerBlock) {
    const int64_t r = row0 + threadIdx.x / kLnLanes;
    const bool active = r < rows;
    const float* xr = x + (active ? r : 0) * cols;
    const float* gr = dy + (active ? r : 0) * cols;
    const float m = active ? mean[r] : 0.0f, rs = active ? rstd[r] : 0.0f;
    double sa = 0.0, sab = 0.0;
    if (active) LnLaneDots(xr, gr, gamma, m, rs, cols, lane, &sa, &sab);
    const double sum_dxhat = GroupCombine(sa);
    const double sum_dxhat_xhat = GroupCombine(sab);
    if (active) {
      const float a = static_cast<float>(sum_dxhat / static_cast<double>(cols));
      const float b = static_cast<float>(sum_dxhat_xhat / static_cast<double>(cols));
      float* dr = dx + r * cols;
      for (int64_t c = lane; c < cols; c += kLnLanes) {
        dr[c] = LnDx(rs, LnDxhat(gr[c], gamma[c]), a, LnXhat(xr[c], m, rs), b);
      }
    }
  }
}

// Grid (column blocks, chunks): chunk blockIdx.y's rows, in order, for one column.
__global__ void __launch_bounds__(kColumnThreads)
    ParamGradPartialKernel(const float* x, const float* mean, const float* rstd, const float* dy,
                           int64_t rows, int64_t cols, double* partial_dgamma,
                           double* partial_dbeta) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kColumnThreads + threadIdx.x;
  if (c >= cols) return;
  const int64_t k = blockIdx.y;
  double dg = 0.0, db = 0.0;
  LnChunkColumnSums(x, mean, rstd, dy, rows, cols, k, c, &dg, &db);
  partial_dgamma[k * cols + c] = dg;
  partial_dbeta[k * cols + c] = db;
}

__global__ void ParamGradFinalKernel(const double* partial_dgamma, const double* partial_dbeta,
                                     int64_t chunks, int64_t cols, float grad_beta,
                                     float* dgamma, float* dbeta) {
  LS_GRID_STRIDE_LOOP(c, cols) {
    const double dg = LnSumChunks(partial_dgamma, chunks, cols, c);
    const double db = LnSumChunks(partial_dbeta, chunks, cols, c);
    dgamma[c] = LnParamGrad(grad_beta, dgamma[c], dg);
    dbeta[c] = LnParamGrad(grad_beta, dbeta[c], db);
  }
}

void CheckShape(int64_t rows, int64_t cols, const char* what) {
  LS_CHECK(rows >= 0 && cols >= 1) << what << ": bad shape rows=" << rows << " cols=" << cols;
}

}  // namespace

void LayerNormForward(const float* x, const float* gamma, const float* beta, int64_t rows,
                      int64_t cols, float eps, float* y, float* mean, float* rstd,
                      cudaStream_t stream) {
  CheckShape(rows, cols, "LayerNormForward");
  if (rows == 0) return;
  LayerNormForwardKernel<<<GridFor(rows, kRowsPerBlock), kRowThreads, 0, stream>>>(
      x, gamma, beta, rows, cols, eps, y, mean, rstd);
  LS_CUDA_CHECK_LAUNCH();
}

size_t LayerNormBackwardWorkspaceBytes(int64_t rows, int64_t cols) {
  CheckShape(rows, cols, "LayerNormBackwardWorkspaceBytes");
  return 2 * sizeof(double) * static_cast<size_t>(LnChunkCount(rows) * cols);
}

void LayerNormBackward(const float* x, const float* gamma, const float* mean, const float* rstd,
                       const float* dy, int64_t rows, int64_t cols, float grad_beta, float* dx,
                       float* dgamma, float* dbeta, void* workspace, cudaStream_t stream) {
  CheckShape(rows, cols, "LayerNormBackward");
  LS_CHECK(dgamma != nullptr && dbeta != nullptr) << "LayerNormBackward: null dgamma or dbeta";
  const int64_t chunks = LnChunkCount(rows);
  LS_CHECK(chunks == 0 ||
           (workspace != nullptr && reinterpret_cast<uintptr_t>(workspace) % sizeof(double) == 0))
      << "LayerNormBackward: workspace null or not aligned for doubles";
  double* partial_dgamma = static_cast<double*>(workspace);
  double* partial_dbeta = chunks == 0 ? nullptr : partial_dgamma + chunks * cols;
  if (rows > 0 && dx != nullptr) {
    LayerNormDxKernel<<<GridFor(rows, kRowsPerBlock), kRowThreads, 0, stream>>>(
        x, gamma, mean, rstd, dy, rows, cols, dx);
    LS_CUDA_CHECK_LAUNCH();
  }
  if (chunks > 0) {
    const dim3 grid(static_cast<unsigned int>((cols + kColumnThreads - 1) / kColumnThreads),
                    static_cast<unsigned int>(chunks));
    ParamGradPartialKernel<<<grid, kColumnThreads, 0, stream>>>(x, mean, rstd, dy, rows, cols,
                                                                partial_dgamma, partial_dbeta);
    LS_CUDA_CHECK_LAUNCH();
  }
  ParamGradFinalKernel<<<GridFor(cols), kThreads, 0, stream>>>(partial_dgamma, partial_dbeta,
                                                               chunks, cols, grad_beta, dgamma,
                                                               dbeta);
  LS_CUDA_CHECK_LAUNCH();
}

}  // namespace lockstep::kernels::cuda
