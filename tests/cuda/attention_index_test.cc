// Host tests (no device needed) of the CUDA causal attention's index math and
// per-element arithmetic (kernels/cuda/attention_index.h): block numbering and
// offsets against layouts enumerated in memory order; that the kernels' ownership
// (which block and thread writes what) covers every output exactly once and that
// the backward's dK/dV pass reads exactly the dS entries its dQ pass wrote; a
// host run of the kernels' arithmetic against the naive double reference; and the
// reference's backward against finite differences of its forward.
#include "kernels/cuda/attention_index.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "tests/cuda/attention_reference.h"
#include "tests/kernels/kernels_test_util.h"

namespace lockstep::kernels::cuda {
namespace {

using ::lockstep::kernels::testing::TestRng;
using testing::OutSize;
using testing::ProbsSize;
using testing::QkvSize;

cpu::AttentionShape Shape(int64_t batch, int64_t seq, int64_t heads, int64_t head_dim) {
  cpu::AttentionShape s;
  s.batch = batch;
  s.seq = seq;
  s.heads = heads;
  s.head_dim = head_dim;
  return s;
}

AttentionDims Dims(const cpu::AttentionShape& s) { return {s.batch, s.seq, s.heads, s.head_dim}; }

std::vector<cpu::AttentionShape> SmallShapes() {
  return {Shape(1, 1, 1, 1), Shape(1, 7, 1, 8),  Shape(3, 7, 4, 33),
          Shape(2, 5, 3, 2), Shape(3, 1, 4, 16), Shape(1, 13, 2, 5)};
}

TEST(CudaAttentionIndexTest, HeadRowOfBlockInvertsTheBlockNumbering) {
  for (const auto& s : SmallShapes()) {
    const AttentionDims d = Dims(s);
    int64_t block = 0;
    for (int64_t b = 0; b < s.batch; ++b) {
      for (int64_t h = 0; h < s.heads; ++h) {
        for (int64_t row = 0; row < s.seq; ++row, ++block) {
          const HeadRow r = HeadRowOfBlock(d, block);
          ASSERT_EQ(r.b, b) << "block " << block;
          ASSERT_EQ(r.h, h) << "block " << block;
          ASSERT_EQ(r.row, row) << "block " << block;
        }
      }
    }
  }
}

// Walking each tensor in memory order, the element's offset is the running count.
TEST(CudaAttentionIndexTest, OffsetsFollowTheCpuLayouts) {
  for (const auto& s : SmallShapes()) {
    SCOPED_TRACE(::testing::Message()
                 << "B=" << s.batch << " T=" << s.seq << " H=" << s.heads << " d=" << s.head_dim);
    const AttentionDims d = Dims(s);
    EXPECT_EQ(ModelDim(d), s.dim());
    int64_t at = 0;
    for (int64_t b = 0; b < s.batch; ++b) {
      for (int64_t t = 0; t < s.seq; ++t) {
        for (int part : {kQkvQ, kQkvK, kQkvV}) {
          for (int64_t h = 0; h < s.heads; ++h) {
            for (int64_t c = 0; c < s.head_dim; ++c, ++at) {
              ASSERT_EQ(QkvHeadOffset(d, b, t, part, h) + c, at);
            }
            if (t + 1 < s.seq) {
              ASSERT_EQ(QkvHeadOffset(d, b, t + 1, part, h) - QkvHeadOffset(d, b, t, part, h),
                        QkvRowStride(d));
            }
          }
        }
      }
    }
    EXPECT_EQ(at, static_cast<int64_t>(QkvSize(s)));
    at = 0;
    for (int64_t b = 0; b < s.batch; ++b) {
      for (int64_t t = 0; t < s.seq; ++t) {
        for (int64_t h = 0; h < s.heads; ++h) {
          for (int64_t c = 0; c < s.head_dim; ++c, ++at)
            ASSERT_EQ(OutHeadOffset(d, b, t, h) + c, at);
        }
      }
    }
    EXPECT_EQ(at, static_cast<int64_t>(OutSize(s)));
    at = 0;
    for (int64_t b = 0; b < s.batch; ++b) {
      for (int64_t h = 0; h < s.heads; ++h) {
        for (int64_t i = 0; i < s.seq; ++i) {
          for (int64_t j = 0; j < s.seq; ++j, ++at) ASSERT_EQ(ProbsRowOffset(d, b, h, i) + j, at);
        }
      }
    }
    EXPECT_EQ(at, static_cast<int64_t>(ProbsSize(s)));
  }
}

// The kernels' loops, with a count per element written: forward (probs row j in
// [0, T), out column c), backward pass 1 (dQ column c; dS j <= i), pass 2 (dK
// column c < d, dV column c - d, reading dS rows i >= j of column j).
TEST(CudaAttentionIndexTest, KernelsWriteEveryOutputOnceAndReadOnlyWhatWasWritten) {
  for (const auto& s : SmallShapes()) {
    SCOPED_TRACE(::testing::Message()
                 << "B=" << s.batch << " T=" << s.seq << " H=" << s.heads << " d=" << s.head_dim);
    const AttentionDims d = Dims(s);
    const int64_t blocks = s.batch * s.heads * s.seq;
    std::vector<int> probs_w(ProbsSize(s)), out_w(OutSize(s)), dqkv_w(QkvSize(s));
    std::vector<int> ds_w(ProbsSize(s)), ds_r(ProbsSize(s));
    for (int64_t block = 0; block < blocks; ++block) {
      const HeadRow r = HeadRowOfBlock(d, block);
      for (int64_t j = 0; j < s.seq; ++j) ++probs_w[ProbsRowOffset(d, r.b, r.h, r.row) + j];
      for (int64_t c = 0; c < s.head_dim; ++c) ++out_w[OutHeadOffset(d, r.b, r.row, r.h) + c];
      for (int64_t j = 0; j < KeysEnd(r.row); ++j) ++ds_w[ProbsRowOffset(d, r.b, r.h, r.row) + j];
      for (int64_t c = 0; c < s.head_dim; ++c)
        ++dqkv_w[QkvHeadOffset(d, r.b, r.row, kQkvQ, r.h) + c];
    }
    for (int64_t block = 0; block < blocks; ++block) {
      const HeadRow r = HeadRowOfBlock(d, block);
      const int64_t j = r.row, col = ProbsRowOffset(d, r.b, r.h, 0) + j;
      for (int64_t i = j; i < s.seq; ++i) ++ds_r[col + i * s.seq];
      for (int64_t c = 0; c < 2 * s.head_dim; ++c) {
        if (c < s.head_dim) {
          ++dqkv_w[QkvHeadOffset(d, r.b, j, kQkvK, r.h) + c];
        } else {
          ++dqkv_w[QkvHeadOffset(d, r.b, j, kQkvV, r.h) + c - s.head_dim];
        }
      }
    }
    auto all_once = [](const std::vector<int>& v) {
      return std::all_of(v.begin(), v.end(), [](int n) { return n == 1; });
    };
    EXPECT_TRUE(all_once(probs_w));
    EXPECT_TRUE(all_once(out_w));
    EXPECT_TRUE(all_once(dqkv_w));
    EXPECT_EQ(ds_r, ds_w);  // pass 2 reads each dS entry pass 1 wrote, once, and no other
    int64_t lower = 0;
    for (int n : ds_w) lower += n;
    EXPECT_EQ(lower, s.batch * s.heads * s.seq * (s.seq + 1) / 2);
  }
}

TEST(CudaAttentionIndexTest, ElementSumsUseTheirRangeAndStride) {
  const std::vector<float> w = {1, 2, 4, 8, 16};
  std::vector<float> x(5 * 3);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i);  // x[r * 3 + 1] = 3r + 1
  EXPECT_EQ(WeightedColumnSum(w.data(), x.data() + 1, 3, 0, 5),
            1 * 1 + 2 * 4 + 4 * 7 + 8 * 10 + 16 * 13);
  EXPECT_EQ(WeightedColumnSum(w.data(), x.data() + 1, 3, 2, 4), 4 * 7 + 8 * 10);
  EXPECT_EQ(WeightedColumnSum(w.data(), x.data(), 3, 3, 3), 0.0f);
  EXPECT_EQ(RowDot(w.data(), x.data() + 2, 3), 1 * 2 + 2 * 3 + 4 * 4);
  EXPECT_EQ(SoftmaxGrad(0.5f, 0.25f, 3.0f, 1.0f), 0.5f * 0.25f * 2.0f);
  EXPECT_EQ(KeysEnd(0), 1);
}

// BlockSum's order: thread t adds terms t, t + threads, ... then a halving tree.
double BlockSumOrder(const std::vector<double>& terms, int threads) {
  std::vector<double> partial(static_cast<size_t>(threads), 0.0);
  for (size_t j = 0; j < terms.size(); ++j) partial[j % threads] += terms[j];
  for (int half = threads / 2; half > 0; half /= 2) {
    for (int t = 0; t < half; ++t) partial[t] += partial[t + half];
  }
  return partial[0];
}

struct HostRun {
  std::vector<float> probs, out, dqkv;
};

// attention.cu's arithmetic, block after block on the host: the same helpers, float
// operations and double sums in the same order (std::exp stands in for expf).
HostRun RunKernelArithmetic(const cpu::AttentionShape& s, const std::vector<float>& qkv,
                            const std::vector<float>& dout) {
  const AttentionDims d = Dims(s);
  const int64_t blocks = s.batch * s.heads * s.seq, hd = s.head_dim, ld = QkvRowStride(d);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  HostRun run{std::vector<float>(ProbsSize(s)), std::vector<float>(OutSize(s)),
              std::vector<float>(QkvSize(s))};
  std::vector<float> ds_rows(ProbsSize(s));
  for (int64_t block = 0; block < blocks; ++block) {  // forward
    const HeadRow r = HeadRowOfBlock(d, block);
    const int64_t n = KeysEnd(r.row);
    const float* q = qkv.data() + QkvHeadOffset(d, r.b, r.row, kQkvQ, r.h);
    const float* k = qkv.data() + QkvHeadOffset(d, r.b, 0, kQkvK, r.h);
    const float* v = qkv.data() + QkvHeadOffset(d, r.b, 0, kQkvV, r.h);
    std::vector<float> p(static_cast<size_t>(n));
    std::vector<double> e(static_cast<size_t>(n));
    float mx = -INFINITY;
    for (int64_t j = 0; j < n; ++j) {
      p[j] = RowDot(q, k + j * ld, hd) * scale;
      mx = std::max(mx, p[j]);
    }
    for (int64_t j = 0; j < n; ++j) e[j] = p[j] = std::exp(p[j] - mx);
    const float inv = static_cast<float>(1.0 / BlockSumOrder(e, kAttentionRowThreads));
    float* p_out = run.probs.data() + ProbsRowOffset(d, r.b, r.h, r.row);
    for (int64_t j = 0; j < s.seq; ++j) p_out[j] = j < n ? (p[j] = p[j] * inv) : 0.0f;
    float* o = run.out.data() + OutHeadOffset(d, r.b, r.row, r.h);
    for (int64_t c = 0; c < hd; ++c) o[c] = WeightedColumnSum(p.data(), v + c, ld, 0, n);
  }
  for (int64_t block = 0; block < blocks; ++block) {  // backward pass 1: dS, dQ
    const HeadRow r = HeadRowOfBlock(d, block);
    const int64_t n = KeysEnd(r.row);
    const float* go = dout.data() + OutHeadOffset(d, r.b, r.row, r.h);
    const float* p = run.probs.data() + ProbsRowOffset(d, r.b, r.h, r.row);
    const float* k = qkv.data() + QkvHeadOffset(d, r.b, 0, kQkvK, r.h);
    const float* v = qkv.data() + QkvHeadOffset(d, r.b, 0, kQkvV, r.h);
    std::vector<float> ds(static_cast<size_t>(n));
    std::vector<double> terms(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) {
      ds[j] = RowDot(go, v + j * ld, hd);
      terms[j] = static_cast<double>(p[j]) * ds[j];
    }
    const float rowdot = static_cast<float>(BlockSumOrder(terms, kAttentionRowThreads));
    float* ds_out = ds_rows.data() + ProbsRowOffset(d, r.b, r.h, r.row);
    for (int64_t j = 0; j < n; ++j) ds_out[j] = ds[j] = SoftmaxGrad(scale, p[j], ds[j], rowdot);
    float* dq = run.dqkv.data() + QkvHeadOffset(d, r.b, r.row, kQkvQ, r.h);
    for (int64_t c = 0; c < hd; ++c) dq[c] = WeightedColumnSum(ds.data(), k + c, ld, 0, n);
  }
  for (int64_t block = 0; block < blocks; ++block) {  // backward pass 2: dK, dV
    const HeadRow r = HeadRowOfBlock(d, block);
    const int64_t j = r.row, col = ProbsRowOffset(d, r.b, r.h, 0) + j;
    std::vector<float> ds_col(static_cast<size_t>(s.seq)), p_col(static_cast<size_t>(s.seq));
    for (int64_t i = j; i < s.seq; ++i) {
      ds_col[i] = ds_rows[col + i * s.seq];
      p_col[i] = run.probs[col + i * s.seq];
    }
    const float* q = qkv.data() + QkvHeadOffset(d, r.b, 0, kQkvQ, r.h);
    const float* go = dout.data() + OutHeadOffset(d, r.b, 0, r.h);
    float* dk = run.dqkv.data() + QkvHeadOffset(d, r.b, j, kQkvK, r.h);
    float* dv = run.dqkv.data() + QkvHeadOffset(d, r.b, j, kQkvV, r.h);
    for (int64_t c = 0; c < hd; ++c) {
      dk[c] = WeightedColumnSum(ds_col.data(), q + c, ld, j, s.seq);
      dv[c] = WeightedColumnSum(p_col.data(), go + c, ModelDim(d), j, s.seq);
    }
  }
  return run;
}

double MaxAbsError(const std::vector<float>& got, const std::vector<double>& want) {
  double worst = 0.0;
  for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::fabs(got[i] - want[i]));
  return worst;
}

