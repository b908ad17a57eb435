// ReadIdxFile on crafted files: round trips (plain, gzip, gzip detected by magic
// not by name) and each defect, asserting the code and that the message names
// the file and the defect.
#include "runtime/data/idx_reader.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "tests/data/idx_test_util.h"

namespace lockstep {
namespace data {
namespace {

using testing::IdxBytes;
using testing::PatternPayload;
using testing::ScratchDir;
using testing::WriteGzip;
using testing::WritePlain;

::testing::AssertionResult Mentions(const Status& s, std::initializer_list<std::string> words) {
  for (const std::string& w : words) {
    if (s.message().find(w) == std::string::npos) {
      return ::testing::AssertionFailure()
             << "message \"" << s.message() << "\" lacks \"" << w << "\"";
    }
  }
  return ::testing::AssertionSuccess();
}

TEST(IdxReader, PlainRoundTrip) {
  ScratchDir dir;
  std::vector<uint8_t> payload = PatternPayload(2 * 3 * 4);
  std::string path = dir.File("a.idx");
  WritePlain(path, IdxBytes(0x08, {2, 3, 4}, payload));
  Result<IdxArray> r = ReadIdxFile(path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->element_type, 0x08);
  EXPECT_EQ(r->dims, (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(r->bytes, payload);
}

TEST(IdxReader, GzipRoundTripDetectedByMagicNotName) {
  ScratchDir dir;
  std::vector<uint8_t> payload = PatternPayload(70000, 3);  // several inflate output chunks
  std::string path = dir.File("no_extension");
  WriteGzip(path, IdxBytes(0x08, {70000}, payload));
  ASSERT_EQ(testing::ReadAll(path)[0], 0x1f);  // really compressed
  Result<IdxArray> r = ReadIdxFile(path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->dims, (std::vector<int64_t>{70000}));
  EXPECT_EQ(r->bytes, payload);
}

TEST(IdxReader, PlainFileNamedGzIsReadAsPlain) {
  ScratchDir dir;
  std::vector<uint8_t> payload = PatternPayload(5);
  std::string path = dir.File("labels.gz");
  WritePlain(path, IdxBytes(0x08, {5}, payload));
  Result<IdxArray> r = ReadIdxFile(path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->bytes, payload);
}

TEST(IdxReader, MissingFileIsNotFound) {
  ScratchDir dir;
  std::string path = dir.File("absent.idx");
  Result<IdxArray> r = ReadIdxFile(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(Mentions(r.status(), {path, "does not exist"}));
}

TEST(IdxReader, DirectoryIsRejected) {
  ScratchDir dir;
  Result<IdxArray> r = ReadIdxFile(dir.path());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Mentions(r.status(), {dir.path(), "directory"}));
}

TEST(IdxReader, TruncatedPayloadNamesExpectedAndActualBytes) {
  ScratchDir dir;
  std::string path = dir.File("short.idx");
  WritePlain(path, IdxBytes(0x08, {4, 5}, PatternPayload(17)));
  Result<IdxArray> r = ReadIdxFile(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Mentions(r.status(), {path, "truncated payload", "expected 20 bytes", "got 17"}));
}

TEST(IdxReader, TruncatedPayloadInsideValidGzip) {
  ScratchDir dir;
  std::string path = dir.File("short.idx.gz");
  WriteGzip(path, IdxBytes(0x08, {10, 10}, PatternPayload(99)));
  Result<IdxArray> r = ReadIdxFile(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Mentions(r.status(), {path, "truncated payload", "expected 100 bytes", "got 99"}));
}

TEST(IdxReader, TruncatedHeaderMissingDimensions) {
  ScratchDir dir;
  std::string path = dir.File("hdr.idx");
  std::vector<uint8_t> bytes = IdxBytes(0x08, {7, 8, 9}, {});
  bytes.resize(4 + 4 + 2);  // magic, one dim and half of the second
  WritePlain(path, bytes);
  Result<IdxArray> r = ReadIdxFile(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Mentions(r.status(), {path, "truncated header", "10 bytes", "expected 16"}));
}

TEST(IdxReader, TruncatedHeaderShorterThanMagic) {
  ScratchDir dir;
  std::string path = dir.File("tiny.idx");
  WritePlain(path, {0, 0});
  Result<IdxArray> r = ReadIdxFile(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Mentions(r.status(), {path, "truncated header", "2 bytes"}));
}

TEST(IdxReader, WrongMagic) {
  ScratchDir dir;
  std::string path = dir.File("magic.idx");
  std::vector<uint8_t> bytes = IdxBytes(0x08, {3}, PatternPayload(3));
  bytes[0] = 0x50;
  bytes[1] = 0x4b;  // "PK": a zip file, say
  WritePlain(path, bytes);
  Result<IdxArray> r = ReadIdxFile(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Mentions(r.status(), {path, "bad magic", "50 4b", "expected 00 00"}));
}

TEST(IdxReader, UnsupportedElementType) {
  ScratchDir dir;
  std::string path = dir.File("float.idx");
  WritePlain(path, IdxBytes(0x0D, {2}, PatternPayload(8)));  // 0x0D: float32 in IDX
  Result<IdxArray> r = ReadIdxFile(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Mentions(r.status(), {path, "unsupported element type 0x0d", "0x08"}));
}

TEST(IdxReader, DimensionCountOutOfRange) {
  ScratchDir dir;
  std::string path = dir.File("rank5.idx");
  WritePlain(path, IdxBytes(0x08, {1, 1, 1, 1, 1}, PatternPayload(1)));
  Result<IdxArray> r = ReadIdxFile(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Mentions(r.status(), {path, "dimension count 5", "1..4"}));
}

TEST(IdxReader, ZeroDimension) {
  ScratchDir dir;
  std::string path = dir.File("zero.idx");
  WritePlain(path, IdxBytes(0x08, {3, 0}, {}));
  Result<IdxArray> r = ReadIdxFile(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Mentions(r.status(), {path, "dimension 1 is 0"}));
}

TEST(IdxReader, TrailingBytes) {
  ScratchDir dir;
  std::string path = dir.File("long.idx");
  WritePlain(path, IdxBytes(0x08, {2, 12}, PatternPayload(27)));
  Result<IdxArray> r = ReadIdxFile(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Mentions(r.status(), {path, "trailing bytes", "expected 24", "got 27", "3 extra"}));
}

TEST(IdxReader, CorruptGzipStream) {
  ScratchDir dir;
  std::string good = dir.File("good.gz");
  WriteGzip(good, IdxBytes(0x08, {4000}, PatternPayload(4000, 9)));
  std::vector<uint8_t> bytes = testing::ReadAll(good);
  ASSERT_GT(bytes.size(), 40u);
  for (size_t i = bytes.size() / 2; i < bytes.size() / 2 + 8; ++i) bytes[i] ^= 0xA5;
  std::string path = dir.File("corrupt.gz");
  WritePlain(path, bytes);
  Result<IdxArray> r = ReadIdxFile(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Mentions(r.status(), {path, "corrupt gzip"}));
}

TEST(IdxReader, TruncatedGzipStream) {
  ScratchDir dir;
  std::string good = dir.File("good.gz");
  WriteGzip(good, IdxBytes(0x08, {4000}, PatternPayload(4000, 5)));
  std::vector<uint8_t> bytes = testing::ReadAll(good);
  bytes.resize(bytes.size() / 2);
  std::string path = dir.File("cut.gz");
  WritePlain(path, bytes);
  Result<IdxArray> r = ReadIdxFile(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Mentions(r.status(), {path, "corrupt gzip", "ends early"}));
}

TEST(IdxReader, GarbageAfterGzipStream) {
  ScratchDir dir;
  std::string path = dir.File("tail.gz");
  WriteGzip(path, IdxBytes(0x08, {3}, PatternPayload(3)));
  std::vector<uint8_t> bytes = testing::ReadAll(path);
  bytes.insert(bytes.end(), {1, 2, 3, 4, 5});
  WritePlain(path, bytes);
  Result<IdxArray> r = ReadIdxFile(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Mentions(r.status(), {path, "5 trailing bytes after the gzip stream"}));
}

TEST(IdxReader, ConcatenatedGzipMembersAreOneStream) {
  // `cat a.gz b.gz` is a valid gzip file whose content is a + b.
  ScratchDir dir;
  std::vector<uint8_t> all = IdxBytes(0x08, {6, 2}, PatternPayload(12, 4));
  std::vector<uint8_t> head(all.begin(), all.begin() + 9), tail(all.begin() + 9, all.end());
  WriteGzip(dir.File("a.gz"), head);
  WriteGzip(dir.File("b.gz"), tail);
  std::vector<uint8_t> joined = testing::ReadAll(dir.File("a.gz"));
  std::vector<uint8_t> b = testing::ReadAll(dir.File("b.gz"));
  joined.insert(joined.end(), b.begin(), b.end());
  std::string path = dir.File("joined.gz");
  WritePlain(path, joined);
  Result<IdxArray> r = ReadIdxFile(path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->dims, (std::vector<int64_t>{6, 2}));
  EXPECT_EQ(r->bytes, PatternPayload(12, 4));
}

}  // namespace
}  // namespace data
}  // namespace lockstep
