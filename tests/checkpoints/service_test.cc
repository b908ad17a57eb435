// CheckpointService: the training loop pays only for the snapshot; the snapshot is
// the state at Submit time; at most one save in flight ("wait" policy).
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "checkpoints/checkpoint.h"
#include "tests/checkpoints/test_util.h"

namespace lockstep::ckpt {
namespace {

using testing::MakeState;
using testing::ScopedTempDir;

double MsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

TEST(CheckpointService, AsyncSubmitReturnsBeforePersistAndSnapshotsTheData) {
  ScopedTempDir tmp;
  // Three slices, each written in one delayed append: persisting takes >= 600 ms.
  auto slow = MakeFaultInjectingFileSystem(PosixFileSystem(), "write_delay_ms=200");
  ASSERT_TRUE(slow.ok());
  WriterOptions o;
  o.run_dir = tmp.path();
  o.fs = slow->get();
  auto service = CheckpointService::Create(o, /*async=*/true);
  ASSERT_TRUE(service.ok());
  auto s = MakeState(4, 10000);
  const auto original = s.buffers;

  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE((*service)->Submit(s.meta, testing::EvenSlices(s, 1, 0)).ok());
  const double submit_ms = MsSince(t0);
  // The loop goes on and changes its buffers right away.
  for (auto& [name, values] : s.buffers) std::fill(values.begin(), values.end(), -7.0f);
  EXPECT_LT(submit_ms, 300) << "Submit should not wait for the write";
  EXPECT_FALSE(PosixFileSystem()->Exists(tmp.path() + "/checkpoints/step-00000004"));

  ASSERT_TRUE((*service)->WaitIdle().ok());
  const ServiceStats st = (*service)->stats();
  EXPECT_EQ(st.saves, 1);
  EXPECT_EQ(st.bytes, 3 * 10000 * 4);
  EXPECT_GE(st.last_persist_ms, 600);
  EXPECT_LT(st.last_snapshot_ms, st.last_persist_ms);
  EXPECT_EQ(st.last_committed_dir, tmp.path() + "/checkpoints/step-00000004");

  auto reader = CheckpointReader::Open(st.last_committed_dir);
  ASSERT_TRUE(reader.ok());
  for (const auto& [name, values] : original) {
    std::vector<float> got(values.size());
    ASSERT_TRUE((*reader)->Read(name, 0, 10000, got.data()).ok());
    EXPECT_EQ(0, std::memcmp(got.data(), values.data(), values.size() * 4)) << name;
  }
}

TEST(CheckpointService, SecondSubmitWaitsForTheFirst) {
  ScopedTempDir tmp;
  auto slow = MakeFaultInjectingFileSystem(PosixFileSystem(), "write_delay_ms=100");
  ASSERT_TRUE(slow.ok());
  WriterOptions o;
  o.run_dir = tmp.path();
  o.fs = slow->get();
  auto service = CheckpointService::Create(o, true);
  ASSERT_TRUE(service.ok());
  auto a = MakeState(1), b = MakeState(2);
  ASSERT_TRUE((*service)->Submit(a.meta, testing::EvenSlices(a, 1, 0)).ok());
  ASSERT_TRUE((*service)->Submit(b.meta, testing::EvenSlices(b, 1, 0)).ok());
  EXPECT_GT((*service)->stats().last_wait_ms, 100);
  ASSERT_TRUE((*service)->WaitIdle().ok());
  EXPECT_EQ((*service)->stats().saves, 2);
  auto list = ListCheckpoints(tmp.path());
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->size(), 2u);
}

TEST(CheckpointService, SyncModePersistsInsideSubmit) {
  ScopedTempDir tmp;
  WriterOptions o;
  o.run_dir = tmp.path();
  auto service = CheckpointService::Create(o, /*async=*/false);
  ASSERT_TRUE(service.ok());
  auto s = MakeState(9);
  ASSERT_TRUE((*service)->Submit(s.meta, testing::EvenSlices(s, 1, 0)).ok());
  EXPECT_TRUE(VerifyCheckpoint(tmp.path() + "/checkpoints/step-00000009").ok());
  EXPECT_EQ((*service)->stats().saves, 1);
}

TEST(CheckpointService, FailureIsReportedByWaitIdle) {
  ScopedTempDir tmp;
  auto full = MakeFaultInjectingFileSystem(PosixFileSystem(), "enospc_after_bytes=10");
  ASSERT_TRUE(full.ok());
  WriterOptions o;
  o.run_dir = tmp.path();
  o.fs = full->get();
  auto service = CheckpointService::Create(o, true);
  ASSERT_TRUE(service.ok());
  auto s = MakeState(3);
  ASSERT_TRUE((*service)->Submit(s.meta, testing::EvenSlices(s, 1, 0)).ok());
  Status st = (*service)->WaitIdle();
  EXPECT_EQ(st.code(), StatusCode::kIoError);
  EXPECT_NE(st.message().find("No space left on device"), std::string::npos) << st.message();
  EXPECT_EQ((*service)->stats().failures, 1);
  EXPECT_EQ((*service)->stats().last_error, st.message());
}

TEST(CheckpointService, AsyncOnThreeRanks) {
  ScopedTempDir tmp;
  auto coords = MakeThreadCoordinators(3);
  auto states =
      std::vector<testing::TestState>{MakeState(10, 301), MakeState(20, 301), MakeState(30, 301)};
  std::vector<Status> results(3);
  std::vector<std::thread> threads;
  for (int r = 0; r < 3; ++r) {
    threads.emplace_back([&, r] {
      WriterOptions o;
      o.run_dir = tmp.path();
      o.coordinator = coords[r].get();
      o.retention.keep_last = 2;
      auto service = CheckpointService::Create(o, true);
      if (!service.ok()) {
        results[r] = service.status();
        return;
      }
      for (const auto& s : states) {
        Status st = (*service)->Submit(s.meta, testing::EvenSlices(s, 3, r));
        if (!st.ok()) results[r] = st;
      }
      Status last = (*service)->WaitIdle();
      if (results[r].ok()) results[r] = last;
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < 3; ++r) EXPECT_TRUE(results[r].ok()) << r << ": " << results[r].ToString();
  auto list = ListCheckpoints(tmp.path());
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[1].step, 30);
  EXPECT_TRUE(VerifyCheckpoint((*list)[1].path).ok());
}

}  // namespace
}  // namespace lockstep::ckpt
