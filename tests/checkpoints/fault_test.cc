// Faults during a save, injected through the filesystem seam: every rank gets the
// error, the previous checkpoint stays intact and newest, and no .tmp is left.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <thread>

#include "checkpoints/checkpoint.h"
#include "tests/checkpoints/test_util.h"

namespace lockstep::ckpt {
namespace {

using testing::MakeState;
using testing::SaveOnRanks;
using testing::ScopedTempDir;

void ExpectOnlyStep10Remains(const std::string& run_dir) {
  auto names = PosixFileSystem()->ListDir(run_dir + "/checkpoints");
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, (std::vector<std::string>{"step-00000010"}));
  std::vector<std::string> warnings;
  auto latest = FindLatestValidCheckpoint(run_dir, &warnings);
  ASSERT_TRUE(latest.ok() && latest->has_value());
  EXPECT_EQ(**latest, run_dir + "/checkpoints/step-00000010");
  EXPECT_TRUE(warnings.empty());
}

TEST(SaveFaults, DiskFullOnOneRankFailsEveryRank) {
  ScopedTempDir tmp;
  ASSERT_TRUE(SaveOnRanks(tmp.path(), MakeState(10, 4000), 2)[0].status.ok());
  auto full = MakeFaultInjectingFileSystem(PosixFileSystem(), "enospc_after_bytes=1000");
  ASSERT_TRUE(full.ok());
  auto out = SaveOnRanks(tmp.path(), MakeState(20, 4000), 2, {},
                         [&](int r) { return r == 1 ? full->get() : PosixFileSystem(); });
  for (int r = 0; r < 2; ++r) {
    ASSERT_FALSE(out[r].status.ok()) << "rank " << r;
    EXPECT_EQ(out[r].status.code(), StatusCode::kIoError);
    const std::string& msg = out[r].status.message();
    EXPECT_NE(msg.find("rank 1: No space left on device writing"), std::string::npos) << msg;
    EXPECT_NE(msg.find("shard-00001-of-00002.bin"), std::string::npos) << msg;
    EXPECT_NE(msg.find("step 20"), std::string::npos) << msg;
  }
  ExpectOnlyStep10Remains(tmp.path());
}

TEST(SaveFaults, FailedCommitRenameLeavesNoTemporary) {
  ScopedTempDir tmp;
  ASSERT_TRUE(SaveOnRanks(tmp.path(), MakeState(10), 3)[0].status.ok());
  auto bad = MakeFaultInjectingFileSystem(PosixFileSystem(), "fail_rename");
  ASSERT_TRUE(bad.ok());
  // Only rank 0 renames (the manifest and the directory).
  auto out = SaveOnRanks(tmp.path(), MakeState(20), 3, {},
                         [&](int r) { return r == 0 ? bad->get() : PosixFileSystem(); });
  for (int r = 0; r < 3; ++r) {
    ASSERT_FALSE(out[r].status.ok());
    EXPECT_NE(out[r].status.message().find("rank 0: Input/output error renaming"),
              std::string::npos)
        << out[r].status.message();
  }
  ExpectOnlyStep10Remains(tmp.path());
}

TEST(SaveFaults, FailedFsyncIsReported) {
  ScopedTempDir tmp;
  ASSERT_TRUE(SaveOnRanks(tmp.path(), MakeState(10), 2)[0].status.ok());
  auto bad = MakeFaultInjectingFileSystem(PosixFileSystem(), "fail_fsync");
  ASSERT_TRUE(bad.ok());
  auto out = SaveOnRanks(tmp.path(), MakeState(20), 2, {},
                         [&](int r) { return r == 1 ? bad->get() : PosixFileSystem(); });
  ASSERT_FALSE(out[0].status.ok());
  EXPECT_NE(out[0].status.message().find("rank 1: Input/output error syncing"), std::string::npos)
      << out[0].status.message();
  ExpectOnlyStep10Remains(tmp.path());
}

TEST(SaveFaults, InvalidInputOnOneRankFailsEveryRank) {
  ScopedTempDir tmp;
  auto s = MakeState(3);
  auto outcomes = testing::SaveOnRanks(tmp.path(), s, 2, {}, nullptr, [](int r, std::vector<ShardSlice>* slices) {
    if (r == 1) (*slices)[0].buffer = "nonexistent";
  });
  for (int r = 0; r < 2; ++r) {
    const Status& st = outcomes[r].status;
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(st.message().find("rank 1: slice of unknown buffer 'nonexistent'"), std::string::npos)
        << st.message();
  }
  EXPECT_FALSE(PosixFileSystem()->Exists(tmp.path() + "/checkpoints/step-00000003.tmp"));
}

TEST(SaveFaults, MissingPeerTimesOut) {
  ScopedTempDir tmp;
  auto coords = MakeThreadCoordinators(2);
  auto s = MakeState(1);
  WriterOptions o;
  o.run_dir = tmp.path();
  o.coordinator = coords[0].get();
  o.deadline = std::chrono::milliseconds(200);
  auto saved = SaveCheckpoint(o, s.meta, testing::EvenSlices(s, 2, 0));  // rank 1 never comes
  ASSERT_FALSE(saved.ok());
  EXPECT_EQ(saved.status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_NE(saved.status().message().find("1 rank(s) did not arrive"), std::string::npos)
      << saved.status().message();
}

TEST(FaultSpec, ParsesAndRejects) {
  EXPECT_TRUE(MakeFaultInjectingFileSystem(PosixFileSystem(), "").ok());
  EXPECT_TRUE(MakeFaultInjectingFileSystem(PosixFileSystem(), "write_delay_ms=5,fail_rename").ok());
  auto bad = MakeFaultInjectingFileSystem(PosixFileSystem(), "enospc_after_bytes=lots");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("enospc_after_bytes"), std::string::npos);
  EXPECT_FALSE(MakeFaultInjectingFileSystem(PosixFileSystem(), "explode").ok());
}

TEST(FaultSpec, EnvironmentSelectsFaultsPerRank) {
  ScopedTempDir tmp;
  ::setenv(kFaultEnvVar, "enospc_after_bytes=3,rank=1", 1);
  auto rank0 = MakeFileSystemFromEnv(0);
  auto rank1 = MakeFileSystemFromEnv(1);
  ::unsetenv(kFaultEnvVar);
  ASSERT_TRUE(rank0.ok() && rank1.ok());
  auto f0 = (*rank0)->NewWritableFile(tmp.path() + "/a");
  auto f1 = (*rank1)->NewWritableFile(tmp.path() + "/b");
  ASSERT_TRUE(f0.ok() && f1.ok());
  EXPECT_TRUE((*f0)->Append("12345", 5).ok());
  Status s = (*f1)->Append("12345", 5);
  EXPECT_NE(s.message().find("No space left on device"), std::string::npos) << s.ToString();
  EXPECT_TRUE((*f1)->Close().ok());
  EXPECT_EQ(testing::ReadAll(tmp.path() + "/b"), "123");  // what fitted was written
}

}  // namespace
}  // namespace lockstep::ckpt
