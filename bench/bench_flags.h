// Flag-value helpers for the benchmarks that parse their own flags (those the GPU test
// bundle builds, tests/cuda/bundle, where CLI11 is not installed).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

namespace lockstep::bench {

// s as a base-10 integer in [lo, hi]; false (out untouched) otherwise.
inline bool ParseInt(const std::string& s, int64_t lo, int64_t hi, int64_t* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (*end != '\0' || v < lo || v > hi) return false;
  *out = v;
  return true;
}

// Splits "a,b" and appends the non-empty parts.
inline void SplitCommas(const std::string& s, std::vector<std::string>* out) {
  size_t start = 0;
  while (start <= s.size()) {
    const size_t comma = s.find(',', start);
    const size_t end = comma == std::string::npos ? s.size() : comma;
    if (end > start) out->push_back(s.substr(start, end - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
}

}  // namespace lockstep::bench
