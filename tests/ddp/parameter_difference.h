// How far two runs' parameters are apart, the measure of the data-parallel and resume
// equivalence tests: max |a - b| / max |b|, relative to the parameters' own scale (an
// elementwise relative error would blow up on parameters near zero). A NaN or an
// infinity on either side, or a length mismatch, is an infinite difference (a plain
// max would skip NaN and call a run of NaNs equal). Header-only.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace lockstep::testing {

inline double MaxRelativeDifference(const std::vector<float>& a, const std::vector<float>& b) {
  constexpr double kInfinite = std::numeric_limits<double>::infinity();
  if (a.size() != b.size()) return kInfinite;
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return kInfinite;
    diff = std::max(diff, std::fabs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::fabs(static_cast<double>(b[i])));
  }
  return diff / std::max(scale, 1e-30);
}

}  // namespace lockstep::testing
