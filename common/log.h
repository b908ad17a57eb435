// Minimal line logging to stderr, each line prefixed with level, rank and host.
// `LS_LOG(INFO) << ...` writes one whole line atomically; thread-safe.
#pragma once

#include <sstream>

namespace lockstep {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

void SetMinLogLevel(LogLevel level);
LogLevel MinLogLevel();

namespace internal {
class LogLine {
 public:
  explicit LogLine(LogLevel level);
  ~LogLine();
  std::ostream& stream() { return stream_; }

 private:
  LogLevel level_;
  std::ostringstream stream_;
};
}  // namespace internal
}  // namespace lockstep

#define LS_LOG_LEVEL_DEBUG ::lockstep::LogLevel::kDebug
#define LS_LOG_LEVEL_INFO ::lockstep::LogLevel::kInfo
#define LS_LOG_LEVEL_WARNING ::lockstep::LogLevel::kWarning
#define LS_LOG_LEVEL_ERROR ::lockstep::LogLevel::kError
#define LS_LOG(severity)                                                  \
  if (LS_LOG_LEVEL_##severity < ::lockstep::MinLogLevel()) {              \
  } else                                                                  \
    ::lockstep::internal::LogLine(LS_LOG_LEVEL_##severity).stream()
