// Host checks (no device) of the index math and summation order that the sequence
// CUDA kernels share with the host through LS_HOST_DEVICE headers: each kernel's work
// is replayed on the CPU with the very functions the kernel calls, in the kernel's
// decomposition (lanes, chunks, buckets, elements), and compared with the CPU kernels
// of kernels/cpu — bitwise wherever the GPU claims bitwise equality.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/embedding.h"
#include "kernels/cpu/fast_math.h"
#include "kernels/cpu/layer_norm.h"
#include "kernels/cpu/recurrent.h"
#include "kernels/cuda/embedding_index.h"
#include "kernels/cuda/fast_math.h"
#include "kernels/cuda/layer_norm_order.h"
#include "kernels/cuda/recurrent_cell.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/cuda/sequence_replay.h"
#include "tests/kernels/kernels_test_util.h"

namespace lockstep::kernels::cuda {
namespace {

using ::lockstep::kernels::testing::TestRng;
using testing::AllClose;
using testing::AllFlags;
using testing::BitwiseEqual;
using testing::WithinUlps;
using testing::kCpuAbsTol;
using testing::kCpuRelTol;
using testing::StepBuffers;
using testing::StepFlags;
using testing::Describe;

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

float FromBits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

// The replays (and the scalar fast-math comparison below) assume this file is compiled
// without FMA contraction, like the GPU code (--fmad=false). Built with e.g.
// -march=native -ffp-contract=fast, this fails first and says why the others would.
TEST(CudaSequenceReplayHostTest, CompiledWithoutFmaContraction) {
  volatile float va = 1.0f + 0x1p-12f, vc = -(1.0f + 0x1p-11f);
  const float a = va, c = vc;
  // a * a = 1 + 2^-11 + 2^-24 rounds (tie to even) to 1 + 2^-11; a fused a * a + c is 2^-24.
  EXPECT_EQ(a * a + c, 0.0f) << "a * b + c was contracted into an FMA";
}

// ---- fast math ---------------------------------------------------------------------

void ExpectSameMath(float x) {
  ASSERT_EQ(Bits(FastExp(x)), Bits(cpu::FastExp(x))) << "exp x=" << x;
  ASSERT_EQ(Bits(FastTanh(x)), Bits(cpu::FastTanh(x))) << "tanh x=" << x;
  ASSERT_EQ(Bits(FastSigmoid(x)), Bits(cpu::FastSigmoid(x))) << "sigmoid x=" << x;
}

TEST(CudaFastMathHostTest, MatchesCpuBitwise) {
  // Every 4099th bit pattern (both signs, all exponents, subnormals), skipping NaN.
  for (uint64_t u = 0; u <= 0xFFFFFFFFull; u += 4099) {
    const float x = FromBits(static_cast<uint32_t>(u));
    if (std::isnan(x)) continue;
    ExpectSameMath(x);
    if (::testing::Test::HasFatalFailure()) return;
  }
  // Densely where the branches switch: |x| around 0.625, 10, and the exp clamps.
  for (float x = -100.0f; x <= 100.0f; x += 0.0009765625f) {
    ExpectSameMath(x);
    if (::testing::Test::HasFatalFailure()) return;
  }
  for (float x : {0.0f, -0.0f, 0.625f, -0.625f, 10.0f, -10.0f, -87.3f, 88.3f,
                  std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                  std::numeric_limits<float>::denorm_min(), std::numeric_limits<float>::max()}) {
    ExpectSameMath(x);
  }
}

// ---- embedding ---------------------------------------------------------------------

// The reference rounding: std::lround, valid when in [0, vocab).
int64_t NaiveTokenIndex(float id, int64_t vocab) {
  if (!std::isfinite(id) || std::fabs(id) > 1e15f) return -1;
  const long t = std::lround(id);
  return t >= 0 && t < vocab ? t : -1;
}

TEST(CudaEmbeddingIndexHostTest, TokenIndexRoundsAsCpuTokenId) {
  for (int64_t vocab : {1, 2, 7, 97}) {
    std::vector<float> ids;
    for (int64_t k = -3; k <= vocab + 3; ++k) {
      const float f = static_cast<float>(k);
      for (float d : {-0.5f, -0.49999997f, -0.3f, -0.0f, 0.0f, 0.3f, 0.49999997f, 0.5f}) {
        ids.push_back(f + d);
      }
      ids.push_back(std::nextafter(f + 0.5f, -1e9f));
      ids.push_back(std::nextafter(f - 0.5f, 1e9f));
    }
    for (float id : ids) {
      const int64_t want = NaiveTokenIndex(id, vocab);
      ASSERT_EQ(TokenIndex(id, vocab), want) << "id=" << id << " vocab=" << vocab;
      if (want >= 0) {
        ASSERT_EQ(TokenIndex(id, vocab), cpu::TokenId(id, vocab)) << "id=" << id;
      }
    }
  }
}

TEST(CudaEmbeddingIndexHostTest, TokenIndexRejectsNonFiniteAndHugeIds) {
  const float inf = std::numeric_limits<float>::infinity();
  const int64_t any = std::numeric_limits<int64_t>::max();  // only the id can be invalid
  for (float id : {std::nanf(""), -std::nanf(""), inf, -inf, -1e10f, 3e38f, -3e38f, 9.3e18f,
                   4.7e18f, -0.5f, -1.0f}) {
    EXPECT_EQ(TokenIndex(id, any), -1) << "id=" << id;
  }
  EXPECT_EQ(TokenIndex(1e10f, any), int64_t{10000000000});
  EXPECT_EQ(TokenIndex(2147483520.0f, 2147483646), 2147483520);  // large vocabularies work
  EXPECT_EQ(TokenIndex(-0.4f, 1), 0);                            // rounds to -0: row 0
}

TEST(CudaEmbeddingIndexHostTest, SortKeyBitsHoldsTheLargestKey) {
  for (int64_t max_key = 0; max_key <= 70000; ++max_key) {
    int want = 1;
    while ((int64_t{1} << want) <= max_key) ++want;
    ASSERT_EQ(SortKeyBits(max_key), want) << max_key;
  }
  EXPECT_EQ(SortKeyBits(std::numeric_limits<int32_t>::max()), 31);
}

TEST(CudaEmbeddingIndexHostTest, LowerBoundMatchesStd) {
  TestRng rng(71);
  for (int64_t n : {0, 1, 2, 3, 17, 100}) {
    for (uint32_t range : {1u, 3u, 50u}) {
      std::vector<uint32_t> keys(static_cast<size_t>(n));
      for (auto& k : keys) k = rng.Next() % range;
      std::sort(keys.begin(), keys.end());
      for (int64_t v = -1; v <= static_cast<int64_t>(range) + 1; ++v) {
        const int64_t want =
            v < 0 ? 0
                  : std::lower_bound(keys.begin(), keys.end(), static_cast<uint32_t>(v)) -
                        keys.begin();
        ASSERT_EQ(LowerBound(keys.data(), n, v), want) << "n=" << n << " v=" << v;
      }
    }
  }
}

TEST(CudaEmbeddingIndexHostTest, BackwardReplayIsBitwiseTheCpus) {
  TestRng rng(72);
  for (int64_t vocab : {1, 7, 97}) {
    for (int64_t n : {0, 1, 13, 300}) {
      for (int64_t dim : {1, 5, 33}) {
        for (float beta : {0.0f, 1.0f}) {
          SCOPED_TRACE(::testing::Message()
                       << "vocab=" << vocab << " n=" << n << " dim=" << dim << " beta=" << beta);
          const std::vector<float> ids = testing::RandomIds(rng, n, vocab);
          const std::vector<float> dy = rng.Vector(n * dim);
          std::vector<float> old = rng.Vector(vocab * dim);
          if (beta == 0.0f) std::fill(old.begin(), old.end(), std::nanf(""));  // must be ignored
          std::vector<float> want = old;
          cpu::EmbeddingBackward(ids.data(), n, dy.data(), vocab, dim, beta, want.data());
          ASSERT_TRUE(BitwiseEqual(testing::ReplayEmbeddingBackward(ids, dy, vocab, dim, beta, old), want));
        }
      }
    }
  }
}

TEST(CudaEmbeddingIndexHostTest, BackwardReplaySkipsInvalidIds) {
  TestRng rng(73);
  const int64_t vocab = 11, dim = 6, n = 40;
  const std::vector<float> ids = testing::RandomIdsWithFourInvalid(rng, n, vocab);
  const std::vector<float> dy = rng.Vector(n * dim);
  // The CPU aborts on those ids; its result without them is what the GPU must give.
  std::vector<float> kept_ids, kept_dy;
  for (int64_t i = 0; i < n; ++i) {
    if (NaiveTokenIndex(ids[i], vocab) < 0) continue;
    kept_ids.push_back(ids[i]);
    kept_dy.insert(kept_dy.end(), dy.begin() + i * dim, dy.begin() + (i + 1) * dim);
  }
  ASSERT_EQ(kept_ids.size(), static_cast<size_t>(n - 4));
  const std::vector<float> old = rng.Vector(vocab * dim);
  std::vector<float> want = old;
  cpu::EmbeddingBackward(kept_ids.data(), static_cast<int64_t>(kept_ids.size()), kept_dy.data(),
                         vocab, dim, 1.0f, want.data());
  EXPECT_TRUE(BitwiseEqual(testing::ReplayEmbeddingBackward(ids, dy, vocab, dim, 1.0f, old), want));
}

TEST(CudaEmbeddingIndexHostTest, WorkspacePiecesAreAlignedAndDisjoint) {
  for (int64_t n : {0, 1, 5, 64, 1000}) {
    for (int64_t vocab : {1, 97, 50000}) {
      for (size_t temp : {size_t{0}, size_t{1}, size_t{4097}}) {
        const EmbeddingWorkspace w = EmbeddingWorkspaceLayout(n, vocab, temp);
        const size_t ids = sizeof(uint32_t) * static_cast<size_t>(n);
        struct Piece {
          size_t offset, bytes;
        };
        const std::vector<Piece> pieces = {{w.keys_in, ids},
                                           {w.keys_out, ids},
                                           {w.pos_in, ids},
                                           {w.pos_out, ids},
                                           {w.bucket_begin, sizeof(int32_t) * static_cast<size_t>(vocab + 1)},
                                           {w.sort_temp, temp}};
        for (size_t a = 0; a < pieces.size(); ++a) {
          EXPECT_EQ(pieces[a].offset % EmbeddingWorkspace::kAlign, 0u) << a;
          EXPECT_LE(pieces[a].offset + pieces[a].bytes, w.total) << a;
          for (size_t b = a + 1; b < pieces.size(); ++b) {
            const bool disjoint = pieces[a].offset + pieces[a].bytes <= pieces[b].offset ||
                                  pieces[b].offset + pieces[b].bytes <= pieces[a].offset;
            EXPECT_TRUE(disjoint) << "pieces " << a << " and " << b << " n=" << n;
          }
        }
      }
    }
  }
}

// ---- layer norm --------------------------------------------------------------------

// mean and dbeta are sums only (bitwise the CPU's, dbeta up to 1 ulp once rows are
// chunked); rstd, y, dx and dgamma involve products the CPU's AVX2 clone may fuse.
TEST(CudaLayerNormOrderHostTest, ReplayMatchesCpu) {
  TestRng rng(74);
  const float eps = 1e-5f;
  for (int64_t rows : {0, 1, 3, 32, 33, 200, 1000}) {
    for (int64_t cols : {1, 7, 8, 9, 64, 97, 1000}) {
      if (rows * cols > 200000) continue;
      for (float grad_beta : {0.0f, 1.0f}) {
        SCOPED_TRACE(::testing::Message() << "rows=" << rows << " cols=" << cols
                                          << " grad_beta=" << grad_beta);
        const testing::LnData d = testing::MakeLn(rng, rows, cols);
        const size_t n = static_cast<size_t>(rows * cols), nr = static_cast<size_t>(rows);
        std::vector<float> y(n), mean(nr), rstd(nr), y2(n), mean2(nr), rstd2(nr);
        cpu::LayerNormForward(d.x.data(), d.gamma.data(), d.beta.data(), rows, cols, eps, y.data(),
                              mean.data(), rstd.data());
        testing::ReplayLnForward(d, eps, &y2, &mean2, &rstd2);
        ASSERT_TRUE(BitwiseEqual(mean2, mean)) << "mean";
        ASSERT_TRUE(AllClose(rstd2, rstd, kCpuAbsTol, kCpuRelTol)) << "rstd";
        ASSERT_TRUE(AllClose(y2, y, kCpuAbsTol, kCpuRelTol)) << "y";

        std::vector<float> old_g = rng.Vector(cols), old_b = rng.Vector(cols);
        if (grad_beta == 0.0f) {  // garbage that must be ignored
          std::fill(old_g.begin(), old_g.end(), std::nanf(""));
          std::fill(old_b.begin(), old_b.end(), std::nanf(""));
        }
        // The replay's backward starts from the CPU's mean / rstd, as the GPU's would.
        std::vector<float> dx(n), dg = old_g, db = old_b, dx2(n), dg2 = old_g, db2 = old_b;
        cpu::LayerNormBackward(d.x.data(), d.gamma.data(), mean.data(), rstd.data(), d.dy.data(),
                               rows, cols, grad_beta, dx.data(), dg.data(), db.data());
        testing::ReplayLnBackward(d, mean, rstd, grad_beta, &dx2, &dg2, &db2);
        ASSERT_TRUE(AllClose(dx2, dx, kCpuAbsTol, kCpuRelTol)) << "dx";
        ASSERT_TRUE(AllClose(dg2, dg, kCpuAbsTol, kCpuRelTol)) << "dgamma";
        if (rows <= kLnMinChunkRows) {  // one chunk: the CPU's order exactly
          ASSERT_TRUE(BitwiseEqual(db2, db)) << "dbeta";
        } else {
          ASSERT_TRUE(WithinUlps(db2, db, 1)) << "dbeta";
        }
      }
    }
  }
}

TEST(CudaLayerNormOrderHostTest, ChunksTileTheRows) {
  std::vector<int64_t> sizes;
  for (int64_t r = 0; r <= 3000; ++r) sizes.push_back(r);
  for (int64_t r : {int64_t{8191}, int64_t{8192}, int64_t{8193}, int64_t{65536}, int64_t{1000003}, int64_t{1} << 31}) sizes.push_back(r);
  for (int64_t rows : sizes) {
    const int64_t chunks = LnChunkCount(rows);
    ASSERT_LE(chunks, kLnMaxChunks) << rows;
    if (rows > 0 && rows <= kLnMinChunkRows) {
      ASSERT_EQ(chunks, 1) << rows;
    }
    int64_t next = 0;
    for (int64_t k = 0; k < chunks; ++k) {
      int64_t begin = -1, end = -1;
      LnChunkRange(rows, k, &begin, &end);
      ASSERT_EQ(begin, next) << "rows=" << rows << " k=" << k;
      ASSERT_GT(end, begin) << "rows=" << rows << " k=" << k;
      if (k + 1 < chunks) {
        ASSERT_GE(end - begin, kLnMinChunkRows) << rows;
      }
      next = end;
    }
    ASSERT_EQ(next, rows);
  }
}

// ---- recurrent ---------------------------------------------------------------------


TEST(CudaRecurrentCellHostTest, LstmReplayMatchesCpu) {
  TestRng rng(75);
  for (int64_t batch : {1, 3}) {
    for (int64_t units : {1, 7, 33}) {
      for (const StepFlags& f : AllFlags(false)) {
        StepBuffers a = testing::MakeStep(rng, batch, units, 4);
        SCOPED_TRACE(Describe(a.s, f));
        StepBuffers b = a;
        const int64_t go = a.gate_offset(), so = a.state_offset();
        cpu::LstmCellForward(a.s, a.gates.data() + go, f.prev ? a.c_prev.data() : nullptr,
                             a.c.data() + so, a.h.data() + so, 1.0f);
        testing::ReplayLstmForward(&b, f, 1.0f);
        ASSERT_TRUE(AllClose(b.gates, a.gates, kCpuAbsTol, kCpuRelTol)) << "gates";
        ASSERT_TRUE(AllClose(b.c, a.c, kCpuAbsTol, kCpuRelTol)) << "c";
        ASSERT_TRUE(AllClose(b.h, a.h, kCpuAbsTol, kCpuRelTol)) << "h";

        b = a;  // backward from the same activations
        std::vector<float> dg_a(a.gates.size(), -7.0f), dg_b = dg_a;
        cpu::LstmCellBackward(a.s, a.gates.data() + go, f.prev ? a.c_prev.data() : nullptr,
                              a.c.data() + so, f.dy ? a.dy.data() : nullptr, a.dy_stride,
                              f.carry ? a.carry.data() : nullptr, a.dc.data(), dg_a.data() + go);
        testing::ReplayLstmBackward(&b, f, &dg_b);
        ASSERT_TRUE(AllClose(dg_b, dg_a, kCpuAbsTol, kCpuRelTol)) << "dgates";
        ASSERT_TRUE(AllClose(b.dc, a.dc, kCpuAbsTol, kCpuRelTol)) << "dc";
      }
    }
  }
}

TEST(CudaRecurrentCellHostTest, GruReplayMatchesCpu) {
  TestRng rng(76);
  for (int64_t batch : {1, 3}) {
    for (int64_t units : {1, 7, 33}) {
      for (const StepFlags& f : AllFlags(true)) {
        StepBuffers a = testing::MakeStep(rng, batch, units, 3);
        SCOPED_TRACE(Describe(a.s, f));
        StepBuffers b = a;
        const int64_t go = a.gate_offset(), so = a.state_offset();
        cpu::GruCellForward(a.s, a.gates.data() + go, a.rec.data() + go, a.rec_bias.data(),
                            f.prev ? a.h.data() : nullptr, a.h.data() + so);
        testing::ReplayGruForward(&b, f);
        ASSERT_TRUE(AllClose(b.gates, a.gates, kCpuAbsTol, kCpuRelTol)) << "gates";
        ASSERT_TRUE(AllClose(b.rec, a.rec, kCpuAbsTol, kCpuRelTol)) << "rec";
        ASSERT_TRUE(AllClose(b.h, a.h, kCpuAbsTol, kCpuRelTol)) << "h";

        b = a;
        std::vector<float> dg_a(a.gates.size(), -7.0f), dg_b = dg_a, dr_a = dg_a, dr_b = dg_a;
        std::vector<float> dhp_a(static_cast<size_t>(batch * units), -9.0f), dhp_b = dhp_a;
        cpu::GruCellBackward(a.s, a.gates.data() + go, a.rec.data() + go,
                             f.prev ? a.h.data() : nullptr, f.dy ? a.dy.data() : nullptr,
                             a.dy_stride, f.carry ? a.carry.data() : nullptr,
                             f.alias ? a.carry.data() : dhp_a.data(), dg_a.data() + go,
                             dr_a.data() + go);
        testing::ReplayGruBackward(&b, f, &dhp_b, &dg_b, &dr_b);
        ASSERT_TRUE(AllClose(dg_b, dg_a, kCpuAbsTol, kCpuRelTol)) << "dgates";
        ASSERT_TRUE(AllClose(dr_b, dr_a, kCpuAbsTol, kCpuRelTol)) << "drec";
        ASSERT_TRUE(AllClose(dhp_b, dhp_a, kCpuAbsTol, kCpuRelTol)) << "dh_prev";
        ASSERT_TRUE(AllClose(b.carry, a.carry, kCpuAbsTol, kCpuRelTol)) << "dh_carry";
      }
    }
  }
}

}  // namespace
}  // namespace lockstep::kernels::cuda
