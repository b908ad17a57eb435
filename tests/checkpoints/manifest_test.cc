// Manifest validation: the rules that keep a hostile or damaged manifest from
// pointing outside its directory or describing data that does not add up.
#include "checkpoints/manifest.h"

#include <gtest/gtest.h>

#include "checkpoints/checkpoint.h"
#include "tests/checkpoints/test_util.h"

namespace lockstep::ckpt {
namespace {

// A valid two-rank manifest: "params" (41 elements) split 21 + 20, no optimizer.
proto::Manifest ValidManifest() {
  CheckpointMeta meta = testing::MakeMeta(20);
  meta.buffers.resize(1);
  meta.world_size = 2;
  std::vector<ShardInfo> shards = {
      {"shard-00000-of-00002.bin", 0, 84, {{"params", 0, 84, 0, 1}}},
      {"shard-00001-of-00002.bin", 1, 80, {{"params", 0, 80, 21, 2}}},
  };
  return ManifestToProto(meta, shards);
}

void ExpectInvalid(const proto::Manifest& m, const std::string& why) {
  Status s = ValidateManifest(m, "step-00000020");
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << why;
  EXPECT_NE(s.message().find(why), std::string::npos) << s.message();
}

TEST(ValidateManifest, AcceptsAValidManifest) {
  EXPECT_TRUE(ValidateManifest(ValidManifest(), "step-00000020").ok());
}

TEST(ValidateManifest, RejectsShardNamesThatLeaveTheDirectory) {
  for (const std::string name : {"../x", "/etc/passwd", "../shard-00000-of-00002.bin",
                                 "sub/shard-00000-of-00002.bin", "shard-0000/-of-00002.bin",
                                 "shard-00000-of-00002.bin/..", "", "shard-00000-of-00002.bin\n"}) {
    proto::Manifest m = ValidManifest();
    m.mutable_shards(0)->set_file(name);
    ExpectInvalid(m, "is not of the form");
  }
}

TEST(ValidateManifest, RejectsShardOfAnotherWorldOrRank) {
  proto::Manifest m = ValidManifest();
  m.mutable_shards(1)->set_file("shard-00001-of-00003.bin");
  ExpectInvalid(m, "does not match rank");
  m = ValidManifest();
  m.mutable_shards(1)->set_file("shard-00000-of-00002.bin");
  ExpectInvalid(m, "does not match rank");
  m = ValidManifest();
  m.mutable_shards()->RemoveLast();
  ExpectInvalid(m, "1 shards for world size 2");
}

TEST(ValidateManifest, RejectsGapsOverlapsAndOutOfBounds) {
  proto::Manifest m = ValidManifest();
  m.mutable_shards(1)->mutable_segments(0)->set_element_offset(22);
  ExpectInvalid(m, "lies outside buffer");
  m = ValidManifest();
  m.mutable_shards(1)->mutable_segments(0)->set_length(76);
  ExpectInvalid(m, "covered up to element 40 of 41");
  m = ValidManifest();
  m.mutable_shards(0)->mutable_segments(0)->set_length(80);  // 20 elements: gap at 20
  m.mutable_shards(0)->set_size(80);
  ExpectInvalid(m, "gap at element 20");
  m = ValidManifest();
  m.mutable_shards(1)->mutable_segments(0)->set_element_offset(20);
  m.mutable_shards(1)->mutable_segments(0)->set_length(80);
  ExpectInvalid(m, "overlap at element 20");
  m = ValidManifest();
  m.mutable_shards(0)->set_size(83);
  ExpectInvalid(m, "lies outside the shard's 83 bytes");
  m = ValidManifest();
  m.mutable_shards(0)->mutable_segments(0)->set_length(6);
  ExpectInvalid(m, "has length 6");
  m = ValidManifest();
  m.mutable_shards(0)->mutable_segments(0)->set_buffer("opt.m");
  ExpectInvalid(m, "unknown buffer 'opt.m'");
  m = ValidManifest();
  m.mutable_shards(0)->mutable_segments(0)->set_file_offset(-4);
  ExpectInvalid(m, "lies outside the shard");
}

TEST(ValidateManifest, RejectsOverlappingBytesInOneShard) {
  proto::Manifest m = ValidManifest();
  // Rank 0 claims two segments in the same bytes.
  auto* seg = m.mutable_shards(0)->mutable_segments(0);
  seg->set_length(40);
  auto* second = m.mutable_shards(0)->add_segments();
  second->set_buffer("params");
  second->set_file_offset(0);
  second->set_length(44);
  second->set_element_offset(10);
  ExpectInvalid(m, "overlapping segments");
}

TEST(ValidateManifest, RejectsBadLayouts) {
  proto::Manifest m = ValidManifest();
  m.mutable_buffers(0)->mutable_tensors(3)->set_offset(37);  // b2 (5) would end at 42 > 41
  ExpectInvalid(m, "lies outside its buffer");
  m = ValidManifest();
  m.mutable_buffers(0)->mutable_tensors(0)->set_shape(0, -3);
  ExpectInvalid(m, "negative dimension");
  m = ValidManifest();
  m.mutable_buffers(0)->mutable_tensors(0)->set_shape(0, int64_t{1} << 62);
  ExpectInvalid(m, "larger than its buffer");
  m = ValidManifest();
  m.mutable_buffers(0)->set_dtype("bf16");
  ExpectInvalid(m, "dtype 'bf16'");
  m = ValidManifest();
  *m.add_buffers() = m.buffers(0);
  ExpectInvalid(m, "appears twice");
  m = ValidManifest();
  m.set_format_version(2);
  ExpectInvalid(m, "format_version 2");
  m = ValidManifest();
  m.set_world_size(0);
  ExpectInvalid(m, "world_size 0");
}

TEST(ValidateManifest, StepMustMatchDirectory) {
  Status s = ValidateManifest(ValidManifest(), "step-00000021");
  EXPECT_NE(s.message().find("does not match directory"), std::string::npos) << s.message();
}

TEST(CheckpointReader, RefusesAManifestPointingOutside) {
  testing::ScopedTempDir tmp;
  const std::string dir = tmp.path() + "/checkpoints/step-00000020";
  ASSERT_TRUE(PosixFileSystem()->CreateDirs(dir).ok());
  for (const std::string name : {"../x", "/etc/passwd"}) {
    proto::Manifest m = ValidManifest();
    m.mutable_shards(0)->set_file(name);
    testing::WriteAll(dir + "/manifest.pb", m.SerializeAsString());
    auto reader = CheckpointReader::Open(dir);
    ASSERT_FALSE(reader.ok());
    EXPECT_NE(reader.status().message().find("'" + name + "' is not of the form"),
              std::string::npos)
        << reader.status().message();
  }
}

TEST(FileNames, ParseAndFormat) {
  int r = -1, w = -1;
  EXPECT_TRUE(ParseShardFileName(ShardFileName(3, 8), &r, &w));
  EXPECT_EQ(r, 3);
  EXPECT_EQ(w, 8);
  int64_t step = -1;
  EXPECT_TRUE(ParseStepDirName(StepDirName(42), &step));
  EXPECT_EQ(step, 42);
  EXPECT_TRUE(ParseStepDirName("step-123456789", &step));
  EXPECT_EQ(step, 123456789);
  EXPECT_FALSE(ParseStepDirName("step-0000042", &step));
  EXPECT_FALSE(ParseStepDirName("step-00000042.tmp", &step));
}

}  // namespace
}  // namespace lockstep::ckpt
