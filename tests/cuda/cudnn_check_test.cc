// LS_CUDNN_CHECK's message and abort. No device needed: cudnnGetErrorString works
// without one, and the message must still name the call, status, rank and host.
// Compiled to nothing without cuDNN.
#if LOCKSTEP_HAVE_CUDNN

#include "kernels/cuda/cudnn_check.h"

#include <gtest/gtest.h>

#include <string>

#include "common/process_identity.h"

namespace lockstep::kernels::cuda {
namespace {

TEST(CudnnCheckTest, MessageNamesCallStatusAndDevice) {
  const std::string msg =
      CudnnErrorMessage("cudnnConvolutionForward(handle, ...)", CUDNN_STATUS_NOT_SUPPORTED);
  EXPECT_NE(msg.find("cudnnConvolutionForward(handle, ...)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("CUDNN_STATUS_NOT_SUPPORTED"), std::string::npos) << msg;
  EXPECT_NE(msg.find("device"), std::string::npos) << msg;
}

TEST(CudnnCheckDeathTest, FailedCallAbortsWithFileLineRankAndHost) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        SetProcessRank(5, 16);
        LS_CUDNN_CHECK(CUDNN_STATUS_BAD_PARAM);
      },
      "rank 5/16 on .*FATAL .*cudnn_check_test.cc:[0-9]+: .*cuDNN.*CUDNN_STATUS_BAD_PARAM failed: "
      "CUDNN_STATUS_BAD_PARAM");
}

TEST(CudnnCheckTest, SuccessDoesNothing) { LS_CUDNN_CHECK(CUDNN_STATUS_SUCCESS); }

}  // namespace
}  // namespace lockstep::kernels::cuda

#endif  // LOCKSTEP_HAVE_CUDNN
