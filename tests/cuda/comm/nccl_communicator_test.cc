// NcclCommunicator at world size 1 (one GPU; NCCL refuses two ranks on one device),
// bootstrapped over a LocalCommunicator; multi-rank runs need one GPU per rank under
// mpirun. Without a device the creation must fail with a reason naming rank, host
// and the CUDA error — that part runs everywhere.
#include "runtime/comm/nccl_communicator.h"

#include <gtest/gtest.h>

#include <numeric>
#include <vector>

#include "common/process_identity.h"
#include "runtime/comm/local_communicator.h"
#include "tests/cuda/cuda_test_util.h"

namespace lockstep::comm {
namespace {

using kernels::cuda::testing::DeviceBuffer;
using kernels::cuda::testing::NoDeviceReason;

TEST(NcclCommunicatorTest, NullBootstrapIsInvalidArgument) {
  auto comm = NcclCommunicator::Create(nullptr, 0);
  ASSERT_FALSE(comm.ok());
  EXPECT_EQ(comm.status().code(), StatusCode::kInvalidArgument);
}

TEST(NcclCommunicatorTest, WithoutDeviceCreateFailsNamingRankHostAndReason) {
  if (NoDeviceReason().empty()) GTEST_SKIP() << "a CUDA device is present: nothing to check here";
  LocalCommunicator boot;
  auto comm = NcclCommunicator::Create(&boot, 0, "grad");
  ASSERT_FALSE(comm.ok());
  const std::string& m = comm.status().message();
  EXPECT_EQ(comm.status().code(), StatusCode::kUnavailable) << m;
  EXPECT_NE(m.find("'grad'"), std::string::npos) << m;
  EXPECT_NE(m.find(HostName()), std::string::npos) << m;
  EXPECT_NE(m.find("no CUDA device 0"), std::string::npos) << m;
  EXPECT_NE(m.find(NoDeviceReason()), std::string::npos) << m;
}

class NcclWorldOneTest : public kernels::cuda::testing::CudaTest {
 protected:
  void SetUp() override {
    CudaTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    auto comm = NcclCommunicator::Create(&boot_, 0, "test");
    ASSERT_TRUE(comm.ok()) << comm.status().ToString();
    comm_ = std::move(comm).value();
    comm_->set_compute_stream(stream_);
  }
  void TearDown() override {
    comm_.reset();
    CudaTest::TearDown();
  }

  LocalCommunicator boot_;
  std::unique_ptr<NcclCommunicator> comm_;
};

std::vector<int32_t> Iota(int64_t n, int32_t first) {
  std::vector<int32_t> v(n);
  std::iota(v.begin(), v.end(), first);
  return v;
}

TEST_F(NcclWorldOneTest, CollectivesOfOneRankAreIdentities) {
  const int64_t n = 1000003;
  DeviceBuffer<int32_t> buf(Iota(n, 7));
  EXPECT_EQ(comm_->rank(), 0);
  EXPECT_EQ(comm_->world_size(), 1);
  ASSERT_TRUE(comm_->AllReduceSync(buf.get(), n, DataType::kInt32, ReduceOp::kSum, {"sum"}).ok());
  ASSERT_TRUE(comm_->BroadcastSync(buf.get(), n, DataType::kInt32, 0, {"bcast"}).ok());
  EXPECT_EQ(buf.Download(), Iota(n, 7));

  DeviceBuffer<int32_t> gathered(n);
  ASSERT_TRUE(comm_->AllGatherSync(buf.get(), gathered.get(), n, DataType::kInt32, {"ag"}).ok());
  EXPECT_EQ(gathered.Download(), Iota(n, 7));
  DeviceBuffer<int32_t> gathered_v(n);
  ASSERT_TRUE(
      comm_->AllGatherVSync(buf.get(), gathered_v.get(), {n}, DataType::kInt32, {"agv"}).ok());
  EXPECT_EQ(gathered_v.Download(), Iota(n, 7));
  DeviceBuffer<int32_t> scattered(n);
  ASSERT_TRUE(comm_
                  ->ReduceScatterSync(buf.get(), scattered.get(), {n}, DataType::kInt32,
                                      ReduceOp::kMax, {"rs"})
                  .ok());
  EXPECT_EQ(scattered.Download(), Iota(n, 7));
  EXPECT_TRUE(comm_->BarrierSync({"barrier"}).ok());
}

TEST_F(NcclWorldOneTest, CollectiveWaitsForTheComputeStream) {
  // A memset on the compute stream, then an all-reduce on the comm stream: the
  // all-reduce must see the memset's bytes.
  const int64_t n = 1 << 20;
  DeviceBuffer<int32_t> buf(n);
  ASSERT_EQ(cudaMemsetAsync(buf.get(), 0, n * sizeof(int32_t), stream_), cudaSuccess);
  auto h = comm_->AllReduce(buf.get(), n, DataType::kInt32, ReduceOp::kSum, {"ordered"});
  ASSERT_TRUE(h->Wait(std::chrono::seconds(60)).ok());
  EXPECT_TRUE(h->Test());
  EXPECT_EQ(buf.Download(), std::vector<int32_t>(n, 0));
}

TEST_F(NcclWorldOneTest, ZeroCountsAndBadArgumentsCompleteAtOnce) {
  EXPECT_TRUE(comm_->AllReduce(nullptr, 0, DataType::kFloat32, ReduceOp::kSum, {"empty"})->Test());
  auto bad = comm_->Broadcast(nullptr, 4, DataType::kFloat32, 3, {"bad root"});
  ASSERT_TRUE(bad->Test());
  EXPECT_EQ(bad->Wait(std::chrono::milliseconds(1)).code(), StatusCode::kInvalidArgument);
}

TEST_F(NcclWorldOneTest, DuplicateIsAnIndependentCommunicator) {
  auto dup = comm_->Duplicate("checkpoint");
  ASSERT_TRUE(dup.ok()) << dup.status().ToString();
  EXPECT_EQ((*dup)->name(), "checkpoint");
  DeviceBuffer<float> buf(std::vector<float>{1.5f, -2.0f});
  ASSERT_TRUE((*dup)->AllReduceSync(buf.get(), 2, DataType::kFloat32, ReduceOp::kSum, {"x"}).ok());
  EXPECT_EQ(buf.Download(), (std::vector<float>{1.5f, -2.0f}));
}

}  // namespace
}  // namespace lockstep::comm
