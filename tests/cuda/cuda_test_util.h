// Helpers for the CUDA-vs-CPU kernel tests: the device gate (skip with the reason,
// or fail under LOCKSTEP_REQUIRE_CUDA=1), a fixture owning a stream, RAII device
// buffers that start poisoned (all bytes 0xFF: NaN floats), and comparisons that
// report the first mismatch. One thread per test.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/gemm.h"

namespace lockstep::kernels::cuda::testing {

// Empty when a CUDA device is usable, else why not (cudaGetDeviceCount's error).
const std::string& NoDeviceReason();
// LOCKSTEP_REQUIRE_CUDA=1 in the environment: a missing device is a failure.
bool CudaRequired();

// SetUp skips (or fails) without a device, else selects device 0 and makes a stream;
// TearDown synchronises it and checks for asynchronous errors.
class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;
  // Waits for the stream; a kernel fault fails the test here, naming the kernel's test.
  void Sync();

  cudaStream_t stream_ = nullptr;
};

// CudaTest plus a cuBLASLt handle and workspace, for the GEMM-based kernels.
class CudaLtTest : public CudaTest {
 protected:
  void SetUp() override {
    CudaTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    lt_ = std::make_unique<CublasLt>();
  }
  void TearDown() override {
    lt_.reset();
    CudaTest::TearDown();
  }

  std::unique_ptr<CublasLt> lt_;
};

template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(int64_t n) : n_(n) {
    if (n_ > 0) {
      LS_CUDA_CHECK(cudaMalloc(&ptr_, bytes()));
      LS_CUDA_CHECK(cudaMemset(ptr_, 0xFF, bytes()));
      // cudaMemset runs on the legacy default stream, which the fixture's non-blocking
      // stream does not wait for: finish it before a kernel can write the buffer.
      LS_CUDA_CHECK(cudaDeviceSynchronize());
    }
  }
  explicit DeviceBuffer(const std::vector<T>& host)
      : DeviceBuffer(static_cast<int64_t>(host.size())) {
    Upload(host);
  }
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* get() { return ptr_; }
  const T* get() const { return ptr_; }
  int64_t size() const { return n_; }
  size_t bytes() const { return static_cast<size_t>(n_) * sizeof(T); }

  void Upload(const std::vector<T>& host) {
    EXPECT_EQ(static_cast<int64_t>(host.size()), n_);
    if (n_ > 0) {
      // The copy runs on the legacy default stream, which does not wait for the
      // fixture's non-blocking stream: work queued there may still read the old
      // contents (a loop that uploads each step's input), so let it finish first.
      LS_CUDA_CHECK(cudaDeviceSynchronize());
      LS_CUDA_CHECK(cudaMemcpy(ptr_, host.data(), bytes(), cudaMemcpyHostToDevice));
      // A pageable-memory cudaMemcpy may return before its DMA lands; the kernels run
      // on a non-blocking stream that would not wait for it.
      LS_CUDA_CHECK(cudaDeviceSynchronize());
    }
  }
  // Synchronous copy back after all prior work on the device. The fixture's stream is
  // non-blocking, so a plain cudaMemcpy (legacy default stream) would not wait for it:
  // synchronise the device first.
  std::vector<T> Download() const {
    std::vector<T> host(static_cast<size_t>(n_));
    LS_CUDA_CHECK(cudaDeviceSynchronize());
    if (n_ > 0) LS_CUDA_CHECK(cudaMemcpy(host.data(), ptr_, bytes(), cudaMemcpyDeviceToHost));
    return host;
  }

 private:
  T* ptr_ = nullptr;
  int64_t n_ = 0;
};

// Distance in units in the last place between two finite floats (0 when equal,
// huge when either is NaN or the signs differ by more than zero).
int64_t UlpDistance(float a, float b);

// Every element: |got - want| <= abs_tol + rel_tol * |want|; both NaN counts as equal.
// On failure reports the count and the first few mismatches (index, got, want).
::testing::AssertionResult AllClose(const std::vector<float>& got, const std::vector<float>& want,
                                    double abs_tol, double rel_tol);
// Elementwise bitwise equality of floats (NaN patterns included).
::testing::AssertionResult BitwiseEqual(const std::vector<float>& got,
                                        const std::vector<float>& want);
// Every element within max_ulps; *worst (if non-null) receives the largest distance seen.
::testing::AssertionResult WithinUlps(const std::vector<float>& got, const std::vector<float>& want,
                                      int64_t max_ulps, int64_t* worst = nullptr);

}  // namespace lockstep::kernels::cuda::testing
