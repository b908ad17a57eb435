// One family of check macros for CUDA runtime and cuBLASLt calls. A failure
// aborts with the call's text, file:line, rank and host, the current device and
// the library's error string, e.g.
//   [rank 3/8 on gpu-a] FATAL kernels/cuda/pool.cu:71: check failed: CUDA
//   cudaGetLastError() failed: cudaErrorIllegalAddress (an illegal memory access was
//   encountered) on device 0 (NVIDIA H100 80GB HBM3, PCI 0000:19:00.0)
// cuda_status.h has Status-returning variants for callers that can recover. Thread-safe.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <string>

namespace lockstep::kernels::cuda {

// "device 0 (NVIDIA H100 80GB HBM3, PCI 0000:19:00.0)", or why no device is known.
// Never fails (a failing query is described instead).
std::string CurrentDeviceDescription();

// The whole diagnostic for a failed call (without the "[rank ...] FATAL" prefix).
std::string CudaErrorMessage(const char* call, cudaError_t err);
std::string CublasErrorMessage(const char* call, cublasStatus_t status);

// Abort with file:line, rank and host (through LS_CHECK's failure path).
[[noreturn]] void CudaFatal(const char* call, const char* file, int line, cudaError_t err);
[[noreturn]] void CublasFatal(const char* call, const char* file, int line, cublasStatus_t status);

}  // namespace lockstep::kernels::cuda

#define LS_CUDA_CHECK(call)                                                          \
  do {                                                                               \
    const cudaError_t ls_cuda_err_ = (call);                                         \
    if (ls_cuda_err_ != cudaSuccess)                                                 \
      ::lockstep::kernels::cuda::CudaFatal(#call, __FILE__, __LINE__, ls_cuda_err_); \
  } while (0)

// After every kernel launch: launch-configuration errors surface here, at the
// launcher that caused them (asynchronous faults surface at the next sync).
#define LS_CUDA_CHECK_LAUNCH() LS_CUDA_CHECK(cudaGetLastError())

#define LS_CUBLAS_CHECK(call)                                                           \
  do {                                                                                  \
    const cublasStatus_t ls_cublas_st_ = (call);                                        \
    if (ls_cublas_st_ != CUBLAS_STATUS_SUCCESS)                                         \
      ::lockstep::kernels::cuda::CublasFatal(#call, __FILE__, __LINE__, ls_cublas_st_); \
  } while (0)
