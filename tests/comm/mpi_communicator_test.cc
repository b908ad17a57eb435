// MpiCommunicator under real mpirun (2, 3 and 4 ranks): every collective against exact
// integer references (float32 holding small integers, int64 beyond 2^32), at edge counts
// around a 25 MiB bucket, uneven blocks, non-zero roots, the split paths for counts
// above the per-call limit, many handles in flight, and a duplicated communicator.
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "runtime/comm/mpi_communicator.h"

namespace lockstep::comm {
namespace {

constexpr auto kDeadline = std::chrono::seconds(60);
constexpr int64_t kBucket = 25 * 1024 * 1024 / 4;  // a 25 MiB float32 bucket
const std::vector<int64_t> kCounts = {0, 1, kBucket - 1, kBucket, kBucket + 1, (1 << 20) + 1};

std::unique_ptr<MpiCommunicator> MakeComm(MpiOptions options = {}) {
  auto comm = MpiCommunicator::Create("test", options);
  EXPECT_TRUE(comm.ok()) << comm.status().ToString();
  return comm.ok() ? std::move(comm).value() : nullptr;
}

// Rank r's element i: small integers so float32 sums are exact.
float Value(int rank, int64_t i) { return static_cast<float>((rank + 1) * (i % 7 + 1)); }
int64_t Value64(int rank, int64_t i) { return (int64_t{1} << 40) * rank + i; }

// Counts a mismatch instead of one EXPECT per element (buffers have millions).
template <typename T>
int64_t CountWrong(const std::vector<T>& got, int64_t begin, int64_t n, const std::function<T(int64_t)>& want) {
  int64_t wrong = 0;
  for (int64_t i = 0; i < n; ++i) wrong += got[begin + i] != want(i);
  return wrong;
}

TEST(MpiCommunicator, ReportsRankAndWorldSize) {
  auto comm = MakeComm();
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  EXPECT_EQ(comm->rank(), rank);
  EXPECT_EQ(comm->world_size(), size);
}

TEST(MpiCommunicator, AllReduceSumFloat32AtBucketEdges) {
  auto comm = MakeComm();
  const int n = comm->world_size(), r = comm->rank();
  for (int64_t count : kCounts) {
    std::vector<float> buf(count);
    for (int64_t i = 0; i < count; ++i) buf[i] = Value(r, i);
    ASSERT_TRUE(comm->AllReduceSync(buf.data(), count, DataType::kFloat32, ReduceOp::kSum, {"sum"}).ok());
    EXPECT_EQ(CountWrong<float>(buf, 0, count, [&](int64_t i) { return float(n * (n + 1) / 2 * (i % 7 + 1)); }), 0)
        << "count " << count;
  }
}

TEST(MpiCommunicator, AllReduceInt64SumMaxMin) {
  auto comm = MakeComm();
  const int n = comm->world_size(), r = comm->rank();
  const int64_t count = (1 << 16) + 1;
  for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kMax, ReduceOp::kMin}) {
    std::vector<int64_t> buf(count);
    for (int64_t i = 0; i < count; ++i) buf[i] = Value64(r, i);
    ASSERT_TRUE(comm->AllReduceSync(buf.data(), count, DataType::kInt64, op, {"i64"}).ok());
    auto want = [&](int64_t i) -> int64_t {
      if (op == ReduceOp::kSum) return (int64_t{1} << 40) * n * (n - 1) / 2 + n * i;
      return op == ReduceOp::kMax ? Value64(n - 1, i) : Value64(0, i);
    };
    EXPECT_EQ(CountWrong<int64_t>(buf, 0, count, want), 0) << ReduceOpName(op);
  }
}

TEST(MpiCommunicator, BroadcastFromEveryRoot) {
  auto comm = MakeComm();
  const int n = comm->world_size(), r = comm->rank();
  for (int root = 0; root < n; ++root) {
    for (int64_t count : {int64_t{0}, int64_t{1}, kBucket + 1}) {
      std::vector<float> buf(count, -1.0f);
      if (r == root) {
        for (int64_t i = 0; i < count; ++i) buf[i] = Value(root, i);
      }
      ASSERT_TRUE(comm->BroadcastSync(buf.data(), count, DataType::kFloat32, root, {"bcast"}).ok());
      EXPECT_EQ(CountWrong<float>(buf, 0, count, [&](int64_t i) { return Value(root, i); }), 0)
          << "root " << root << " count " << count;
    }
  }
}

