#include "common/blas_env.h"

#include <unistd.h>

#include <cstdlib>

namespace lockstep {

void EnsureBlasThreadTimeout(char** argv) {
  if (std::getenv("OPENBLAS_THREAD_TIMEOUT") != nullptr) return;
  if (setenv("OPENBLAS_THREAD_TIMEOUT", kBlasThreadTimeout, 1) != 0) return;
  execv("/proc/self/exe", argv);
  // exec failed (no /proc, say): carry on with OpenBLAS's default spinning. The
  // variable stays set for child processes, which start with it.
}

}  // namespace lockstep
