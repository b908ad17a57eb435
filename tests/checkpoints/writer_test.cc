// SaveCheckpoint: round trips on thread ranks, the directory layout, retention,
// stale temporaries and re-saving a committed step.
#include <gtest/gtest.h>

#include <cstring>
#include <thread>

#include "checkpoints/checkpoint.h"
#include "tests/checkpoints/test_util.h"

namespace lockstep::ckpt {
namespace {

using testing::MakeState;
using testing::SaveOnRanks;
using testing::ScopedTempDir;

void ExpectReadsBack(const std::string& dir, const testing::TestState& s) {
  auto reader = CheckpointReader::Open(dir);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  for (const auto& [name, values] : s.buffers) {
    std::vector<float> got(values.size(), -1.0f);
    ASSERT_TRUE((*reader)->Read(name, 0, static_cast<int64_t>(got.size()), got.data()).ok());
    EXPECT_EQ(0, std::memcmp(got.data(), values.data(), values.size() * 4)) << name;
  }
}

TEST(SaveCheckpoint, RoundTripOneRank) {
  ScopedTempDir tmp;
  auto s = MakeState(7);
  WriterOptions o;
  o.run_dir = tmp.path();
  auto saved = SaveCheckpoint(o, s.meta, testing::EvenSlices(s, 1, 0));
  ASSERT_TRUE(saved.ok()) << saved.status().ToString();
  EXPECT_EQ(*saved, tmp.path() + "/checkpoints/step-00000007");
  EXPECT_TRUE(VerifyCheckpoint(*saved).ok());
  ExpectReadsBack(*saved, s);

  auto reader = CheckpointReader::Open(*saved);
  ASSERT_TRUE(reader.ok());
  const CheckpointMeta& m = (*reader)->meta();
  EXPECT_EQ(m.step, 7);
  EXPECT_EQ(m.epoch, s.meta.epoch);
  EXPECT_EQ(m.sample_position, s.meta.sample_position);
  EXPECT_EQ(m.world_size, 1);
  EXPECT_EQ(m.recipe_text, s.meta.recipe_text);
  EXPECT_EQ(m.recipe_hash, s.meta.recipe_hash);
  EXPECT_EQ(m.architecture, s.meta.architecture);
  EXPECT_EQ(m.optimizer_kind, "adam");
  EXPECT_EQ(m.hyperparameters, s.meta.hyperparameters);
  EXPECT_EQ(m.schedule_state, s.meta.schedule_state);
  EXPECT_EQ(m.extras, s.meta.extras);
  EXPECT_EQ(m.lockstep_version, LOCKSTEP_VERSION);
  EXPECT_GT(m.wall_time, 1.6e9);  // filled with "now"
  ASSERT_EQ(m.buffers.size(), 3u);
  EXPECT_EQ(m.buffers[0].tensors.size(), 4u);
  EXPECT_EQ(m.buffers[0].tensors[2].shape, (std::vector<int64_t>{4, 5}));
  std::vector<float> w2;
  ASSERT_TRUE((*reader)->ReadTensor("params", "w2", &w2).ok());
  EXPECT_EQ(0, std::memcmp(w2.data(), s.buffers["params"].data() + 16, 20 * 4));
}

TEST(SaveCheckpoint, RoundTripThreeRanks) {
  ScopedTempDir tmp;
  auto s = MakeState(12, 1000);
  auto out = SaveOnRanks(tmp.path(), s, 3);
  for (int r = 0; r < 3; ++r) {
    ASSERT_TRUE(out[r].status.ok()) << "rank " << r << ": " << out[r].status.ToString();
    EXPECT_EQ(out[r].path, out[0].path);
  }
  for (int r = 0; r < 3; ++r) {
    EXPECT_TRUE(PosixFileSystem()->Exists(out[0].path + "/" + ShardFileName(r, 3))) << r;
  }
  EXPECT_TRUE(VerifyCheckpoint(out[0].path).ok());
  ExpectReadsBack(out[0].path, s);
  auto reader = CheckpointReader::Open(out[0].path);
  ASSERT_TRUE(reader.ok());
  EXPECT_EQ((*reader)->meta().world_size, 3);
  EXPECT_EQ((*reader)->meta().rng_states,
            (std::vector<std::string>{"rng-of-rank-0", "rng-of-rank-1", "rng-of-rank-2"}));
  EXPECT_FALSE(PosixFileSystem()->Exists(out[0].path + ".tmp"));
}

TEST(SaveCheckpoint, LargeSlicesAreCutIntoSegments) {
  ScopedTempDir tmp;
  const int64_t n = kMaxSegmentBytes / 4 * 2 + 5;  // three segments per rank at world 1
  testing::TestState s;
  s.meta = testing::MakeMeta(1);
  s.meta.buffers = {{"params", n, "f32", {}}};
  s.buffers["params"] = testing::MakeValues(n, 3);
  WriterOptions o;
  o.run_dir = tmp.path();
  auto saved = SaveCheckpoint(o, s.meta, testing::EvenSlices(s, 1, 0));
  ASSERT_TRUE(saved.ok()) << saved.status().ToString();
  auto reader = CheckpointReader::Open(*saved);
  ASSERT_TRUE(reader.ok());
  EXPECT_EQ((*reader)->shards()[0].segments.size(), 3u);
  // A range straddling a segment boundary.
  const int64_t b = kMaxSegmentBytes / 4 - 3;
  std::vector<float> got(10);
  ASSERT_TRUE((*reader)->Read("params", b, b + 10, got.data()).ok());
  EXPECT_EQ(0, std::memcmp(got.data(), s.buffers["params"].data() + b, 40));
}

TEST(SaveCheckpoint, SlicesThatDoNotTileFailOnEveryRank) {
  ScopedTempDir tmp;
  auto s = MakeState(3, 100);
  auto outcomes = testing::SaveOnRanks(tmp.path(), s, 2, {}, nullptr, [](int r, std::vector<ShardSlice>* slices) {
    if (r == 1) (*slices)[0].begin += 1;  // leaves a gap in "params"
  });
  for (int r = 0; r < 2; ++r) {
    const Status& st = outcomes[r].status;
    EXPECT_FALSE(st.ok());
    EXPECT_NE(st.message().find("gap"), std::string::npos) << st.message();
  }
  EXPECT_FALSE(PosixFileSystem()->Exists(tmp.path() + "/checkpoints/step-00000003.tmp"));
  EXPECT_FALSE(PosixFileSystem()->Exists(tmp.path() + "/checkpoints/step-00000003"));
}

TEST(SaveCheckpoint, RetentionKeepsLastKAndEveryMth) {
  ScopedTempDir tmp;
  RetentionPolicy keep{2, 4};
  for (int64_t step = 1; step <= 10; ++step) {
    auto out = SaveOnRanks(tmp.path(), MakeState(step), 2, keep);
    ASSERT_TRUE(out[0].status.ok()) << out[0].status.ToString();
  }
  auto list = ListCheckpoints(tmp.path());
  ASSERT_TRUE(list.ok());
  std::vector<int64_t> steps;
  for (const auto& e : *list) steps.push_back(e.step);
  EXPECT_EQ(steps, (std::vector<int64_t>{4, 8, 9, 10}));
}

TEST(SaveCheckpoint, RetentionNeverDeletesTheCheckpointJustSaved) {
  ScopedTempDir tmp;
  RetentionPolicy keep{1, 0};
  ASSERT_TRUE(SaveOnRanks(tmp.path(), MakeState(20), 1, keep)[0].status.ok());
  // A run resumed from an older checkpoint saves step 15 while step 20 exists.
  auto out = SaveOnRanks(tmp.path(), MakeState(15), 1, keep);
  ASSERT_TRUE(out[0].status.ok());
  EXPECT_TRUE(VerifyCheckpoint(out[0].path).ok());
}

TEST(SaveCheckpoint, ResavingACommittedStepReplacesIt) {
  ScopedTempDir tmp;
  ASSERT_TRUE(SaveOnRanks(tmp.path(), MakeState(5, 41, 0), 2)[0].status.ok());
  auto again = MakeState(5, 41, 7);  // same step, other values and world size
  auto out = SaveOnRanks(tmp.path(), again, 3);
  ASSERT_TRUE(out[0].status.ok()) << out[0].status.ToString();
  EXPECT_TRUE(VerifyCheckpoint(out[0].path).ok());
  ExpectReadsBack(out[0].path, again);
  auto names = PosixFileSystem()->ListDir(tmp.path() + "/checkpoints");
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, (std::vector<std::string>{"step-00000005"}));
}

TEST(RemoveStaleTemporaries, RemovesOnlyTmpDirectories) {
  ScopedTempDir tmp;
  ASSERT_TRUE(SaveOnRanks(tmp.path(), MakeState(1), 1)[0].status.ok());
  FileSystem* fs = PosixFileSystem();
  const std::string dir = tmp.path() + "/checkpoints";
  ASSERT_TRUE(fs->CreateDirs(dir + "/step-00000002.tmp").ok());
  ASSERT_TRUE(
      fs->WriteFileAtomically(dir + "/step-00000002.tmp/shard-00000-of-00001.bin", "junk").ok());
  ASSERT_TRUE(fs->CreateDirs(dir + "/step-00000001.old.tmp").ok());
  auto listed = ListCheckpoints(tmp.path());
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);  // *.tmp are never checkpoints
  ASSERT_TRUE(RemoveStaleTemporaries(tmp.path()).ok());
  auto names = fs->ListDir(dir);
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, (std::vector<std::string>{"step-00000001"}));
}

TEST(ListCheckpoints, MissingRunDirIsEmpty) {
  auto list = ListCheckpoints("/nonexistent/lockstep-run");
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
}

TEST(EvenSplit, CoversTheRangeWithoutGaps) {
  int64_t next = 0;
  for (int r = 0; r < 7; ++r) {
    auto [b, e] = EvenSplit(100, 7, r);
    EXPECT_EQ(b, next);
    EXPECT_GE(e - b, 14);
    EXPECT_LE(e - b, 15);
    next = e;
  }
  EXPECT_EQ(next, 100);
}

}  // namespace
}  // namespace lockstep::ckpt
