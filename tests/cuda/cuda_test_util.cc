#include "tests/cuda/cuda_test_util.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "kernels/cuda/device.h"

namespace lockstep::kernels::cuda::testing {

const std::string& NoDeviceReason() {
  static const std::string reason = [] {
    std::string why;
    return UsableDeviceCount(&why) > 0 ? std::string() : why;
  }();
  return reason;
}

bool CudaRequired() {
  const char* v = std::getenv("LOCKSTEP_REQUIRE_CUDA");
  return v != nullptr && std::strcmp(v, "1") == 0;
}

void CudaTest::SetUp() {
  const std::string& why = NoDeviceReason();
  if (!why.empty()) {
    if (CudaRequired()) {
      FAIL() << "LOCKSTEP_REQUIRE_CUDA=1 but no usable CUDA device: " << why;
    }
    GTEST_SKIP() << "no usable CUDA device (" << why
                 << "); set LOCKSTEP_REQUIRE_CUDA=1 to make this a failure";
  }
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), cudaSuccess);
}

void CudaTest::Sync() {
  const cudaError_t err = cudaStreamSynchronize(stream_);
  ASSERT_EQ(err, cudaSuccess) << CudaErrorMessage("cudaStreamSynchronize(stream_)", err);
}

void CudaTest::TearDown() {
  if (stream_ == nullptr) return;
  Sync();
  EXPECT_EQ(cudaStreamDestroy(stream_), cudaSuccess);
  stream_ = nullptr;
  const cudaError_t err = cudaGetLastError();
  EXPECT_EQ(err, cudaSuccess) << CudaErrorMessage("cudaGetLastError()", err);
}

int64_t UlpDistance(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return (std::isnan(a) && std::isnan(b)) ? 0 : INT64_MAX;
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  // Map sign-magnitude to a monotonic integer line (-0 and +0 coincide).
  const int64_t la = ia < 0 ? int64_t{INT32_MIN} - ia : ia;
  const int64_t lb = ib < 0 ? int64_t{INT32_MIN} - ib : ib;
  return la > lb ? la - lb : lb - la;
}

namespace {

template <typename Pred>
::testing::AssertionResult CompareAll(const std::vector<float>& got, const std::vector<float>& want,
                                      const char* rule, Pred ok) {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure() << "size " << got.size() << " vs " << want.size();
  }
  int64_t bad = 0;
  std::ostringstream first;
  first.precision(9);
  for (size_t i = 0; i < got.size(); ++i) {
    if (ok(got[i], want[i])) continue;
    if (bad < 5) first << "\n  [" << i << "] got " << got[i] << " want " << want[i];
    ++bad;
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " of " << got.size() << " elements break " << rule << "; first:" << first.str();
}

}  // namespace

::testing::AssertionResult AllClose(const std::vector<float>& got, const std::vector<float>& want,
                                    double abs_tol, double rel_tol) {
  std::ostringstream rule;
  rule << "|got - want| <= " << abs_tol << " + " << rel_tol << " |want|";
  return CompareAll(got, want, rule.str().c_str(), [&](float g, float w) {
    if (std::isnan(g) || std::isnan(w)) return std::isnan(g) && std::isnan(w);
    return std::fabs(static_cast<double>(g) - w) <=
           abs_tol + rel_tol * std::fabs(static_cast<double>(w));
  });
}

::testing::AssertionResult BitwiseEqual(const std::vector<float>& got,
                                        const std::vector<float>& want) {
  return CompareAll(got, want, "bitwise equality",
                    [](float g, float w) { return std::memcmp(&g, &w, sizeof(float)) == 0; });
}

::testing::AssertionResult WithinUlps(const std::vector<float>& got, const std::vector<float>& want,
                                      int64_t max_ulps, int64_t* worst) {
  int64_t w = 0;
  for (size_t i = 0; i < got.size() && i < want.size(); ++i) {
    const int64_t d = UlpDistance(got[i], want[i]);
    if (d > w) w = d;
  }
  if (worst != nullptr) *worst = w;
  std::ostringstream rule;
  rule << max_ulps << " ulp";
  return CompareAll(got, want, rule.str().c_str(),
                    [&](float g, float v) { return UlpDistance(g, v) <= max_ulps; });
}

}  // namespace lockstep::kernels::cuda::testing
