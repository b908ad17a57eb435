// ParseFaultSpec, MaybeWrapWithFaults and the wrapper's actions over a LocalCommunicator.
#include <gtest/gtest.h>

#include <chrono>

#include "runtime/comm/fault_injecting_communicator.h"
#include "runtime/comm/local_communicator.h"

namespace lockstep::comm {
namespace {

TEST(ParseFaultSpec, ParsesHang) {
  auto spec = ParseFaultSpec("rank=1,op=allreduce,index=3,action=hang");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->rank, 1);
  EXPECT_EQ(spec->kind, CollectiveKind::kAllReduce);
  EXPECT_EQ(spec->index, 3);
  EXPECT_EQ(spec->action, FaultSpec::Action::kHang);
  EXPECT_EQ(spec->ToString(), "rank=1,op=allreduce,index=3,action=hang");
}

TEST(ParseFaultSpec, ParsesDelayAndFail) {
  auto delay = ParseFaultSpec("action=delay:500,op=broadcast,index=1,rank=0");
  ASSERT_TRUE(delay.ok()) << delay.status().ToString();
  EXPECT_EQ(delay->action, FaultSpec::Action::kDelay);
  EXPECT_EQ(delay->delay_ms, 500);
  EXPECT_EQ(delay->kind, CollectiveKind::kBroadcast);
  auto fail = ParseFaultSpec("rank=2,op=reducescatter,index=7,action=fail");
  ASSERT_TRUE(fail.ok()) << fail.status().ToString();
  EXPECT_EQ(fail->action, FaultSpec::Action::kFail);
  EXPECT_EQ(fail->kind, CollectiveKind::kReduceScatter);
}

void ExpectNamesKey(const std::string& text, const std::string& key) {
  auto spec = ParseFaultSpec(text);
  ASSERT_FALSE(spec.ok()) << text;
  EXPECT_EQ(spec.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(spec.status().message().find("'" + key + "'"), std::string::npos) << spec.status().message();
}

TEST(ParseFaultSpec, BadSpecsNameTheBadKey) {
  ExpectNamesKey("rank=1,op=allreduce,index=3,action=hang,color=red", "color");
  ExpectNamesKey("rank=x,op=allreduce,index=3,action=hang", "rank");
  ExpectNamesKey("rank=1,op=alltoall,index=3,action=hang", "op");
  ExpectNamesKey("rank=1,op=allreduce,index=0,action=hang", "index");
  ExpectNamesKey("rank=1,op=allreduce,index=3,action=explode", "action");
  ExpectNamesKey("rank=1,op=allreduce,index=3,action=delay:-5", "action");
  ExpectNamesKey("rank=1,op=allreduce,action=hang", "index");
}

TEST(MaybeWrapWithFaults, UnsetLeavesCommunicatorUnwrapped) {
  auto comm = MaybeWrapWithFaults(std::make_unique<LocalCommunicator>(), [](const char*) -> const char* { return nullptr; });
  ASSERT_TRUE(comm.ok());
  EXPECT_EQ(dynamic_cast<FaultInjectingCommunicator*>(comm->get()), nullptr);
}

TEST(MaybeWrapWithFaults, BadEnvNamesVariableAndKey) {
  auto comm = MaybeWrapWithFaults(std::make_unique<LocalCommunicator>(), [](const char* name) -> const char* {
    return std::string(name) == "LOCKSTEP_FAULT_INJECT" ? "rank=0,op=allreduce,idx=1,action=fail" : nullptr;
  });
  ASSERT_FALSE(comm.ok());
  EXPECT_NE(comm.status().message().find("LOCKSTEP_FAULT_INJECT"), std::string::npos) << comm.status().message();
  EXPECT_NE(comm.status().message().find("'idx'"), std::string::npos) << comm.status().message();
}

std::unique_ptr<Communicator> Wrapped(const std::string& text) {
  auto spec = ParseFaultSpec(text);
  EXPECT_TRUE(spec.ok()) << spec.status().ToString();
  return std::make_unique<FaultInjectingCommunicator>(std::make_unique<LocalCommunicator>(), *spec);
}

TEST(FaultInjectingCommunicator, FailsOnlyTheChosenCall) {
  auto comm = Wrapped("rank=0,op=allreduce,index=2,action=fail");
  float x = 1;
  EXPECT_TRUE(comm->AllReduce(&x, 1, DataType::kFloat32, ReduceOp::kSum, {"a"})->Wait(std::chrono::seconds(1)).ok());
  EXPECT_TRUE(comm->Barrier({"b"})->Wait(std::chrono::seconds(1)).ok());  // other kinds are not counted
  Status second = comm->AllReduce(&x, 1, DataType::kFloat32, ReduceOp::kSum, {"a", 2})->Wait(std::chrono::seconds(1));
  EXPECT_EQ(second.code(), StatusCode::kUnavailable);
  EXPECT_NE(second.message().find("fault injected"), std::string::npos) << second.message();
  EXPECT_TRUE(comm->AllReduce(&x, 1, DataType::kFloat32, ReduceOp::kSum, {"a"})->Wait(std::chrono::seconds(1)).ok());
}

TEST(FaultInjectingCommunicator, HangNeverCompletesAndWaitHonoursDeadline) {
  auto comm = Wrapped("rank=0,op=barrier,index=1,action=hang");
  auto handle = comm->Barrier({"sync", 4, 2});
  EXPECT_FALSE(handle->Test());
  Status status = handle->Wait(std::chrono::milliseconds(20));
  EXPECT_EQ(status.code(), StatusCode::kDeadlineExceeded);
  EXPECT_NE(status.message().find("'sync' step 4 bucket 2"), std::string::npos) << status.message();
  EXPECT_FALSE(handle->Test());
}

TEST(FaultInjectingCommunicator, OtherRankIsUnaffected) {
  auto comm = Wrapped("rank=1,op=barrier,index=1,action=hang");
  EXPECT_TRUE(comm->Barrier({"sync"})->Test());
}

TEST(FaultInjectingCommunicator, DelayStillRunsTheCollective) {
  auto comm = Wrapped("rank=0,op=allgather,index=1,action=delay:30");
  int32_t send = 7, recv = 0;
  auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(comm->AllGather(&send, &recv, 1, DataType::kInt32, {"g"})->Wait(std::chrono::seconds(1)).ok());
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(30));
  EXPECT_EQ(recv, 7);
}

}  // namespace
}  // namespace lockstep::comm
