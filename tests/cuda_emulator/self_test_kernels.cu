// Kernels for emulator_self_test.cc (see self_test_kernels.h). Written as CUDA and
// rewritten by cu_to_cc.py like kernels/cuda's files, so the rewriting is tested too.
#include "tests/cuda_emulator/self_test_kernels.h"

namespace lsemu::self_test {
namespace {

__global__ void ShiftKernel(int* out, bool synced) {
  __shared__ int values[1024];
  const int t = threadIdx.x;
  values[t] = t;
  if (synced) __syncthreads();
  out[t] = values[(t + 1) % blockDim.x];
}

__global__ void AddKernel(const int* in, int* out, int n, int value) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) out[i] = (in != nullptr ? in[i] : 0) + value;
}

__global__ void ReadBeforeWriteKernel(int* out) {
  __shared__ int value;
  out[blockIdx.x] = value;
  value = 42;
}

__global__ void LinearIdKernel(int* out) {
  const unsigned int block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned int thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const unsigned int id = block * (blockDim.x * blockDim.y * blockDim.z) + thread;
  out[id] = static_cast<int>(id) + 1;
}

__global__ void ShuffleKernel(const double* in, double* out, int src_lane, int width) {
  const int t = threadIdx.x;
  out[t] = __shfl_sync(0xffffffffu, in[t], src_lane, width);
}

__global__ void DivergentKernel(int* out) {
  int v = threadIdx.x;
  if (threadIdx.x == 0) __syncthreads();
  v = __shfl_sync(0xffffffffu, v, 0);
  out[threadIdx.x] = v;
}

__global__ void WriteOnePastKernel(float* out, int n) {
  if (threadIdx.x == 0) out[n] = 1.0f;
}

__global__ void EmptyKernel() {
  extern __shared__ float unused[];
  (void)unused;
}

__global__ void CrossWarpKernel(int* out) {
  __shared__ int slots[64];
  const int t = threadIdx.x;
  slots[t] = t;
  __syncwarp();
  out[t] = slots[t ^ 32];
}

__global__ void PartialWarpKernel(int* out) {
  const int lane = threadIdx.x;
  if (lane >= 16) return;
  __syncwarp();
  out[lane] = lane;
}

__global__ void __launch_bounds__(64) BoundedKernel() {}

__global__ void TreeSumKernel(const int* in, int n, int* out) {
  __shared__ int partial[256];
  int acc = 0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) acc += in[i];
  partial[threadIdx.x] = acc;
  __syncthreads();
  for (int half = blockDim.x / 2; half > 0; half /= 2) {
    if (static_cast<int>(threadIdx.x) < half) partial[threadIdx.x] += partial[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = partial[0];
}

}  // namespace

void ShiftThroughShared(int* out, int threads, bool synced) {
  ShiftKernel<<<1, threads>>>(out, synced);
}
void ReadSharedBeforeWrite(int* out, int blocks) { ReadBeforeWriteKernel<<<blocks, 1>>>(out); }
void WriteLinearIds(int* out, dim3 grid, dim3 block) { LinearIdKernel<<<grid, block>>>(out); }
void Shuffle(const double* in, double* out, int threads, int src_lane, int width) {
  ShuffleKernel<<<1, threads, 0, nullptr>>>(in, out, src_lane, width);
}
void DivergentBarrier(int* out) { DivergentKernel<<<1, 32>>>(out); }
void WriteOnePast(float* out, int n) { WriteOnePastKernel<<<1, 32>>>(out, n); }
void LaunchEmpty(int threads, size_t shared_bytes) {
  EmptyKernel<<<1, threads, shared_bytes>>>();
}
void CrossWarpExchangeWithSyncwarp(int* out) { CrossWarpKernel<<<1, 64>>>(out); }
void SyncwarpAfterSomeLanesExit(int* out) { PartialWarpKernel<<<1, 32>>>(out); }
void LaunchBounded(int threads) { BoundedKernel<<<1, threads>>>(); }
void BlockTreeSum(const int* in, int n, int* out) { TreeSumKernel<<<1, 256>>>(in, n, out); }
void AddOnStream(const int* in, int* out, int n, int value, cudaStream_t stream) {
  AddKernel<<<(n + 127) / 128, 128, 0, stream>>>(in, out, n, value);
}

}  // namespace lsemu::self_test