TEST(CudaAttentionIndexTest, HostRunOfTheKernelArithmeticMatchesTheReference) {
  TestRng rng(71);
  for (const auto& s : {Shape(1, 1, 1, 8), Shape(3, 7, 4, 33), Shape(1, 64, 4, 16),
                        Shape(3, 130, 1, 33), Shape(1, 130, 4, 8)}) {
    SCOPED_TRACE(::testing::Message()
                 << "B=" << s.batch << " T=" << s.seq << " H=" << s.heads << " d=" << s.head_dim);
    const std::vector<float> qkv = rng.Vector(static_cast<int64_t>(QkvSize(s)));
    const std::vector<float> dout = rng.Vector(static_cast<int64_t>(OutSize(s)));
    const HostRun got = RunKernelArithmetic(s, qkv, dout);
    std::vector<double> probs, out, dqkv;
    testing::ReferenceAttentionForward(s, testing::ToDouble(qkv), &probs, &out);
    testing::ReferenceAttentionBackward(s, testing::ToDouble(qkv), probs, testing::ToDouble(dout),
                                        &dqkv);
    // Inputs in [-1, 1], float sums of <= 130 terms: measured errors are about 1e-7 for
    // probs and out and 1e-6 for dqkv; the bounds leave a margin of about 4.
    EXPECT_LT(MaxAbsError(got.probs, probs), 3e-7);
    EXPECT_LT(MaxAbsError(got.out, out), 5e-7);
    EXPECT_LT(MaxAbsError(got.dqkv, dqkv), 5e-6);
    for (size_t i = 0; i < probs.size(); ++i) {
      if (probs[i] == 0.0) {
        ASSERT_EQ(got.probs[i], 0.0f) << "probs[" << i << "]";
      }
    }
  }
}

