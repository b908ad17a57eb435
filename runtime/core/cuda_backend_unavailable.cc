// CreateCudaBackend in a build without CUDA (LOCKSTEP_WITH_CUDA=OFF or no nvcc).
#include "runtime/core/cuda_backend.h"

namespace lockstep {
namespace {
constexpr const char* kNoCuda =
    "this lockstep was built without the CUDA backend (LOCKSTEP_WITH_CUDA=OFF, or no nvcc "
    "found at configure time)";
}  // namespace

bool CudaBackendAvailable(std::string* why_not) {
  if (why_not != nullptr) *why_not = kNoCuda;
  return false;
}

Result<std::unique_ptr<Backend>> CreateCudaBackend(const CudaBackendOptions& /*options*/) {
  return UnavailableError(kNoCuda);
}

}  // namespace lockstep
