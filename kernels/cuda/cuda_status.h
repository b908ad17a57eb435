// Status-returning CUDA checks for host code that can recover from a failed call
// (probing a device, creating a communicator): the same message as LS_CUDA_CHECK
// plus file:line, rank and host, as kUnavailable. Host C++ only. Thread-safe.
#pragma once

#include <cuda_runtime.h>

#include "common/status.h"

namespace lockstep::kernels::cuda {

Status CudaStatus(const char* call, const char* file, int line, cudaError_t err);

}  // namespace lockstep::kernels::cuda

// Returns a non-OK Status from the enclosing function instead of aborting.
#define LS_CUDA_RETURN_IF_ERROR(call)                                                        \
  do {                                                                                       \
    const cudaError_t ls_cuda_err_ = (call);                                                 \
    if (ls_cuda_err_ != cudaSuccess)                                                         \
      return ::lockstep::kernels::cuda::CudaStatus(#call, __FILE__, __LINE__, ls_cuda_err_); \
  } while (0)
