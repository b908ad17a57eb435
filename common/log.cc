#include "common/log.h"

#include <atomic>
#include <cstdio>

#include "common/process_identity.h"

namespace lockstep {
namespace {
std::atomic<int> g_min_level{static_cast<int>(LogLevel::kInfo)};
const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarning: return "warning";
    case LogLevel::kError: return "error";
  }
  return "?";
}
}  // namespace

void SetMinLogLevel(LogLevel level) { g_min_level.store(static_cast<int>(level)); }
LogLevel MinLogLevel() { return static_cast<LogLevel>(g_min_level.load()); }

namespace internal {
LogLine::LogLine(LogLevel level) : level_(level) {}
LogLine::~LogLine() {
  std::string text = "[" + ProcessDescription() + "] " + LevelName(level_) + ": " + stream_.str() + "\n";
  std::fwrite(text.data(), 1, text.size(), stderr);  // one write: lines from ranks do not interleave
}
}  // namespace internal
}  // namespace lockstep
