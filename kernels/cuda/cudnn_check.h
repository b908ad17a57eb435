// LS_CUDNN_CHECK: the cuDNN member of the check-macro family of cuda_check.h. A failed
// call aborts with the call's text, file:line, rank and host, cuDNN's status string
// and its last error message (when it left one), and the current device, e.g.
//   [rank 3/8 on gpu-a] FATAL kernels/cuda/cudnn_conv.cc:210: check failed: cuDNN
//   cudnnConvolutionForward(...) failed: CUDNN_STATUS_BAD_PARAM (...) on device 0
//   (NVIDIA H100 80GB HBM3, PCI 0000:19:00.0)
// Only built with cuDNN (LOCKSTEP_HAVE_CUDNN). Thread-safe.
#pragma once

#include <cudnn.h>

#include <string>

namespace lockstep::kernels::cuda {

// The whole diagnostic for a failed call (without the "[rank ...] FATAL" prefix).
std::string CudnnErrorMessage(const char* call, cudnnStatus_t status);

// Abort with file:line, rank and host (through LS_CHECK's failure path).
[[noreturn]] void CudnnFatal(const char* call, const char* file, int line, cudnnStatus_t status);

}  // namespace lockstep::kernels::cuda

#define LS_CUDNN_CHECK(call)                                                          \
  do {                                                                                \
    const cudnnStatus_t ls_cudnn_st_ = (call);                                        \
    if (ls_cudnn_st_ != CUDNN_STATUS_SUCCESS)                                         \
      ::lockstep::kernels::cuda::CudnnFatal(#call, __FILE__, __LINE__, ls_cudnn_st_); \
  } while (0)
