// safetensors export: read back with our reader always, and with the Python
// `safetensors` library when it is installed (scripts/setup.sh installs it when it
// can); the reader's checks on hand-written malformed headers.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

#include "checkpoints/checkpoint.h"
#include "tests/checkpoints/test_util.h"

namespace lockstep::ckpt {
namespace {

using testing::ScopedTempDir;

std::string SaveParams(const std::string& run_dir, int world) {
  auto out = testing::SaveOnRanks(run_dir, testing::MakeState(20), world);
  EXPECT_TRUE(out[0].status.ok()) << out[0].status.ToString();
  return out[0].path;
}

TEST(ExportSafetensors, ReadsBackWithOurReader) {
  ScopedTempDir tmp;
  auto state = testing::MakeState(20);
  const std::string dir = SaveParams(tmp.path(), 3);
  const std::string file = tmp.path() + "/model.safetensors";
  ASSERT_TRUE(ExportSafetensors(dir, file).ok());
  EXPECT_FALSE(PosixFileSystem()->Exists(file + ".tmp"));
  auto st = ReadSafetensors(file);
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(st->metadata["step"], "20");
  EXPECT_EQ(st->metadata["world_size"], "3");
  ASSERT_EQ(st->tensors.size(), 4u);
  for (const TensorInfo& t : state.meta.buffers[0].tensors) {
    const SafetensorsTensor* got = st->Find(t.name);
    ASSERT_NE(got, nullptr) << t.name;
    EXPECT_EQ(got->dtype, "F32");
    EXPECT_EQ(got->shape, t.shape);
    std::vector<float> values = got->AsFloats();
    EXPECT_EQ(
        0, std::memcmp(values.data(), state.buffers["params"].data() + t.offset, values.size() * 4))
        << t.name;
  }
  // The header is 8-byte aligned, as the format recommends.
  const std::string bytes = testing::ReadAll(file);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u);
}

TEST(ExportSafetensors, BufferWithoutTensorsBecomesOneTensor) {
  ScopedTempDir tmp;
  auto s = testing::MakeState(1);
  s.meta.buffers[0].tensors.clear();
  WriterOptions o;
  o.run_dir = tmp.path();
  auto dir = SaveCheckpoint(o, s.meta, testing::EvenSlices(s, 1, 0));
  ASSERT_TRUE(dir.ok());
  ASSERT_TRUE(ExportSafetensors(*dir, tmp.path() + "/p.safetensors").ok());
  auto st = ReadSafetensors(tmp.path() + "/p.safetensors");
  ASSERT_TRUE(st.ok());
  ASSERT_NE(st->Find("params"), nullptr);
  EXPECT_EQ(st->Find("params")->shape, (std::vector<int64_t>{41}));
}

TEST(ReadSafetensors, RejectsMalformedFiles) {
  ScopedTempDir tmp;
  const std::string file = tmp.path() + "/bad.safetensors";
  testing::WriteAll(file, std::string("\x10\0\0\0\0\0\0\0{\"a\":{}}        ", 24));
  EXPECT_EQ(ReadSafetensors(file).status().code(), StatusCode::kDataLoss);
  testing::WriteAll(file, std::string("\xff\0\0\0\0\0\0\0{}", 10));
  EXPECT_EQ(ReadSafetensors(file).status().code(), StatusCode::kDataLoss);
}

// Writes a safetensors file by hand: 8-byte little-endian length, header, data.
std::string WriteFile(const ScopedTempDir& tmp, const std::string& header,
                      const std::string& data = "") {
  const std::string file = tmp.path() + "/hand.safetensors";
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>(header.size() >> (8 * i));
  testing::WriteAll(file, bytes + header + data);
  return file;
}

// The status of reading a one-tensor F32 file whose header holds `shape` and `offsets`.
Status ReadWith(const ScopedTempDir& tmp, const std::string& shape, const std::string& offsets) {
  const std::string header =
      R"({"t":{"dtype":"F32","shape":)" + shape + R"(,"data_offsets":)" + offsets + "}}";
  return ReadSafetensors(WriteFile(tmp, header, std::string(8, '\0'))).status();
}

TEST(ExportSafetensors, EscapesTensorNames) {
  ScopedTempDir tmp;
  auto s = testing::MakeState(1);
  const std::vector<std::string> names = {"quote\"back\\slash", "new\nline\ttab", "caf\xc3\xa9",
                                          "/"};
  for (size_t i = 0; i < names.size(); ++i) s.meta.buffers[0].tensors[i].name = names[i];
  WriterOptions o;
  o.run_dir = tmp.path();
  auto dir = SaveCheckpoint(o, s.meta, testing::EvenSlices(s, 1, 0));
  ASSERT_TRUE(dir.ok()) << dir.status().ToString();
  ASSERT_TRUE(ExportSafetensors(*dir, tmp.path() + "/p.safetensors").ok());
  auto st = ReadSafetensors(tmp.path() + "/p.safetensors");
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  ASSERT_EQ(st->tensors.size(), names.size());
  for (size_t i = 0; i < names.size(); ++i) EXPECT_EQ(st->tensors[i].name, names[i]);
  // The control characters are escaped: the header stays on one line.
  const std::string bytes = testing::ReadAll(tmp.path() + "/p.safetensors");
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(bytes.substr(8, n).find('\n'), std::string::npos);
}

TEST(ExportSafetensors, RejectsTheReservedTensorName) {
  ScopedTempDir tmp;
  auto s = testing::MakeState(1);
  s.meta.buffers[0].tensors[0].name = "__metadata__";
  WriterOptions o;
  o.run_dir = tmp.path();
  auto dir = SaveCheckpoint(o, s.meta, testing::EvenSlices(s, 1, 0));
  ASSERT_TRUE(dir.ok()) << dir.status().ToString();
  Status exported = ExportSafetensors(*dir, tmp.path() + "/p.safetensors");
  EXPECT_EQ(exported.code(), StatusCode::kInvalidArgument) << exported.ToString();
  EXPECT_NE(exported.message().find("__metadata__"), std::string::npos) << exported.ToString();
  EXPECT_FALSE(PosixFileSystem()->Exists(tmp.path() + "/p.safetensors.tmp"));
}

TEST(ReadSafetensors, ReadsAHandWrittenFileInHeaderOrder) {
  ScopedTempDir tmp;
  // Whitespace, escapes and trailing padding are legal; tensors come back in header order.
  const std::string header =
      "{ \"__metadata__\" : {\"k\": \"v\\u00e9\\n\"},\n"
      "  \"b\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [4, 6]},\n"
      "  \"a\": {\"dtype\": \"F32\", \"shape\": [], \"data_offsets\": [0, 4]} }    ";
  const float one = 1.0f;
  std::string data(reinterpret_cast<const char*>(&one), 4);
  data += "xy";
  auto st = ReadSafetensors(WriteFile(tmp, header, data));
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(st->metadata["k"], "v\xc3\xa9\n");
  ASSERT_EQ(st->tensors.size(), 2u);
  EXPECT_EQ(st->tensors[0].name, "b");
  EXPECT_EQ(st->tensors[0].dtype, "U8");
  EXPECT_EQ(st->tensors[0].data, "xy");
  EXPECT_EQ(st->tensors[1].name, "a");
  EXPECT_EQ(st->tensors[1].shape, std::vector<int64_t>{});
  EXPECT_EQ(st->tensors[1].AsFloats(), std::vector<float>{1.0f});
}

TEST(ReadSafetensors, RejectsInvalidJsonSayingWhere) {
  ScopedTempDir tmp;
  for (const std::string header :
       {"{\"a\": }", "{\"a\": 1", "{\"a\" 1}", "{'a': 1}", "", "{\"a\": \"\xff\"}", "{} x"}) {
    Status s = ReadSafetensors(WriteFile(tmp, header)).status();
    EXPECT_EQ(s.code(), StatusCode::kDataLoss) << header;
    EXPECT_NE(s.message().find("not valid JSON"), std::string::npos) << s.ToString();
    EXPECT_NE(s.message().find("column"), std::string::npos) << s.ToString();
  }
}

TEST(ReadSafetensors, RejectsAHeaderThatIsNotAnObject) {
  ScopedTempDir tmp;
  for (const std::string header : {"[]", "3", "\"x\"", "null"}) {
    Status s = ReadSafetensors(WriteFile(tmp, header)).status();
    EXPECT_EQ(s.code(), StatusCode::kDataLoss) << header;
    EXPECT_NE(s.message().find("not a JSON object"), std::string::npos) << s.ToString();
  }
}

TEST(ReadSafetensors, RejectsDeepNesting) {
  ScopedTempDir tmp;
  const std::string header =
      "{\"__metadata__\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  Status s = ReadSafetensors(WriteFile(tmp, header)).status();
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("nested deeper"), std::string::npos) << s.ToString();
}

