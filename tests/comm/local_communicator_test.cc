// LocalCommunicator (world size 1) and the argument validation shared by all communicators.
#include "runtime/comm/local_communicator.h"

#include <gtest/gtest.h>

#include <numeric>
#include <vector>

namespace lockstep::comm {
namespace {

constexpr auto kDeadline = std::chrono::seconds(1);

TEST(LocalCommunicator, IsRankZeroOfOne) {
  LocalCommunicator comm("grad");
  EXPECT_EQ(comm.rank(), 0);
  EXPECT_EQ(comm.world_size(), 1);
  EXPECT_EQ(comm.name(), "grad");
}

TEST(LocalCommunicator, AllReduceAndBroadcastLeaveDataUnchanged) {
  LocalCommunicator comm;
  std::vector<float> data = {1, 2, 3};
  auto handle = comm.AllReduce(data.data(), 3, DataType::kFloat32, ReduceOp::kSum, {"x"});
  EXPECT_TRUE(handle->Test());
  EXPECT_TRUE(handle->Wait(kDeadline).ok());
  EXPECT_TRUE(comm.BroadcastSync(data.data(), 3, DataType::kFloat32, 0, {"x"}).ok());
  EXPECT_EQ(data, (std::vector<float>{1, 2, 3}));
}

TEST(LocalCommunicator, GatherAndScatterCopyTheOwnBlock) {
  LocalCommunicator comm;
  std::vector<int64_t> send = {4, 5, 6}, recv(3, 0);
  EXPECT_TRUE(comm.AllGatherSync(send.data(), recv.data(), 3, DataType::kInt64, {"g"}).ok());
  EXPECT_EQ(recv, send);
  std::vector<int64_t> recv_v(3, 0);
  EXPECT_TRUE(comm.AllGatherVSync(send.data(), recv_v.data(), {3}, DataType::kInt64, {"gv"}).ok());
  EXPECT_EQ(recv_v, send);
  std::vector<int64_t> recv_rs(3, 0);
  EXPECT_TRUE(comm.ReduceScatterSync(send.data(), recv_rs.data(), {3}, DataType::kInt64, ReduceOp::kSum, {"rs"}).ok());
  EXPECT_EQ(recv_rs, send);
}

TEST(LocalCommunicator, CountZeroWorksWithNullBuffers) {
  LocalCommunicator comm;
  EXPECT_TRUE(comm.AllReduceSync(nullptr, 0, DataType::kFloat32, ReduceOp::kMax, {"z"}).ok());
  EXPECT_TRUE(comm.BroadcastSync(nullptr, 0, DataType::kUint8, 0, {"z"}).ok());
  EXPECT_TRUE(comm.AllGatherSync(nullptr, nullptr, 0, DataType::kInt32, {"z"}).ok());
  EXPECT_TRUE(comm.AllGatherVSync(nullptr, nullptr, {0}, DataType::kInt32, {"z"}).ok());
  EXPECT_TRUE(comm.ReduceScatterSync(nullptr, nullptr, {0}, DataType::kInt32, ReduceOp::kSum, {"z"}).ok());
  EXPECT_TRUE(comm.BarrierSync({"z"}).ok());
}

TEST(CommunicatorValidation, BadArgumentsAreInvalidArgumentNamingTheProblem) {
  LocalCommunicator comm("grad");
  float x = 0;
  Status negative = comm.AllReduceSync(&x, -1, DataType::kFloat32, ReduceOp::kSum, {"bucket", 3, 1});
  EXPECT_EQ(negative.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(negative.message().find("count -1 < 0"), std::string::npos) << negative.message();
  EXPECT_NE(negative.message().find("'bucket' step 3 bucket 1"), std::string::npos) << negative.message();
  Status root = comm.BroadcastSync(&x, 1, DataType::kFloat32, 1, {"b"});
  EXPECT_EQ(root.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(root.message().find("root 1 is outside [0, 1)"), std::string::npos) << root.message();
  Status counts = comm.ReduceScatterSync(&x, &x, {1, 1}, DataType::kFloat32, ReduceOp::kSum, {"rs"});
  EXPECT_EQ(counts.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(counts.message().find("2 entries, expected world size 1"), std::string::npos) << counts.message();
  Status null = comm.AllGatherSync(nullptr, &x, 1, DataType::kFloat32, {"g"});
  EXPECT_EQ(null.code(), StatusCode::kInvalidArgument);
}

TEST(LocalCommunicator, DuplicateHasTheNewName) {
  LocalCommunicator comm("grad");
  auto dup = comm.Duplicate("checkpoint");
  ASSERT_TRUE(dup.ok());
  EXPECT_EQ((*dup)->name(), "checkpoint");
  EXPECT_EQ((*dup)->world_size(), 1);
}

TEST(BlockOffsets, ArePrefixSums) {
  EXPECT_EQ(BlockOffsets({3, 0, 5}), (std::vector<int64_t>{0, 3, 3, 8}));
  EXPECT_EQ(BlockOffsets({}), (std::vector<int64_t>{0}));
}

}  // namespace
}  // namespace lockstep::comm
