// Causal attention on the GPU against the naive double-precision reference
// (tests/cuda/attention_reference.h; the CPU kernel needs OpenBLAS): T 1, 7, 64, 130,
// heads 1 and 4, head_dim 8, 16, 33, batch 1 and 3; probs exactly zero above the
// diagonal; every output overwritten (buffers start as NaN); scores large enough to
// overflow an unshifted exp; bitwise repeatability; batch 0.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/cuda/attention.h"
#include "tests/cuda/attention_reference.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/kernels/kernels_test_util.h"

namespace lockstep::kernels::cuda {
namespace {

using ::lockstep::kernels::testing::TestRng;
using testing::AllClose;
using testing::BitwiseEqual;
using testing::DeviceBuffer;
using testing::OutSize;
using testing::ProbsSize;
using testing::QkvSize;
using testing::ToDouble;
using testing::ToFloat;

using CudaAttentionTest = testing::CudaTest;

AttentionShape Shape(int64_t batch, int64_t seq, int64_t heads, int64_t head_dim) {
  AttentionShape s;
  s.batch = batch;
  s.seq = seq;
  s.heads = heads;
  s.head_dim = head_dim;
  return s;
}

struct GpuAttention {
  std::vector<float> probs, out, dqkv;
};

// Forward then backward into fresh (NaN-poisoned) buffers.
GpuAttention RunGpu(const AttentionShape& s, const std::vector<float>& qkv,
                    const std::vector<float>& dout, cudaStream_t stream) {
  DeviceBuffer<float> d_qkv(qkv), d_dout(dout), d_probs(static_cast<int64_t>(ProbsSize(s)));
  DeviceBuffer<float> d_out(static_cast<int64_t>(OutSize(s))),
      d_dqkv(static_cast<int64_t>(QkvSize(s)));
  DeviceBuffer<char> ws(static_cast<int64_t>(CausalAttentionWorkspaceBytes(s)));
  CausalAttentionForward(s, d_qkv.get(), d_probs.get(), d_out.get(), stream);
  CausalAttentionBackward(s, d_qkv.get(), d_probs.get(), d_dout.get(), d_dqkv.get(), ws.get(),
                          stream);
  return {d_probs.Download(), d_out.Download(), d_dqkv.Download()};
}

// Entries above the diagonal that are not exactly +0.0f.
int64_t NonzeroAboveDiagonal(const AttentionShape& s, const std::vector<float>& probs) {
  int64_t bad = 0;
  for (int64_t bh = 0; bh < s.batch * s.heads; ++bh) {
    for (int64_t i = 0; i < s.seq; ++i) {
      for (int64_t j = i + 1; j < s.seq; ++j) {
        const float p = probs[(bh * s.seq + i) * s.seq + j];
        if (!(p == 0.0f && !std::signbit(p))) ++bad;
      }
    }
  }
  return bad;
}

// Compares one run with the reference. Tolerances: the host run of the same
// arithmetic (attention_index_test.cc) is within about 1e-7 (probs, out) and 1e-6
// (dqkv) of the reference for inputs in [-1, 1]; the device's expf adds ulps.
void ExpectMatchesReference(const AttentionShape& s, const std::vector<float>& qkv,
                            const std::vector<float>& dout, const GpuAttention& got,
                            double tol_scale) {
  std::vector<double> probs, out, dqkv;
  testing::ReferenceAttentionForward(s, ToDouble(qkv), &probs, &out);
  testing::ReferenceAttentionBackward(s, ToDouble(qkv), probs, ToDouble(dout), &dqkv);
  EXPECT_EQ(NonzeroAboveDiagonal(s, got.probs), 0);
  EXPECT_TRUE(AllClose(got.probs, ToFloat(probs), 1e-6 * tol_scale, 1e-5)) << "probs";
  EXPECT_TRUE(AllClose(got.out, ToFloat(out), 5e-6 * tol_scale, 1e-4)) << "out";
  EXPECT_TRUE(AllClose(got.dqkv, ToFloat(dqkv), 2e-5 * tol_scale, 1e-4)) << "dqkv";
}

TEST_F(CudaAttentionTest, MatchesNaiveReference) {
  TestRng rng(61);
  for (int64_t batch : {1, 3}) {
    for (int64_t seq : {1, 7, 64, 130}) {
      for (int64_t heads : {1, 4}) {
        for (int64_t head_dim : {8, 16, 33}) {
          const AttentionShape s = Shape(batch, seq, heads, head_dim);
          SCOPED_TRACE(::testing::Message()
                       << "B=" << batch << " T=" << seq << " H=" << heads << " d=" << head_dim);
          const std::vector<float> qkv = rng.Vector(static_cast<int64_t>(QkvSize(s)));
          const std::vector<float> dout = rng.Vector(static_cast<int64_t>(OutSize(s)));
          ExpectMatchesReference(s, qkv, dout, RunGpu(s, qkv, dout, stream_), 1.0);
        }
      }
    }
  }
}

// Scores up to 8 * 8 * 16 / 4 = 256: exp without the max subtracted would overflow.
TEST_F(CudaAttentionTest, LargeScoresStayFinite) {
  TestRng rng(62);
  const AttentionShape s = Shape(2, 37, 2, 16);
  const std::vector<float> qkv = rng.Vector(static_cast<int64_t>(QkvSize(s)), -8.0f, 8.0f);
  const std::vector<float> dout = rng.Vector(static_cast<int64_t>(OutSize(s)));
  const GpuAttention got = RunGpu(s, qkv, dout, stream_);
  for (float v : got.probs) ASSERT_TRUE(std::isfinite(v));
  for (float v : got.dqkv) ASSERT_TRUE(std::isfinite(v));
  // Values and gradients scale with |qkv| (8) and |qkv|^2.
  ExpectMatchesReference(s, qkv, dout, got, 64.0);
}

TEST_F(CudaAttentionTest, BitwiseRepeatable) {
  TestRng rng(63);
  const AttentionShape s = Shape(3, 130, 4, 33);
  const std::vector<float> qkv = rng.Vector(static_cast<int64_t>(QkvSize(s)));
  const std::vector<float> dout = rng.Vector(static_cast<int64_t>(OutSize(s)));
  const GpuAttention a = RunGpu(s, qkv, dout, stream_);
  const GpuAttention b = RunGpu(s, qkv, dout, stream_);
  EXPECT_TRUE(BitwiseEqual(a.probs, b.probs)) << "probs";
  EXPECT_TRUE(BitwiseEqual(a.out, b.out)) << "out";
  EXPECT_TRUE(BitwiseEqual(a.dqkv, b.dqkv)) << "dqkv";
}

// head_dim 128 and T 256, the largest the models use: each of a key block's 256
// threads owns one of the 2d columns; each row thread owns two keys.
TEST_F(CudaAttentionTest, ModelSizedHeads) {
  TestRng rng(64);
  const AttentionShape s = Shape(1, 256, 2, 128);
  const std::vector<float> qkv = rng.Vector(static_cast<int64_t>(QkvSize(s)), -0.5f, 0.5f);
  const std::vector<float> dout = rng.Vector(static_cast<int64_t>(OutSize(s)));
  ExpectMatchesReference(s, qkv, dout, RunGpu(s, qkv, dout, stream_), 1.0);
}

TEST_F(CudaAttentionTest, EmptyBatchIsANoOp) {
  const AttentionShape s = Shape(0, 16, 2, 8);
  EXPECT_EQ(CausalAttentionWorkspaceBytes(s), 0u);
  CausalAttentionForward(s, nullptr, nullptr, nullptr, stream_);
  CausalAttentionBackward(s, nullptr, nullptr, nullptr, nullptr, nullptr, stream_);
  Sync();
}

TEST(CudaAttentionHostTest, WorkspaceHoldsOneScoreMatrixPerSampleAndHead) {
  EXPECT_EQ(CausalAttentionWorkspaceBytes(Shape(3, 130, 4, 33)),
            3u * 4 * 130 * 130 * sizeof(float));
  EXPECT_EQ(CausalAttentionWorkspaceBytes(Shape(1, 1, 1, 8)), sizeof(float));
}

}  // namespace
}  // namespace lockstep::kernels::cuda