TEST(ReadSafetensors, RejectsRepeatedTensorNames) {
  ScopedTempDir tmp;
  const std::string header = R"({"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                             R"("t":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})";
  Status s = ReadSafetensors(WriteFile(tmp, header, "ab")).status();
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("'t' appears twice"), std::string::npos) << s.ToString();
}

TEST(ReadSafetensors, AcceptsIntegerShapesAndOffsets) {
  ScopedTempDir tmp;
  EXPECT_TRUE(ReadWith(tmp, "[2]", "[0, 8]").ok());
  EXPECT_TRUE(ReadWith(tmp, "[1, 2, 1]", "[0,8]").ok());
}

TEST(ReadSafetensors, RejectsShapesThatAreNotNonNegativeIntegers) {
  ScopedTempDir tmp;
  for (const std::string dim : {"-2", "2.0", "2e0", "\"2\"", "true", "null", "[2]", "{}",
                                "9007199254740993", "18446744073709551617"}) {
    Status s = ReadWith(tmp, "[" + dim + "]", "[0,8]");
    EXPECT_EQ(s.code(), StatusCode::kDataLoss) << dim;
    EXPECT_NE(s.message().find("a dimension of t is not a non-negative integer"), std::string::npos)
        << s.ToString();
  }
  EXPECT_EQ(ReadWith(tmp, "2", "[0,8]").code(), StatusCode::kDataLoss);  // not an array
}

