#include "tests/kernels/kernels_test_util.h"

#include <algorithm>
#include <cmath>

#include "common/check.h"

namespace lockstep::kernels::testing {

double MaxRelError(const std::vector<float>& a, const std::vector<double>& b) {
  LS_CHECK_EQ(a.size(), b.size());
  double worst = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double err = std::fabs(static_cast<double>(a[i]) - b[i]) / std::max(1.0, std::fabs(b[i]));
    worst = std::isnan(err) ? INFINITY : std::max(worst, err);
  }
  return worst;
}

}  // namespace lockstep::kernels::testing