TEST(MpiCommunicator, AllGatherOutOfPlaceAndInPlace) {
  auto comm = MakeComm();
  const int n = comm->world_size(), r = comm->rank();
  for (int64_t per : {int64_t{0}, int64_t{1}, int64_t{1000}, int64_t{(1 << 18) + 1}}) {
    std::vector<float> send(per), recv(per * n, -1.0f);
    for (int64_t i = 0; i < per; ++i) send[i] = Value(r, i);
    ASSERT_TRUE(comm->AllGatherSync(send.data(), recv.data(), per, DataType::kFloat32, {"ag"}).ok());
    std::vector<float> inplace(per * n, -1.0f);
    for (int64_t i = 0; i < per; ++i) inplace[r * per + i] = Value(r, i);
    ASSERT_TRUE(comm->AllGatherSync(inplace.data() + r * per, inplace.data(), per, DataType::kFloat32, {"ag"}).ok());
    for (int src = 0; src < n; ++src) {
      auto want = [&](int64_t i) { return Value(src, i); };
      EXPECT_EQ(CountWrong<float>(recv, src * per, per, want), 0) << "per " << per << " block " << src;
      EXPECT_EQ(CountWrong<float>(inplace, src * per, per, want), 0) << "in place, per " << per << " block " << src;
    }
  }
}

// Uneven blocks, one of them empty: rank r owns 1000*r + 7*(r%2) elements.
std::vector<int64_t> UnevenCounts(int n, int64_t scale) {
  std::vector<int64_t> counts(n);
  for (int r = 0; r < n; ++r) counts[r] = scale * r + 7 * (r % 2);
  return counts;
}

TEST(MpiCommunicator, AllGatherVUnevenBlocks) {
  auto comm = MakeComm();
  const int n = comm->world_size(), r = comm->rank();
  std::vector<int64_t> counts = UnevenCounts(n, 1000), offsets = BlockOffsets(counts);
  std::vector<int64_t> send(counts[r]), recv(offsets[n], -1);
  for (int64_t i = 0; i < counts[r]; ++i) send[i] = Value64(r, i);
  ASSERT_TRUE(comm->AllGatherVSync(send.data(), recv.data(), counts, DataType::kInt64, {"agv"}).ok());
  for (int src = 0; src < n; ++src) {
    EXPECT_EQ(CountWrong<int64_t>(recv, offsets[src], counts[src], [&](int64_t i) { return Value64(src, i); }), 0)
        << "block " << src;
  }
}

