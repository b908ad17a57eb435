#include "kernels/cuda/device.h"

#include <cuda_runtime.h>

namespace lockstep::kernels::cuda {

int UsableDeviceCount(std::string* reason) {
  int count = 0;  // left untouched by cudaGetDeviceCount on failure
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // do not leave the error for an unrelated later check
    if (reason != nullptr) {
      *reason = std::string("cudaGetDeviceCount: ") + cudaGetErrorName(err) + " (" +
                cudaGetErrorString(err) + ")";
    }
    return 0;
  }
  if (count <= 0) {
    if (reason != nullptr) *reason = "cudaGetDeviceCount: the driver reports 0 devices";
    return 0;
  }
  return count;
}

}  // namespace lockstep::kernels::cuda
