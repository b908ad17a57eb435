// The emulator's own rules, one kernel each (self_test_kernels.cu): that races show as
// a dependence on LOCKSTEP_EMU_ORDER, shared memory is per block and starts as garbage,
// barriers and shuffles follow CUDA, divergence and out-of-bounds writes are reported,
// and launches over the device limits are refused. Runs in both orders like the rest.
#include <gtest/gtest.h>

#include <cstdlib>
#include <numeric>
#include <string>
#include <vector>

#include <cublasLt.h>

#include "tests/cuda_emulator/self_test_kernels.h"

namespace lsemu::self_test {
namespace {

bool Reverse() {
  const char* v = std::getenv("LOCKSTEP_EMU_ORDER");
  return v != nullptr && std::string(v) == "reverse";
}

template <typename T>
struct Buffer {
  explicit Buffer(size_t n) : n(n) {
    EXPECT_EQ(cudaMalloc(&ptr, n * sizeof(T)), cudaSuccess);
    EXPECT_EQ(cudaMemset(ptr, 0, n * sizeof(T)), cudaSuccess);
  }
  ~Buffer() { cudaFree(ptr); }
  std::vector<T> Download() const {
    std::vector<T> host(n);
    EXPECT_EQ(cudaMemcpy(host.data(), ptr, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return host;
  }
  void Upload(const std::vector<T>& host) {
    EXPECT_EQ(cudaMemcpy(ptr, host.data(), n * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  size_t n;
  T* ptr = nullptr;
};

constexpr int kUninitialisedShared = -1;  // 0xFFFFFFFF

TEST(EmulatorSelfTest, ARaceDependsOnTheOrder) {
  constexpr int kThreads = 64;
  Buffer<int> out(kThreads);
  ShiftThroughShared(out.ptr, kThreads, /*synced=*/false);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  const std::vector<int> got = out.Download();
  // Forward: thread t reads slot t + 1 before thread t + 1 wrote it. Reverse: after.
  for (int t = 0; t + 1 < kThreads; ++t) {
    EXPECT_EQ(got[t], Reverse() ? t + 1 : kUninitialisedShared) << "thread " << t;
  }
  EXPECT_EQ(got[kThreads - 1], Reverse() ? kUninitialisedShared : 0);
}

TEST(EmulatorSelfTest, ABarrierRemovesTheRace) {
  for (int threads : {1, 31, 64, 1024}) {
    Buffer<int> out(static_cast<size_t>(threads));
    ShiftThroughShared(out.ptr, threads, /*synced=*/true);
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
    const std::vector<int> got = out.Download();
    for (int t = 0; t < threads; ++t) ASSERT_EQ(got[t], (t + 1) % threads) << threads;
  }
}

TEST(EmulatorSelfTest, SharedMemoryIsPerBlockAndStartsAsGarbage) {
  Buffer<int> out(5);
  ReadSharedBeforeWrite(out.ptr, 5);
  for (int v : out.Download()) EXPECT_EQ(v, kUninitialisedShared);
}

TEST(EmulatorSelfTest, EveryThreadOfA3dGridRunsOnceWithItsCoordinates) {
  const dim3 grid(3, 2, 2), block(5, 4, 3);
  const size_t total = 3 * 2 * 2 * 5 * 4 * 3;
  Buffer<int> out(total);
  WriteLinearIds(out.ptr, grid, block);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  std::vector<int> want(total);
  std::iota(want.begin(), want.end(), 1);
  EXPECT_EQ(out.Download(), want);
}

TEST(EmulatorSelfTest, ShuffleReadsTheSourceLaneOfItsSegment) {
  constexpr int kThreads = 64;
  std::vector<double> in(kThreads);
  for (int t = 0; t < kThreads; ++t) in[t] = 0.5 + t;
  Buffer<double> d_in(kThreads), d_out(kThreads);
  d_in.Upload(in);
  for (int width : {32, 8, 1}) {
    for (int src : {0, 3, 9}) {
      Shuffle(d_in.ptr, d_out.ptr, kThreads, src, width);
      const std::vector<double> got = d_out.Download();
      for (int t = 0; t < kThreads; ++t) {
        const int source = t / 32 * 32 + (t % 32) / width * width + src % width;
        ASSERT_EQ(got[t], in[source]) << "t=" << t << " width=" << width << " src=" << src;
      }
    }
  }
}

TEST(EmulatorSelfTest, ABlockTreeReductionIsExact) {
  for (int n : {1, 255, 256, 1000, 4097}) {
    std::vector<int> in(static_cast<size_t>(n));
    std::iota(in.begin(), in.end(), -17);
    Buffer<int> d_in(in.size()), d_out(1);
    d_in.Upload(in);
    BlockTreeSum(d_in.ptr, n, d_out.ptr);
    EXPECT_EQ(d_out.Download()[0], std::accumulate(in.begin(), in.end(), 0)) << n;
  }
}

TEST(EmulatorSelfTest, AWarpSyncDoesNotOrderOtherWarps) {
  Buffer<int> out(64);
  CrossWarpExchangeWithSyncwarp(out.ptr);
  const std::vector<int> got = out.Download();
  // The first warp to run reads the other's slots before they are written.
  for (int t = 0; t < 64; ++t) {
    const bool runs_first = Reverse() ? t >= 32 : t < 32;
    EXPECT_EQ(got[t], runs_first ? kUninitialisedShared : (t ^ 32)) << "thread " << t;
  }
}

TEST(EmulatorSelfTest, ExitedLanesCountAsArrivedAtAWarpSync) {
  Buffer<int> out(16);
  SyncwarpAfterSomeLanesExit(out.ptr);
  std::vector<int> want(16);
  std::iota(want.begin(), want.end(), 0);
  EXPECT_EQ(out.Download(), want);
}

TEST(EmulatorSelfTest, HostMemoryIsNotDeviceMemory) {
  std::vector<float> host(4, 1.0f);
  Buffer<float> device(4);
  EXPECT_EQ(cudaMemcpy(device.ptr, host.data(), 16, cudaMemcpyHostToDevice), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(host.data(), device.ptr, 16, cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemset(host.data(), 0, 16), cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  void* fresh = nullptr;
  ASSERT_EQ(cudaMalloc(&fresh, 8), cudaSuccess);
  uint64_t bits = 0;
  ASSERT_EQ(cudaMemcpy(&bits, fresh, 8, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(bits, ~uint64_t{0}) << "fresh device memory is garbage (0xFF), not zeros";
  cudaFree(fresh);
}

TEST(EmulatorSelfTest, LaunchesOverTheDeviceLimitsAreRefused) {
  setenv("LOCKSTEP_EMU_QUIET", "1", 1);
  LaunchEmpty(1024, 48 * 1024);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  LaunchEmpty(1025, 0);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess) << "the error is read once";
  LaunchEmpty(32, 48 * 1024 + 1);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  LaunchBounded(64);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  LaunchBounded(65);
  EXPECT_EQ(cudaGetLastError(), cudaErrorLaunchOutOfResources) << "above __launch_bounds__(64)";
  unsetenv("LOCKSTEP_EMU_QUIET");
}

// The emulated cuBLASLt against its documented definition on a hand-computed example:
// column-major, D(m x n) = op(A) op(B) (+ bias over the rows of D), so that gemm.cc's
// row-major mapping is checked against something it did not write.
struct LtProblem {
  cublasLtHandle_t handle = nullptr;
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  cublasLtMatmulHeuristicResult_t heuristic{};
  LtProblem(bool trans_a, cublasLtEpilogue_t epilogue, const float* bias) {
    EXPECT_EQ(cublasLtCreate(&handle), CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F), CUBLAS_STATUS_SUCCESS);
    const int32_t ta = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    EXPECT_EQ(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)),
              CUBLAS_STATUS_SUCCESS);
    const uint32_t ep = epilogue;
    EXPECT_EQ(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof(ep)),
              CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)),
              CUBLAS_STATUS_SUCCESS);
    // A is 2x3 (stored 3x2 when transposed), B 3x2, D 2x2.
    EXPECT_EQ(cublasLtMatrixLayoutCreate(&a, CUDA_R_32F, trans_a ? 3 : 2, trans_a ? 2 : 3, trans_a ? 3 : 2),
              CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(cublasLtMatrixLayoutCreate(&b, CUDA_R_32F, 3, 2, 3), CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(cublasLtMatrixLayoutCreate(&d, CUDA_R_32F, 2, 2, 2), CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(cublasLtMatmulPreferenceCreate(&pref), CUBLAS_STATUS_SUCCESS);
    int found = 0;
    EXPECT_EQ(cublasLtMatmulAlgoGetHeuristic(handle, op, a, b, d, d, pref, 1, &heuristic, &found),
              CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(found, 1);
  }
  ~LtProblem() {
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(d);
    cublasLtMatrixLayoutDestroy(b);
    cublasLtMatrixLayoutDestroy(a);
    cublasLtMatmulDescDestroy(op);
    cublasLtDestroy(handle);
  }
  cublasStatus_t Run(const float* a_ptr, const float* b_ptr, float* d_ptr) {
    const float alpha = 1.0f, beta = 0.0f;
    return cublasLtMatmul(handle, op, &alpha, a_ptr, a, b_ptr, b, &beta, d_ptr, d, d_ptr, d,
                          &heuristic.algo, nullptr, 0, nullptr);
  }
};

TEST(EmulatorSelfTest, CublasLtIsColumnMajorWithBiasOverRows) {
  // A = [1 2 3; 4 5 6], B = [7 8; 9 10; 11 12], A B = [58 64; 139 154].
  Buffer<float> a(6), a_t(6), b(6), d(4), bias(2);
  a.Upload({1, 4, 2, 5, 3, 6});    // column-major 2x3
  a_t.Upload({1, 2, 3, 4, 5, 6});  // A^T (3x2), column-major
  b.Upload({7, 9, 11, 8, 10, 12});
  bias.Upload({100, 200});
  {
    LtProblem p(false, CUBLASLT_EPILOGUE_DEFAULT, nullptr);
    ASSERT_EQ(p.Run(a.ptr, b.ptr, d.ptr), CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(d.Download(), (std::vector<float>{58, 139, 64, 154}));
  }
  {
    LtProblem p(true, CUBLASLT_EPILOGUE_BIAS, bias.ptr);
    ASSERT_EQ(p.Run(a_t.ptr, b.ptr, d.ptr), CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(d.Download(), (std::vector<float>{158, 339, 164, 354}));
  }
  {
    // The default preferences promise 256-byte aligned matrices.
    LtProblem p(false, CUBLASLT_EPILOGUE_DEFAULT, nullptr);
    Buffer<float> wide(8);
    EXPECT_EQ(p.Run(wide.ptr + 1, b.ptr, d.ptr), CUBLAS_STATUS_INVALID_VALUE);
  }
}

using EmulatorDeathTest = ::testing::Test;

TEST(EmulatorDeathTest, BarrierDivergenceIsReported) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Buffer<int> out(32);
  EXPECT_DEATH((DivergentBarrier(out.ptr), cudaDeviceSynchronize()),
               "DivergentKernel block \\(0,0,0\\).*barrier divergence(.|\n)*threads 0-0 at "
               "__syncthreads(.|\n)*threads 1-31 at a warp sync");
}

TEST(EmulatorDeathTest, AHostPointerAsAKernelArgumentIsReported) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  std::vector<int> host(64);
  EXPECT_DEATH(ShiftThroughShared(host.data(), 64, true),
               "kernel ShiftKernel: argument 0 .* points to host memory");
}

TEST(EmulatorDeathTest, AWritePastADeviceBufferIsReported) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Buffer<float> out(10);
  EXPECT_DEATH((WriteOnePast(out.ptr, 10), cudaDeviceSynchronize()), "heap-buffer-overflow");
}

TEST(EmulatorDeathTest, WorkNobodyWaitedForStillRunsByTheExit) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Buffer<float> out(10);
  EXPECT_DEATH((WriteOnePast(out.ptr, 10), std::exit(0)), "heap-buffer-overflow");
}

}  // namespace
}  // namespace lsemu::self_test
