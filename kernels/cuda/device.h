// Finding out whether this process can use a CUDA device at all. Machines without
// a GPU (or without a driver) are normal: every error means "no device" and comes
// back as a reason a user can read. Thread-safe.
#pragma once

#include <string>

namespace lockstep::kernels::cuda {

// Number of CUDA devices this process can use; 0 with *reason (when non-null) set to
// why, e.g. "cudaGetDeviceCount: cudaErrorInsufficientDriver (CUDA driver version is
// insufficient for CUDA runtime version)".
int UsableDeviceCount(std::string* reason);

}  // namespace lockstep::kernels::cuda
