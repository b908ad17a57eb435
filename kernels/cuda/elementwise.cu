// Elementwise kernels: one 64-bit grid-stride loop each. BiasBackward reduces
// columns with a (32 x 16) block per 32-column tile, in double, in a fixed order.
#include "common/check.h"
#include "kernels/cuda/activation.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/launch.cuh"

namespace lockstep::kernels::cuda {
namespace {

// ---- kernels

__global__ void BiasActivationKernel(float* y, const float* bias, int64_t rows, int64_t cols,
                                     Activation act) {  // y (rows, cols), bias (cols) or null
  const int64_t n = rows * cols;
  LS_GRID_STRIDE_LOOP(i, n) {
    const float v = bias != nullptr ? y[i] + bias[i % cols] : y[i];
    // ReLU as the CPU's std::max(v, 0.0f) here (keeps -0 and NaN, unlike ActivateOne).
    y[i] = act == Activation::kRelu ? (v < 0.0f ? 0.0f : v) : ActivateOne(act, v);
  }
}

constexpr int kTileCols = 32;
constexpr int kTileRows = 16;

// Block (kTileCols, kTileRows) at (x, y) owns columns [32 x, 32 x + 32) of row chunk y
// (rows [y chunk_rows, (y + 1) chunk_rows)): thread (tx, ty) sums the chunk's rows ty,
// ty + 16, ... of its column; the 16 partials are then added in a fixed tree. With one
// chunk it writes dbias, else the chunk's partial (partials[y cols + c]).
__global__ void BiasBackwardKernel(const float* dy, int64_t rows, int64_t cols, int64_t chunk_rows,
                                   float beta, float* dbias, double* partials) {
  __shared__ double part[kTileRows][kTileCols];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kTileCols + tx;
  const int64_t begin = static_cast<int64_t>(blockIdx.y) * chunk_rows;
  const int64_t end = begin + chunk_rows < rows ? begin + chunk_rows : rows;
  double acc = 0.0;
  if (c < cols) {
    for (int64_t r = begin + ty; r < end; r += kTileRows) acc += dy[r * cols + c];
  }
  part[ty][tx] = acc;
  __syncthreads();
  for (int half = kTileRows / 2; half > 0; half /= 2) {
    if (ty < half) part[ty][tx] += part[ty + half][tx];
    __syncthreads();
  }
  if (ty != 0 || c >= cols) return;
  if (partials != nullptr) {
    partials[static_cast<int64_t>(blockIdx.y) * cols + c] = part[0][tx];
  } else {
    const float prev = beta == 0.0f ? 0.0f : beta * dbias[c];
    dbias[c] = static_cast<float>(prev + part[0][tx]);
  }
}

// dbias[c] = beta dbias[c] + the chunks' partials of column c, added in chunk order.
__global__ void BiasBackwardSumChunksKernel(const double* partials, int64_t chunks, int64_t cols,
                                            float beta, float* dbias) {
  LS_GRID_STRIDE_LOOP(c, cols) {
    double acc = 0.0;
    for (int64_t k = 0; k < chunks; ++k) acc += partials[k * cols + c];
    const float prev = beta == 0.0f ? 0.0f : beta * dbias[c];
    dbias[c] = static_cast<float>(prev + acc);
  }
}

// Row chunks for BiasBackward: enough blocks to fill an H100/H200 (132 SMs, a few
// blocks each) when the columns alone give few, each chunk at least kMinChunkRows rows
// so the second pass stays small. A function of (rows, cols) only: repeatable.
constexpr int64_t kTargetBlocks = 512;
constexpr int64_t kMinChunkRows = 256;
constexpr int64_t kMaxChunks = 1024;

int64_t BiasBackwardChunks(int64_t rows, int64_t cols) {
  const int64_t tiles = (cols + kTileCols - 1) / kTileCols;
  const int64_t by_rows = (rows + kMinChunkRows - 1) / kMinChunkRows;
  int64_t chunks = (kTargetBlocks + tiles - 1) / tiles;
  if (chunks > by_rows) chunks = by_rows;
  if (chunks > kMaxChunks) chunks = kMaxChunks;
  return chunks < 1 ? 1 : chunks;
}

__global__ void ActivationForwardKernel(Activation act, const float* x, float* y, int64_t n) {
  LS_GRID_STRIDE_LOOP(i, n) { y[i] = ActivateOne(act, x[i]); }
}

__global__ void ActivationBackwardKernel(Activation act, const float* x, const float* y,
                                         const float* dy, float* dx, int64_t n) {
  const bool use_x = act == Activation::kGelu;
  LS_GRID_STRIDE_LOOP(i, n) {
    const float xi = use_x ? x[i] : 0.0f;
    const float yi = use_x ? 0.0f : (act == Activation::kIdentity ? 0.0f : y[i]);
    dx[i] = ActivateGrad(act, xi, yi, dy[i]);
  }
}

__global__ void ScaleKernel(float* x, int64_t n, float s) {
  LS_GRID_STRIDE_LOOP(i, n) { x[i] *= s; }
}

__global__ void AxpyKernel(float a, const float* x, float* y, int64_t n) {
  LS_GRID_STRIDE_LOOP(i, n) { y[i] += a * x[i]; }
}

}  // namespace

// ---- launchers

void BiasActivationForward(float* y, const float* bias, int64_t rows, int64_t cols, Activation act,
                           cudaStream_t stream) {
  LS_CHECK(cpu::ActivationDerivativeFromOutput(act)) << "BiasActivationForward cannot fuse GELU";
  LS_CHECK(rows >= 0 && cols >= 0) << "BiasActivationForward: rows=" << rows << " cols=" << cols;
  if (rows == 0 || cols == 0) return;
  if (bias == nullptr && act == Activation::kIdentity) return;
  BiasActivationKernel<<<GridFor(rows * cols), kThreads, 0, stream>>>(y, bias, rows, cols, act);
  LS_CUDA_CHECK_LAUNCH();
}

void BiasAdd(float* y, const float* bias, int64_t rows, int64_t cols, cudaStream_t stream) {
  LS_CHECK(bias != nullptr) << "BiasAdd: null bias";
  BiasActivationForward(y, bias, rows, cols, Activation::kIdentity, stream);
}

size_t BiasBackwardWorkspaceBytes(int64_t rows, int64_t cols) {
  const int64_t chunks = BiasBackwardChunks(rows, cols);
  return chunks > 1 ? static_cast<size_t>(chunks * cols) * sizeof(double) : 0;
}

void BiasBackward(const float* dy, int64_t rows, int64_t cols, float beta, float* dbias, void* workspace,
                  cudaStream_t stream) {
  LS_CHECK(rows >= 0 && cols >= 0) << "BiasBackward: rows=" << rows << " cols=" << cols;
  if (cols == 0) return;
  const int64_t tiles = (cols + kTileCols - 1) / kTileCols;
  LS_CHECK_LE(tiles, int64_t{0x7fffffff}) << "BiasBackward: too many columns";
  const int64_t chunks = BiasBackwardChunks(rows, cols);
  const int64_t chunk_rows = (rows + chunks - 1) / chunks;
  auto* partials = chunks > 1 ? static_cast<double*>(workspace) : nullptr;
  LS_CHECK(chunks == 1 || partials != nullptr) << "BiasBackward: no workspace for " << chunks << " row chunks";
  const dim3 grid(static_cast<unsigned int>(tiles), static_cast<unsigned int>(chunks));
  BiasBackwardKernel<<<grid, dim3(kTileCols, kTileRows), 0, stream>>>(dy, rows, cols, chunk_rows, beta, dbias,
                                                                      partials);
  LS_CUDA_CHECK_LAUNCH();
  if (chunks > 1) {
    BiasBackwardSumChunksKernel<<<GridFor(cols), kThreads, 0, stream>>>(partials, chunks, cols, beta, dbias);
    LS_CUDA_CHECK_LAUNCH();
  }
}

void ActivationForward(Activation act, const float* x, float* y, int64_t n, cudaStream_t stream) {
  LS_CHECK_GE(n, 0) << "ActivationForward";
  if (n == 0) return;
  if (act == Activation::kIdentity) {
    if (x != y) {
      LS_CUDA_CHECK(cudaMemcpyAsync(y, x, n * sizeof(float), cudaMemcpyDeviceToDevice, stream));
    }
    return;
  }
  ActivationForwardKernel<<<GridFor(n), kThreads, 0, stream>>>(act, x, y, n);
  LS_CUDA_CHECK_LAUNCH();
}

void ActivationBackward(Activation act, const float* x, const float* y, const float* dy, float* dx,
                        int64_t n, cudaStream_t stream) {
  LS_CHECK_GE(n, 0) << "ActivationBackward";
  if (n == 0) return;
  if (act == Activation::kIdentity) {
    if (dx != dy) {
      LS_CUDA_CHECK(cudaMemcpyAsync(dx, dy, n * sizeof(float), cudaMemcpyDeviceToDevice, stream));
    }
    return;
  }
  ActivationBackwardKernel<<<GridFor(n), kThreads, 0, stream>>>(act, x, y, dy, dx, n);
  LS_CUDA_CHECK_LAUNCH();
}

void Scale(float* x, int64_t n, float s, cudaStream_t stream) {
  LS_CHECK_GE(n, 0) << "Scale";
  if (n == 0) return;
  ScaleKernel<<<GridFor(n), kThreads, 0, stream>>>(x, n, s);
  LS_CUDA_CHECK_LAUNCH();
}

void Axpy(float a, const float* x, float* y, int64_t n, cudaStream_t stream) {
  LS_CHECK_GE(n, 0) << "Axpy";
  if (n == 0) return;
  AxpyKernel<<<GridFor(n), kThreads, 0, stream>>>(a, x, y, n);
  LS_CUDA_CHECK_LAUNCH();
}

}  // namespace lockstep::kernels::cuda
