// Fnv1a64: a stable 64-bit fingerprint of a string, for comparing recipes and
// architectures across ranks and against checkpoints (not for integrity: shard
// data uses xxHash64). Pure function; thread-safe.
#pragma once

#include <cstdint>
#include <string>

namespace lockstep {

inline uint64_t Fnv1a64(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace lockstep
