// Diagnostics for failed cuDNN calls. cudnnGetErrorString names the status only;
// cudnnGetLastErrorString (cuDNN 9) often says which parameter was wrong, so it is
// appended when the library left a message for this thread.
#include "kernels/cuda/cudnn_check.h"

#include "common/check.h"
#include "kernels/cuda/cuda_check.h"

namespace lockstep::kernels::cuda {

std::string CudnnErrorMessage(const char* call, cudnnStatus_t status) {
  std::string text = std::string(call) + " failed: " + cudnnGetErrorString(status) + " (status " +
                     std::to_string(static_cast<int>(status)) + ")";
  char detail[512] = {0};
  cudnnGetLastErrorString(detail, sizeof(detail));
  detail[sizeof(detail) - 1] = '\0';
  if (detail[0] != '\0') text += std::string(": ") + detail;
  return text + " on " + CurrentDeviceDescription();
}

// CheckFailure prints "[rank r/n on host] FATAL file:line: check failed: " and aborts
// when the temporary dies at the end of the statement.
void CudnnFatal(const char* call, const char* file, int line, cudnnStatus_t status) {
  ::lockstep::internal::CheckFailure(file, line, "cuDNN").stream()
      << CudnnErrorMessage(call, status);
  __builtin_unreachable();
}

}  // namespace lockstep::kernels::cuda