// The reference backward is what the CUDA backward is judged by, so it is judged
// here: L = sum(out .* G), central differences of L over every qkv element.
TEST(CudaAttentionIndexTest, ReferenceBackwardMatchesFiniteDifferences) {
  TestRng rng(72);
  const cpu::AttentionShape s = Shape(2, 4, 2, 3);
  const std::vector<double> qkv =
      testing::ToDouble(rng.Vector(static_cast<int64_t>(QkvSize(s)), -2, 2));
  const std::vector<double> g = testing::ToDouble(rng.Vector(static_cast<int64_t>(OutSize(s))));
  auto loss = [&](const std::vector<double>& x) {
    std::vector<double> probs, out;
    testing::ReferenceAttentionForward(s, x, &probs, &out);
    double l = 0.0;
    for (size_t i = 0; i < out.size(); ++i) l += out[i] * g[i];
    return l;
  };
  std::vector<double> probs, out, dqkv;
  testing::ReferenceAttentionForward(s, qkv, &probs, &out);
  testing::ReferenceAttentionBackward(s, qkv, probs, g, &dqkv);
  const double h = 1e-5;
  double largest = 0.0;
  for (size_t e = 0; e < qkv.size(); ++e) {
    std::vector<double> plus = qkv, minus = qkv;
    plus[e] += h;
    minus[e] -= h;
    const double numeric = (loss(plus) - loss(minus)) / (2 * h);
    EXPECT_NEAR(dqkv[e], numeric, 1e-8) << "qkv element " << e;
    largest = std::max(largest, std::fabs(numeric));
  }
  EXPECT_GT(largest, 0.1);  // the gradient is not trivially zero
}

}  // namespace
}  // namespace lockstep::kernels::cuda
