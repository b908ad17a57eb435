// safetensors export: read back with our reader always, and with the Python
// `safetensors` library when it is installed.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

#include "checkpoints/checkpoint.h"
#include "checkpoints/mini_json.h"
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

TEST(MiniJson, ParsesAndQuotes) {
  auto v = json::Parse(R"({"a\"b": [1, 2, {"c": "x\u0041"}], "t": true})");
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  ASSERT_NE(v->Find("a\"b"), nullptr);
  EXPECT_EQ(v->Find("a\"b")->array[2].Find("c")->text, "xA");
  EXPECT_EQ(json::Quote("a\"\n"), "\"a\\\"\\u000a\"");
  EXPECT_FALSE(json::Parse("{\"a\": }").ok());
  EXPECT_FALSE(json::Parse(std::string(1000, '[')).ok());
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
