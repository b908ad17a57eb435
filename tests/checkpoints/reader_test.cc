// CheckpointReader and verification: resharding onto another world size, and the
// defects a resume must survive (flipped byte, truncated manifest or shard, missing
// shard), each falling back to the previous checkpoint.
#include <gtest/gtest.h>

#include <cstring>

#include "checkpoints/checkpoint.h"
#include "checkpoints/manifest.h"
#include "tests/checkpoints/test_util.h"

namespace lockstep::ckpt {
namespace {

using testing::MakeState;
using testing::SaveOnRanks;
using testing::ScopedTempDir;

TEST(CheckpointReader, ReshardsFourRanksOntoThree) {
  ScopedTempDir tmp;
  auto s = MakeState(40, 1003);
  auto out = SaveOnRanks(tmp.path(), s, 4);
  ASSERT_TRUE(out[0].status.ok()) << out[0].status.ToString();
  auto reader = CheckpointReader::Open(out[0].path);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  for (const auto& [name, values] : s.buffers) {
    for (int r = 0; r < 3; ++r) {
      auto [b, e] = EvenSplit(static_cast<int64_t>(values.size()), 3, r);
      std::vector<float> got(e - b, -1.0f);
      ASSERT_TRUE((*reader)->Read(name, b, e, got.data()).ok()) << name << " rank " << r;
      EXPECT_EQ(0, std::memcmp(got.data(), values.data() + b, got.size() * 4))
          << name << " rank " << r;
    }
  }
}

TEST(CheckpointReader, RejectsRangesOutsideTheBuffer) {
  ScopedTempDir tmp;
  auto out = SaveOnRanks(tmp.path(), MakeState(1), 1);
  auto reader = CheckpointReader::Open(out[0].path);
  ASSERT_TRUE(reader.ok());
  float x[64];
  EXPECT_EQ((*reader)->Read("params", 0, 42, x).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*reader)->Read("nope", 0, 1, x).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE((*reader)->Read("params", 41, 41, x).ok());
}

// Two checkpoints (steps 10 and 20, two ranks); returns the newer's directory.
std::string TwoCheckpoints(const std::string& run_dir) {
  EXPECT_TRUE(SaveOnRanks(run_dir, MakeState(10, 500), 2)[0].status.ok());
  auto out = SaveOnRanks(run_dir, MakeState(20, 500), 2);
  EXPECT_TRUE(out[0].status.ok());
  return out[0].path;
}

void ExpectFallsBackToStep10(const std::string& run_dir, const std::string& why) {
  std::vector<std::string> warnings;
  auto latest = FindLatestValidCheckpoint(run_dir, &warnings);
  ASSERT_TRUE(latest.ok()) << latest.status().ToString();
  ASSERT_TRUE(latest->has_value());
  EXPECT_EQ(**latest, run_dir + "/checkpoints/step-00000010");
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("step-00000020"), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[0].find(why), std::string::npos) << warnings[0];
}

TEST(VerifyCheckpoint, FlippedByteNamesShardAndOffset) {
  ScopedTempDir tmp;
  const std::string dir = TwoCheckpoints(tmp.path());
  auto reader = CheckpointReader::Open(dir);
  ASSERT_TRUE(reader.ok());
  const ShardInfo& shard = (*reader)->shards()[1];
  const SegmentInfo& seg = shard.segments[1];  // rank 1's slice of opt.m
  testing::FlipByte(dir + "/" + shard.file, seg.file_offset + 17);

  Status s = VerifyCheckpoint(dir);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("shard-00001-of-00002.bin"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("byte offset " + std::to_string(seg.file_offset)), std::string::npos)
      << s.message();
  EXPECT_TRUE(VerifyCheckpoint(dir, /*checksums=*/false).ok());  // sizes are still right
  // A read that touches the segment fails too; one that does not still works.
  std::vector<float> buf(500);
  EXPECT_EQ((*reader)->Read("opt.m", 0, 500, buf.data()).code(), StatusCode::kDataLoss);
  EXPECT_TRUE((*reader)->Read("params", 0, 500, buf.data()).ok());
  ExpectFallsBackToStep10(tmp.path(), "checksum mismatch");
}

TEST(VerifyCheckpoint, TruncatedManifestFallsBack) {
  ScopedTempDir tmp;
  const std::string dir = TwoCheckpoints(tmp.path());
  std::string bytes = testing::ReadAll(dir + "/manifest.pb");
  testing::WriteAll(dir + "/manifest.pb", bytes.substr(0, bytes.size() / 2));
  Status s = VerifyCheckpoint(dir);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
  EXPECT_NE(s.message().find("manifest.pb"), std::string::npos) << s.message();
  ExpectFallsBackToStep10(tmp.path(), "manifest");
}

TEST(VerifyCheckpoint, EveryTruncationOfTheManifestIsRejected) {
  ScopedTempDir tmp;
  const std::string dir = TwoCheckpoints(tmp.path());
  const std::string bytes = testing::ReadAll(dir + "/manifest.pb");
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(ParseManifest(bytes.substr(0, n), "step-00000020").ok())
        << "prefix of " << n << " bytes";
  }
  EXPECT_TRUE(ParseManifest(bytes, "step-00000020").ok());
}

