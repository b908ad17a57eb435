#include "common/check.h"

#include <cstdio>
#include <cstdlib>

#include "common/process_identity.h"

namespace lockstep::internal {

CheckFailure::CheckFailure(const char* file, int line, const char* condition) {
  stream_ << "[" << ProcessDescription() << "] FATAL " << file << ":" << line
          << ": check failed: " << condition << " ";
}

CheckFailure::~CheckFailure() {
  std::string text = stream_.str();
  std::fprintf(stderr, "%s\n", text.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace lockstep::internal