TEST(MpiCommunicator, ReduceScatterUnevenOutOfPlaceAndInPlace) {
  auto comm = MakeComm();
  const int n = comm->world_size(), r = comm->rank();
  std::vector<int64_t> counts = UnevenCounts(n, 100'000), offsets = BlockOffsets(counts);
  auto fill = [&](std::vector<float>& v) {
    for (int64_t i = 0; i < offsets[n]; ++i) v[i] = Value(r, i);
  };
  auto want = [&](int64_t i) { return float(n * (n + 1) / 2 * ((offsets[r] + i) % 7 + 1)); };
  std::vector<float> send(offsets[n]), recv(counts[r], -1.0f);
  fill(send);
  ASSERT_TRUE(comm->ReduceScatterSync(send.data(), recv.data(), counts, DataType::kFloat32, ReduceOp::kSum, {"rs"}).ok());
  EXPECT_EQ(CountWrong<float>(recv, 0, counts[r], want), 0);
  std::vector<float> arena(offsets[n]);
  fill(arena);
  ASSERT_TRUE(comm->ReduceScatterSync(arena.data(), arena.data() + offsets[r], counts, DataType::kFloat32,
                                      ReduceOp::kSum, {"rs"}).ok());
  EXPECT_EQ(CountWrong<float>(arena, offsets[r], counts[r], want), 0) << "in place";
}

TEST(MpiCommunicator, CountsAboveThePerCallLimitAreSplit) {
  MpiOptions options;
  options.max_elements_per_call = 1000;
  auto comm = MakeComm(options);
  const int n = comm->world_size(), r = comm->rank();
  std::vector<float> buf(5001);
  for (int64_t i = 0; i < 5001; ++i) buf[i] = Value(r, i);
  ASSERT_TRUE(comm->AllReduceSync(buf.data(), 5001, DataType::kFloat32, ReduceOp::kSum, {"split"}).ok());
  EXPECT_EQ(CountWrong<float>(buf, 0, 5001, [&](int64_t i) { return float(n * (n + 1) / 2 * (i % 7 + 1)); }), 0);
  // Gather and scatter totals above the limit take the block-wise fallbacks.
  std::vector<int64_t> counts = UnevenCounts(n, 900), offsets = BlockOffsets(counts);
  std::vector<int64_t> send(counts[r]), gathered(offsets[n], -1);
  for (int64_t i = 0; i < counts[r]; ++i) send[i] = Value64(r, i);
  ASSERT_TRUE(comm->AllGatherVSync(send.data(), gathered.data(), counts, DataType::kInt64, {"split"}).ok());
  for (int src = 0; src < n; ++src) {
    EXPECT_EQ(CountWrong<int64_t>(gathered, offsets[src], counts[src], [&](int64_t i) { return Value64(src, i); }), 0);
  }
  std::vector<int64_t> whole(offsets[n]), mine(counts[r], -1);
  for (int64_t i = 0; i < offsets[n]; ++i) whole[i] = Value64(r, i);
  ASSERT_TRUE(comm->ReduceScatterSync(whole.data(), mine.data(), counts, DataType::kInt64, ReduceOp::kMax, {"split"}).ok());
  EXPECT_EQ(CountWrong<int64_t>(mine, 0, counts[r], [&](int64_t i) { return Value64(n - 1, offsets[r] + i); }), 0);
  std::vector<float> same(700 * n, -1.0f);
  for (int64_t i = 0; i < 700; ++i) same[r * 700 + i] = Value(r, i);
  ASSERT_TRUE(comm->AllGatherSync(same.data() + r * 700, same.data(), 700, DataType::kFloat32, {"split"}).ok());
  for (int src = 0; src < n; ++src) {
    EXPECT_EQ(CountWrong<float>(same, src * 700, 700, [&](int64_t i) { return Value(src, i); }), 0);
  }
}

TEST(MpiCommunicator, ManyHandlesInFlightCompleteInIssueOrder) {
  auto comm = MakeComm();
  const int n = comm->world_size(), r = comm->rank();
  constexpr int kOps = 64;
  constexpr int64_t kCount = 4099;
  std::vector<std::vector<int32_t>> bufs(kOps, std::vector<int32_t>(kCount));
  std::vector<std::shared_ptr<CommHandle>> handles;
  for (int k = 0; k < kOps; ++k) {
    for (int64_t i = 0; i < kCount; ++i) bufs[k][i] = (r + 1) * (k + 1) + static_cast<int32_t>(i);
    handles.push_back(comm->AllReduce(bufs[k].data(), kCount, DataType::kInt32, ReduceOp::kSum, {"inflight", 0, k}));
  }
  // FIFO: once the last is done, every earlier one must be done too.
  ASSERT_TRUE(handles.back()->Wait(kDeadline).ok());
  for (int k = 0; k < kOps; ++k) EXPECT_TRUE(handles[k]->Test()) << "handle " << k;
  for (int k = 0; k < kOps; ++k) {
    ASSERT_TRUE(handles[k]->Wait(kDeadline).ok());
    EXPECT_EQ(CountWrong<int32_t>(bufs[k], 0, kCount,
                                  [&](int64_t i) { return int32_t(n * (n + 1) / 2 * (k + 1) + n * i); }), 0)
        << "handle " << k;
  }
}

// Caller-polled all-reduces (the overlapping DDP reducer's: issued on this thread and
// progressed by Test) in flight together with comm-thread collectives issued between
// them, and one above the issuing-thread size limit: MPI must see every rank's calls
// in the same order, and every result must be exact.
TEST(MpiCommunicator, PolledAllReducesInterleaveWithOtherCollectives) {
  auto comm = MakeComm();
  const int n = comm->world_size(), r = comm->rank();
  const std::vector<int64_t> counts = {0, 1, 4099, (1 << 18) + 1 /* > 1 MiB: comm thread */, 1000, 25};
  std::vector<std::vector<float>> bufs;
  for (int64_t c : counts) {
    bufs.emplace_back(static_cast<size_t>(c));
    for (int64_t i = 0; i < c; ++i) bufs.back()[i] = Value(r, i);
  }
  std::vector<int64_t> bcast(777, r), gathered(static_cast<size_t>(3 * n), -1);
  const int64_t mine[3] = {r, r * 10, r * 100};
  std::vector<std::shared_ptr<CommHandle>> handles;
  for (size_t k = 0; k < counts.size(); ++k) {
    CollectiveTag tag{"polled", 0, static_cast<int64_t>(k)};
    tag.caller_polls = true;
    handles.push_back(comm->AllReduce(bufs[k].data(), counts[k], DataType::kFloat32, ReduceOp::kSum, tag));
    if (k == 1) handles.push_back(comm->Broadcast(bcast.data(), 777, DataType::kInt64, n - 1, {"between"}));
    if (k == 3) handles.push_back(comm->AllGather(mine, gathered.data(), 3, DataType::kInt64, {"between"}));
  }
  // Poll like the reducer does between layers, then wait.
  const auto give_up = std::chrono::steady_clock::now() + kDeadline;
  for (bool all = false; !all;) {
    all = true;
    for (auto& h : handles) all = h->Test() && all;
    ASSERT_LT(std::chrono::steady_clock::now(), give_up) << "polled collectives never completed";
  }
  for (auto& h : handles) ASSERT_TRUE(h->Wait(kDeadline).ok());
  for (size_t k = 0; k < counts.size(); ++k) {
    EXPECT_EQ(CountWrong<float>(bufs[k], 0, counts[k], [&](int64_t i) { return float(n * (n + 1) / 2 * (i % 7 + 1)); }),
              0)
        << "all-reduce " << k;
  }
  for (int64_t v : bcast) ASSERT_EQ(v, n - 1);
  for (int src = 0; src < n; ++src) {
    EXPECT_EQ(gathered[3 * src], src);
    EXPECT_EQ(gathered[3 * src + 2], src * 100);
  }
}

TEST(MpiCommunicator, DuplicateRunsIndependentlyOfItsParent) {
  auto comm = MakeComm();
  auto dup = comm->Duplicate("checkpoint");
  ASSERT_TRUE(dup.ok()) << dup.status().ToString();
  EXPECT_EQ((*dup)->name(), "checkpoint");
  const int n = comm->world_size(), r = comm->rank();
  std::vector<int64_t> grad(1000, r + 1), ckpt(1000, r == n - 1 ? 42 : 0);
  // Rank 0 issues and waits on the duplicate first, the others on the parent first:
  // on a single communicator this order mismatch would deadlock.
  auto on_parent = [&] {
    EXPECT_TRUE(comm->AllReduceSync(grad.data(), 1000, DataType::kInt64, ReduceOp::kSum, {"grad"}).ok());
  };
  auto on_dup = [&] {
    EXPECT_TRUE((*dup)->BroadcastSync(ckpt.data(), 1000, DataType::kInt64, n - 1, {"ckpt"}).ok());
  };
  comm->set_default_deadline(kDeadline);
  (*dup)->set_default_deadline(kDeadline);
  if (r == 0) {
    auto h = (*dup)->Broadcast(ckpt.data(), 1000, DataType::kInt64, n - 1, {"ckpt"});
    on_parent();
    EXPECT_TRUE(h->Wait(kDeadline).ok());
  } else {
    auto h = comm->AllReduce(grad.data(), 1000, DataType::kInt64, ReduceOp::kSum, {"grad"});
    on_dup();
    EXPECT_TRUE(h->Wait(kDeadline).ok());
  }
  EXPECT_EQ(grad, std::vector<int64_t>(1000, n * (n + 1) / 2));
  EXPECT_EQ(ckpt, std::vector<int64_t>(1000, 42));
}

TEST(MpiCommunicator, BarrierAndZeroCountsComplete) {
  auto comm = MakeComm();
  EXPECT_TRUE(comm->BarrierSync({"barrier"}).ok());
  std::vector<int64_t> zeros(comm->world_size(), 0);
  EXPECT_TRUE(comm->AllGatherVSync(nullptr, nullptr, zeros, DataType::kUint8, {"z"}).ok());
  EXPECT_TRUE(comm->ReduceScatterSync(nullptr, nullptr, zeros, DataType::kUint8, ReduceOp::kSum, {"z"}).ok());
  EXPECT_TRUE(comm->AllGatherSync(nullptr, nullptr, 0, DataType::kFloat64, {"z"}).ok());
  EXPECT_TRUE(comm->BroadcastSync(nullptr, 0, DataType::kFloat64, comm->world_size() - 1, {"z"}).ok());
}

TEST(MpiCommunicator, Uint8AndFloat64MaxMin) {
  auto comm = MakeComm();
  const int n = comm->world_size(), r = comm->rank();
  std::vector<uint8_t> bytes(257);
  std::vector<double> doubles(257);
  for (int i = 0; i < 257; ++i) {
    bytes[i] = static_cast<uint8_t>((i + r) % 256);
    doubles[i] = -1.5 * (r + 1) * i;
  }
  ASSERT_TRUE(comm->AllReduceSync(bytes.data(), 257, DataType::kUint8, ReduceOp::kMax, {"u8"}).ok());
  ASSERT_TRUE(comm->AllReduceSync(doubles.data(), 257, DataType::kFloat64, ReduceOp::kMin, {"f64"}).ok());
  for (int i = 0; i < 257; ++i) {
    int want = 0;
    for (int q = 0; q < n; ++q) want = std::max(want, (i + q) % 256);
    EXPECT_EQ(bytes[i], want) << i;
    EXPECT_EQ(doubles[i], -1.5 * n * i) << i;
  }
}

}  // namespace
}  // namespace lockstep::comm