TEST(VerifyCheckpoint, MissingShardFallsBack) {
  ScopedTempDir tmp;
  const std::string dir = TwoCheckpoints(tmp.path());
  ASSERT_TRUE(PosixFileSystem()->RemoveAll(dir + "/shard-00000-of-00002.bin").ok());
  Status s = VerifyCheckpoint(dir);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("shard-00000-of-00002.bin"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("missing"), std::string::npos) << s.message();
  ExpectFallsBackToStep10(tmp.path(), "missing");
}

TEST(VerifyCheckpoint, TruncatedShardNamesTheOffset) {
  ScopedTempDir tmp;
  const std::string dir = TwoCheckpoints(tmp.path());
  const std::string path = dir + "/shard-00001-of-00002.bin";
  std::string bytes = testing::ReadAll(path);
  testing::WriteAll(path, bytes.substr(0, 1000));
  Status s = VerifyCheckpoint(dir);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("shard-00001-of-00002.bin"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("truncated at byte offset 1000"), std::string::npos) << s.message();
}

TEST(VerifyCheckpoint, DirectoryWithoutManifestIsNotACheckpoint) {
  ScopedTempDir tmp;
  const std::string dir = TwoCheckpoints(tmp.path());
  ASSERT_TRUE(PosixFileSystem()->RemoveAll(dir + "/manifest.pb").ok());
  EXPECT_EQ(VerifyCheckpoint(dir).code(), StatusCode::kNotFound);
  ExpectFallsBackToStep10(tmp.path(), "no manifest.pb");
}

TEST(VerifyCheckpoint, RenamedDirectoryDoesNotMatchItsStep) {
  ScopedTempDir tmp;
  const std::string dir = TwoCheckpoints(tmp.path());
  const std::string moved = tmp.path() + "/checkpoints/step-00000030";
  ASSERT_TRUE(PosixFileSystem()->Rename(dir, moved).ok());
  Status s = VerifyCheckpoint(moved);
  EXPECT_NE(s.message().find("does not match directory"), std::string::npos) << s.message();
}

TEST(FindLatestValidCheckpoint, NoneIsEmptyNotAnError) {
  ScopedTempDir tmp;
  std::vector<std::string> warnings;
  auto latest = FindLatestValidCheckpoint(tmp.path(), &warnings);
  ASSERT_TRUE(latest.ok());
  EXPECT_FALSE(latest->has_value());
  EXPECT_TRUE(warnings.empty());
}

TEST(CheckCompatible, NamesTheArchitectureDifference) {
  CheckpointMeta saved = testing::MakeMeta(1), current = testing::MakeMeta(1);
  std::vector<std::string> warnings;
  EXPECT_TRUE(CheckCompatible(saved, current, &warnings).ok());
  EXPECT_TRUE(warnings.empty());
  current.hyperparameters["lr"] = 0.01;
  EXPECT_TRUE(CheckCompatible(saved, current, &warnings).ok());
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("lr changed from 0.001 to 0.01"), std::string::npos) << warnings[0];
  current.architecture = "Dense(3->4)\nTanh\nDense(4->5)\n";
  Status s = CheckCompatible(saved, current, &warnings);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("line 2"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("'ReLU'"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("'Tanh'"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace lockstep::ckpt
