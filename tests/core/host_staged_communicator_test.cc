// HostStagedCommunicator under real mpirun (3 ranks) over the MPI communicator, with
// the CPU backend standing in for the device (its copies are the backend's copies,
// so the staging logic -- which bytes go to the host, which come back, and where --
// is what is tested): every collective, in place and out of place, uneven blocks,
// completion found by Test() instead of Wait(), and the reuse of the host buffers.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <vector>

#include "runtime/comm/mpi_communicator.h"
#include "runtime/core/backend.h"
#include "runtime/core/host_staged_communicator.h"

namespace lockstep {
namespace {

using comm::DataType;
using comm::ReduceOp;

struct Staged {
  std::unique_ptr<Backend> backend = CreateCpuBackend();
  std::unique_ptr<HostStagedCommunicator> comm;
  Staged() {
    auto mpi = comm::MpiCommunicator::Create("staged", comm::MpiOptions{});
    EXPECT_TRUE(mpi.ok()) << mpi.status().ToString();
    comm = std::make_unique<HostStagedCommunicator>(std::move(mpi).value(), backend.get());
  }
};

float Value(int rank, int64_t i) { return static_cast<float>((rank + 1) * (i % 7 + 1)); }

TEST(HostStagedCommunicator, AllReduceAndBroadcast) {
  Staged s;
  const int n = s.comm->world_size(), r = s.comm->rank();
  std::vector<float> buf(100'003);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = Value(r, static_cast<int64_t>(i));
  ASSERT_TRUE(s.comm->AllReduceSync(buf.data(), static_cast<int64_t>(buf.size()), DataType::kFloat32,
                                    ReduceOp::kSum, {"ar"}).ok());
  int64_t wrong = 0;
  for (size_t i = 0; i < buf.size(); ++i) wrong += buf[i] != float(n * (n + 1) / 2 * (i % 7 + 1));
  EXPECT_EQ(wrong, 0);

  std::vector<int64_t> b(1000);
  for (size_t i = 0; i < b.size(); ++i) b[i] = (int64_t{1} << 40) * r + static_cast<int64_t>(i);
  ASSERT_TRUE(s.comm->BroadcastSync(b.data(), 1000, DataType::kInt64, 1, {"bc"}).ok());
  for (size_t i = 0; i < b.size(); ++i) ASSERT_EQ(b[i], (int64_t{1} << 40) + static_cast<int64_t>(i)) << i;
}

TEST(HostStagedCommunicator, AllGatherInPlaceAndOutOfPlace) {
  Staged s;
  const int n = s.comm->world_size(), r = s.comm->rank();
  const int64_t per = 5001;
  std::vector<float> send(per), recv(per * n, -1.0f), inplace(per * n, -1.0f);
  for (int64_t i = 0; i < per; ++i) send[i] = inplace[r * per + i] = Value(r, i);
  ASSERT_TRUE(s.comm->AllGatherSync(send.data(), recv.data(), per, DataType::kFloat32, {"ag"}).ok());
  ASSERT_TRUE(s.comm->AllGatherSync(inplace.data() + r * per, inplace.data(), per, DataType::kFloat32, {"ag"}).ok());
  for (int src = 0; src < n; ++src) {
    for (int64_t i = 0; i < per; ++i) {
      ASSERT_EQ(recv[src * per + i], Value(src, i)) << "block " << src << " element " << i;
      ASSERT_EQ(inplace[src * per + i], Value(src, i)) << "in place, block " << src << " element " << i;
    }
  }
}

TEST(HostStagedCommunicator, ReduceScatterUnevenWritesOnlyTheOwnBlock) {
  Staged s;
  const int n = s.comm->world_size(), r = s.comm->rank();
  std::vector<int64_t> counts(n);
  for (int k = 0; k < n; ++k) counts[k] = 1000 * k + 7 * (k % 2);  // rank 0's block is empty
  const std::vector<int64_t> offsets = comm::BlockOffsets(counts);
  auto want = [&](int64_t i) { return float(n * (n + 1) / 2 * ((offsets[r] + i) % 7 + 1)); };
  std::vector<float> send(offsets[n]), recv(counts[r] + 1, -1.0f), arena(offsets[n]);
  for (int64_t i = 0; i < offsets[n]; ++i) send[i] = arena[i] = Value(r, i);
  ASSERT_TRUE(s.comm->ReduceScatterSync(send.data(), recv.data(), counts, DataType::kFloat32, ReduceOp::kSum,
                                        {"rs"}).ok());
  for (int64_t i = 0; i < counts[r]; ++i) ASSERT_EQ(recv[i], want(i)) << i;
  EXPECT_EQ(recv[counts[r]], -1.0f) << "nothing written past the block";
  ASSERT_TRUE(s.comm->ReduceScatterSync(arena.data(), arena.data() + offsets[r], counts, DataType::kFloat32,
                                        ReduceOp::kSum, {"rs"}).ok());
  for (int64_t i = 0; i < counts[r]; ++i) ASSERT_EQ(arena[offsets[r] + i], want(i)) << "in place " << i;
  // The rest of the arena is the caller's own data still (the device copy back
  // covers only this rank's block).
  for (int64_t i = 0; i < offsets[r]; ++i) ASSERT_EQ(arena[i], Value(r, i)) << i;
}

TEST(HostStagedCommunicator, AllGatherVAndTestCopiesBack) {
  Staged s;
  const int n = s.comm->world_size(), r = s.comm->rank();
  std::vector<int64_t> counts(n);
  for (int k = 0; k < n; ++k) counts[k] = 300 * (k + 1);
  const std::vector<int64_t> offsets = comm::BlockOffsets(counts);
  std::vector<float> params(offsets[n], -1.0f);
  for (int64_t i = 0; i < counts[r]; ++i) params[offsets[r] + i] = Value(r, i);
  auto handle = s.comm->AllGatherV(params.data() + offsets[r], params.data(), counts, DataType::kFloat32, {"agv"});
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!handle->Test()) {
    ASSERT_LT(std::chrono::steady_clock::now(), give_up);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  for (int src = 0; src < n; ++src) {
    for (int64_t i = 0; i < counts[src]; ++i) ASSERT_EQ(params[offsets[src] + i], Value(src, i)) << src << " " << i;
  }
  EXPECT_TRUE(handle->Wait(std::chrono::milliseconds(0)).ok());
  EXPECT_TRUE(s.comm->BarrierSync({"end"}).ok());
}

// Data-parallel steps issue the same buckets every step: after the first, the host
// staging (page-locked on a GPU, slow to allocate) is all reused.
TEST(HostStagedCommunicator, StepsAfterTheFirstAllocateNoStagingMemory) {
  Staged s;
  const int n = s.comm->world_size(), r = s.comm->rank();
  const std::vector<int64_t> bucket_sizes = {25'000, 25'000, 7'001};
  std::vector<std::vector<float>> buckets;
  for (int64_t size : bucket_sizes) buckets.emplace_back(size);
  size_t allocations_after_first_step = 0;
  for (int step = 0; step < 4; ++step) {
    std::vector<std::shared_ptr<comm::CommHandle>> handles;
    for (auto& bucket : buckets) {
      for (size_t i = 0; i < bucket.size(); ++i) bucket[i] = Value(r, static_cast<int64_t>(i) + step);
      handles.push_back(s.comm->AllReduce(bucket.data(), static_cast<int64_t>(bucket.size()), DataType::kFloat32,
                                          ReduceOp::kSum, {"bucket"}));
    }
    for (auto& h : handles) ASSERT_TRUE(h->Wait(std::chrono::seconds(60)).ok());
    for (auto& bucket : buckets) {
      for (size_t i = 0; i < bucket.size(); ++i) {
        ASSERT_EQ(bucket[i], float(n * (n + 1) / 2 * ((static_cast<int64_t>(i) + step) % 7 + 1))) << step << " " << i;
      }
    }
    handles.clear();
    const HostStagingStats stats = s.comm->staging_stats();
    EXPECT_EQ(stats.bytes_in_use, 0u) << "step " << step << ": a completed collective hands its block back";
    if (step == 0) {
      allocations_after_first_step = stats.allocations;
      EXPECT_EQ(allocations_after_first_step, bucket_sizes.size());
    } else {
      EXPECT_EQ(stats.allocations, allocations_after_first_step) << "step " << step;
    }
  }
}

}  // namespace
}  // namespace lockstep