TEST(ReadSafetensors, RejectsOffsetsThatAreNotNonNegativeIntegers) {
  ScopedTempDir tmp;
  for (const std::string end : {"-8", "8.0", "8e0", "\"8\"", "false", "null"}) {
    Status s = ReadWith(tmp, "[2]", "[0," + end + "]");
    EXPECT_EQ(s.code(), StatusCode::kDataLoss) << end;
    EXPECT_NE(s.message().find("data_offsets of t is not a non-negative integer"),
              std::string::npos)
        << s.ToString();
  }
  for (const std::string offsets : {"[0]", "[0,4,8]", "{}", "8"}) {
    EXPECT_EQ(ReadWith(tmp, "[2]", offsets).code(), StatusCode::kDataLoss) << offsets;
  }
}

TEST(ReadSafetensors, RejectsSizesThatDisagreeWithTheShape) {
  ScopedTempDir tmp;
  Status s = ReadWith(tmp, "[3]", "[0,8]");
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("has 8 bytes for shape [3]"), std::string::npos) << s.ToString();
  // Products past int64 are a mismatch too, not an overflow.
  s = ReadWith(tmp, "[9007199254740992, 9007199254740992, 9007199254740992]", "[0,8]");
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_EQ(ReadWith(tmp, "[2]", "[0,16]").code(), StatusCode::kDataLoss);  // past the data
  EXPECT_EQ(ReadWith(tmp, "[2]", "[8,0]").code(), StatusCode::kDataLoss);   // reversed
  EXPECT_EQ(ReadWith(tmp, "[1]", "[4,8]").code(), StatusCode::kDataLoss);   // not contiguous
}

TEST(ReadSafetensors, RejectsMalformedTensorEntries) {
  ScopedTempDir tmp;
  for (const std::string entry : {"3", "[]", R"({"dtype":"F32","shape":[2]})",
                                  R"({"dtype":1,"shape":[2],"data_offsets":[0,8]})"}) {
    Status s =
        ReadSafetensors(WriteFile(tmp, "{\"t\":" + entry + "}", std::string(8, '\0'))).status();
    EXPECT_EQ(s.code(), StatusCode::kDataLoss) << entry;
    EXPECT_NE(s.message().find("tensor 't'"), std::string::npos) << s.ToString();
  }
}

TEST(ReadSafetensors, RequiresStringMetadata) {
  ScopedTempDir tmp;
  Status s = ReadSafetensors(WriteFile(tmp, R"({"__metadata__":{"step":20}})")).status();
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("'step' is not a string"), std::string::npos) << s.ToString();
  s = ReadSafetensors(WriteFile(tmp, R"({"__metadata__":["step"]})")).status();
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("__metadata__ is not a JSON object"), std::string::npos)
      << s.ToString();
}

TEST(ExportSafetensors, ReadableByPythonSafetensors) {
  if (std::system("python3 -c 'import safetensors, numpy' >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "Python safetensors/numpy not installed (pip install safetensors numpy)";
  }
  ScopedTempDir tmp;
  const std::string dir = SaveParams(tmp.path(), 2);
  const std::string file = tmp.path() + "/model.safetensors";
  ASSERT_TRUE(ExportSafetensors(dir, file).ok());
  // MakeState fills "params" with (i % 4096) * 0.25 + 1000.
  const std::string script = tmp.path() + "/check.py";
  testing::WriteAll(script, R"PY(
import sys
import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file
path = sys.argv[1]
t = load_file(path)
params = (np.arange(41) % 4096 * 0.25 + 1000).astype(np.float32)
expect = {"w1": ((3, 4), 0), "b1": ((4,), 12), "w2": ((4, 5), 16), "b2": ((5,), 36)}
assert sorted(t) == sorted(expect), sorted(t)
for name, (shape, off) in expect.items():
    a = t[name]
    assert a.dtype == np.float32 and a.shape == shape, (name, a.dtype, a.shape)
    n = int(np.prod(shape))
    assert np.array_equal(a.reshape(-1), params[off:off + n]), name
with safe_open(path, framework="numpy") as f:
    assert f.metadata()["step"] == "20", f.metadata()
print("python safetensors OK")
)PY");
  const std::string cmd = "python3 " + script + " " + file;
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

}  // namespace
}  // namespace lockstep::ckpt
