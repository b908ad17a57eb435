// Diagnostics for failed CUDA / cuBLASLt calls. The device description queries
// the runtime again, so every query here tolerates failure (a sticky error or a
// missing driver must not hide the original message).
#include "kernels/cuda/cuda_check.h"

#include "common/check.h"
#include "common/process_identity.h"
#include "kernels/cuda/cuda_status.h"

namespace lockstep::kernels::cuda {
namespace {

std::string ErrorText(cudaError_t err) {
  return std::string(cudaGetErrorName(err)) + " (" + cudaGetErrorString(err) + ")";
}

}  // namespace

std::string CurrentDeviceDescription() {
  int device = -1;
  const cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return "no current device (cudaGetDevice: " + ErrorText(err) + ")";
  std::string text = "device " + std::to_string(device);
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, device) == cudaSuccess) {
    text += std::string(" (") + prop.name;
    char bus[32] = {0};
    if (cudaDeviceGetPCIBusId(bus, sizeof(bus), device) == cudaSuccess) {
      text += std::string(", PCI ") + bus;
    }
    text += ")";
  }
  return text;
}

std::string CudaErrorMessage(const char* call, cudaError_t err) {
  return std::string(call) + " failed: " + ErrorText(err) + " on " + CurrentDeviceDescription();
}

std::string CublasErrorMessage(const char* call, cublasStatus_t status) {
  return std::string(call) + " failed: " + cublasLtGetStatusName(status) + " (" +
         cublasLtGetStatusString(status) + ") on " + CurrentDeviceDescription();
}

// CheckFailure prints "[rank r/n on host] FATAL file:line: check failed: " and aborts
// when the temporary dies at the end of the statement.
void CudaFatal(const char* call, const char* file, int line, cudaError_t err) {
  ::lockstep::internal::CheckFailure(file, line, "CUDA").stream() << CudaErrorMessage(call, err);
  __builtin_unreachable();
}

void CublasFatal(const char* call, const char* file, int line, cublasStatus_t status) {
  ::lockstep::internal::CheckFailure(file, line, "cuBLAS").stream()
      << CublasErrorMessage(call, status);
  __builtin_unreachable();
}

Status CudaStatus(const char* call, const char* file, int line, cudaError_t err) {
  return UnavailableError(std::string(file) + ":" + std::to_string(line) + ": [" +
                          ProcessDescription() + "] " + CudaErrorMessage(call, err));
}

}  // namespace lockstep::kernels::cuda
