// The CUDA check macros and the device probe. These run without a device: the
// messages must still name the call, file:line, rank, host and why there is no
// device.
#include "kernels/cuda/cuda_check.h"

#include <gtest/gtest.h>

#include <string>

#include "common/process_identity.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/device.h"

namespace lockstep::kernels::cuda {
namespace {

TEST(CudaCheckTest, MessageNamesCallErrorAndDevice) {
  const std::string msg = CudaErrorMessage("cudaMalloc(&p, bytes)", cudaErrorMemoryAllocation);
  EXPECT_NE(msg.find("cudaMalloc(&p, bytes)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cudaErrorMemoryAllocation"), std::string::npos) << msg;
  EXPECT_NE(msg.find("device"), std::string::npos) << msg;
}

TEST(CudaCheckTest, CublasMessageNamesStatus) {
  const std::string msg = CublasErrorMessage("cublasLtMatmul(...)", CUBLAS_STATUS_NOT_SUPPORTED);
  EXPECT_NE(msg.find("cublasLtMatmul(...)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("CUBLAS_STATUS_NOT_SUPPORTED"), std::string::npos) << msg;
}

Status FailingCall() {
  LS_CUDA_RETURN_IF_ERROR(cudaErrorInvalidValue);
  return Status::Ok();
}

TEST(CudaCheckTest, StatusVariantCarriesFileLineRankAndHost) {
  SetProcessRank(3, 8);
  const Status s = FailingCall();
  SetProcessRank(-1, 1);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("cuda_check_test.cc:"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("rank 3/8 on " + HostName()), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("cudaErrorInvalidValue"), std::string::npos) << s.message();
}

TEST(CudaCheckDeathTest, FailedCallAbortsWithFileLineRankAndHost) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        SetProcessRank(5, 16);
        LS_CUDA_CHECK(cudaErrorInvalidDevicePointer);
      },
      "rank 5/16 on .*FATAL .*cuda_check_test.cc:[0-9]+: .*cudaErrorInvalidDevicePointer.* failed: "
      "cudaErrorInvalidDevicePointer");
}

TEST(CudaCheckTest, DeviceProbeIsConsistent) {
  std::string why;
  const int count = UsableDeviceCount(&why);
  if (count == 0) {
    EXPECT_FALSE(why.empty());
    std::printf("  no device: %s\n", why.c_str());
  } else {
    EXPECT_TRUE(why.empty()) << why;
  }
  EXPECT_EQ(UsableDeviceCount(nullptr), count);
}

}  // namespace
}  // namespace lockstep::kernels::cuda
