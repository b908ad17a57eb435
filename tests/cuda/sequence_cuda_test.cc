// Sequence kernels on the GPU (embedding, layer norm, LSTM / GRU cells) against the
// CPU kernels of kernels/cpu and the host replays of tests/cuda/sequence_replay.h.
// A GPU result must be bitwise its replay (same operations in the same order) and
// bitwise again on a second run; it must equal the CPU kernel bitwise where that does
// only copies and additions (embedding, layer-norm mean, single-chunk dbeta) and to a
// tight tolerance elsewhere (the CPU's AVX2 clones may fuse multiply-adds, see
// sequence_replay.h). Odd sizes, vocab 1, n / rows / batch 0, beta 0 (over NaN
// garbage) and 1, null optional inputs and strides wider than the rows.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/cpu/embedding.h"
#include "kernels/cpu/layer_norm.h"
#include "kernels/cpu/recurrent.h"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/layer_norm.h"
#include "kernels/cuda/layer_norm_order.h"
#include "kernels/cuda/recurrent.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/cuda/sequence_replay.h"
#include "tests/kernels/kernels_test_util.h"

namespace lockstep::kernels::cuda {
namespace {

using ::lockstep::kernels::testing::TestRng;
using testing::AllClose;
using testing::AllFlags;
using testing::BitwiseEqual;
using testing::DeviceBuffer;
using testing::kCpuAbsTol;
using testing::kCpuRelTol;
using testing::StepBuffers;
using testing::StepFlags;
using testing::Describe;
using testing::WithinUlps;

// DeviceBuffer's fill (all bytes 0xFF), so untouched padding compares bitwise.
float Poison() {
  const uint32_t bits = 0xFFFFFFFFu;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

class CudaSequenceTest : public testing::CudaTest {
 protected:
  // DeviceBuffer fills and copies on the legacy default stream, which does not order
  // with our non-blocking stream_: settle both before launching and before reading.
  void Settle() { ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess); }
};

// ---- embedding ---------------------------------------------------------------------

TEST_F(CudaSequenceTest, EmbeddingForwardIsBitwiseTheCpus) {
  TestRng rng(81);
  for (int64_t vocab : {1, 97}) {
    for (int64_t n : {0, 1, 13, 1000}) {
      for (int64_t dim : {1, 5, 64}) {
        SCOPED_TRACE(::testing::Message() << "vocab=" << vocab << " n=" << n << " dim=" << dim);
        const std::vector<float> ids = testing::RandomIds(rng, n, vocab);
        const std::vector<float> table = rng.Vector(vocab * dim);
        std::vector<float> want(static_cast<size_t>(n * dim));
        cpu::EmbeddingForward(ids.data(), n, table.data(), vocab, dim, want.data());
        DeviceBuffer<float> d_ids(ids), d_table(table), d_y(n * dim);
        Settle();
        EmbeddingForward(d_ids.get(), n, d_table.get(), vocab, dim, d_y.get(), stream_);
        Settle();
        EXPECT_TRUE(BitwiseEqual(d_y.Download(), want));
      }
    }
  }
}

TEST_F(CudaSequenceTest, EmbeddingForwardMakesInvalidRowsNaN) {
  TestRng rng(82);
  const int64_t vocab = 5, dim = 7;
  const std::vector<float> ids = {0.2f, -1.0f, 4.4f, 5.0f, std::nanf(""), -0.6f, 4.6f, 3.0f};
  const int64_t n = static_cast<int64_t>(ids.size());
  const std::vector<float> table = rng.Vector(vocab * dim);
  DeviceBuffer<float> d_ids(ids), d_table(table), d_y(n * dim);
  Settle();
  EmbeddingForward(d_ids.get(), n, d_table.get(), vocab, dim, d_y.get(), stream_);
  Settle();
  EXPECT_TRUE(BitwiseEqual(d_y.Download(), testing::ReplayEmbeddingForward(ids, table, vocab, dim)));
  const std::vector<float> y = d_y.Download();
  for (int64_t i : {1, 3, 4, 5, 6}) EXPECT_TRUE(std::isnan(y[i * dim])) << "row " << i;
  for (int64_t c = 0; c < dim; ++c) EXPECT_EQ(y[7 * dim + c], table[3 * dim + c]);
}

// Runs EmbeddingBackward from `old` (beta 0: from NaN garbage) and returns dtable.
std::vector<float> RunEmbeddingBackward(cudaStream_t stream, const std::vector<float>& ids,
                                        const std::vector<float>& dy, int64_t vocab, int64_t dim,
                                        float beta, const std::vector<float>& old) {
  const int64_t n = static_cast<int64_t>(ids.size());
  DeviceBuffer<float> d_ids(ids), d_dy(dy), d_table(vocab * dim);  // starts NaN
  if (beta != 0.0f) d_table.Upload(old);
  DeviceBuffer<char> ws(static_cast<int64_t>(EmbeddingBackwardWorkspaceBytes(n, vocab)));
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EmbeddingBackward(d_ids.get(), n, d_dy.get(), vocab, dim, beta, d_table.get(), ws.get(), stream);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return d_table.Download();
}

TEST_F(CudaSequenceTest, EmbeddingBackwardIsBitwiseTheCpus) {
  TestRng rng(83);
  for (int64_t vocab : {1, 97}) {
    for (int64_t n : {0, 1, 13, 1000}) {
      for (int64_t dim : {1, 5, 64}) {
        for (float beta : {0.0f, 1.0f}) {
          SCOPED_TRACE(::testing::Message()
                       << "vocab=" << vocab << " n=" << n << " dim=" << dim << " beta=" << beta);
          const std::vector<float> ids = testing::RandomIds(rng, n, vocab);
          const std::vector<float> dy = rng.Vector(n * dim);
          const std::vector<float> old = rng.Vector(vocab * dim);
          std::vector<float> want = old;
          cpu::EmbeddingBackward(ids.data(), n, dy.data(), vocab, dim, beta, want.data());
          const std::vector<float> got = RunEmbeddingBackward(stream_, ids, dy, vocab, dim, beta, old);
          EXPECT_TRUE(BitwiseEqual(got, want));
          EXPECT_TRUE(BitwiseEqual(RunEmbeddingBackward(stream_, ids, dy, vocab, dim, beta, old), got))
              << "second run";
        }
      }
    }
  }
}

TEST_F(CudaSequenceTest, EmbeddingBackwardHandlesSkewedTokens) {
  // A char-LM-like skew: token 0 is a third of 20000 positions, the rest spread over 96.
  TestRng rng(84);
  const int64_t vocab = 97, dim = 48, n = 20000;
  std::vector<float> ids = testing::RandomIds(rng, n, vocab);
  for (int64_t i = 0; i < n; i += 3) ids[i] = 0.0f;
  const std::vector<float> dy = rng.Vector(n * dim), old = rng.Vector(vocab * dim);
  std::vector<float> want = old;
  cpu::EmbeddingBackward(ids.data(), n, dy.data(), vocab, dim, 1.0f, want.data());
  EXPECT_TRUE(BitwiseEqual(RunEmbeddingBackward(stream_, ids, dy, vocab, dim, 1.0f, old), want));
}

TEST_F(CudaSequenceTest, EmbeddingBackwardSkipsInvalidIds) {
  TestRng rng(85);
  const int64_t vocab = 11, dim = 6, n = 40;
  const std::vector<float> ids = testing::RandomIdsWithFourInvalid(rng, n, vocab);
  const std::vector<float> dy = rng.Vector(n * dim), old = rng.Vector(vocab * dim);
  for (float beta : {0.0f, 1.0f}) {
    EXPECT_TRUE(BitwiseEqual(RunEmbeddingBackward(stream_, ids, dy, vocab, dim, beta, old),
                             testing::ReplayEmbeddingBackward(ids, dy, vocab, dim, beta, old)))
        << "beta=" << beta;
  }
}

// ---- layer norm --------------------------------------------------------------------

struct LnGpuResult {
  std::vector<float> y, mean, rstd, dx, dgamma, dbeta;
};

// Forward, then backward from the GPU's mean / rstd; dgamma / dbeta start from old_g /
// old_b (grad_beta 1) or NaN garbage (grad_beta 0); with_dx false passes dx = null.
LnGpuResult RunLn(cudaStream_t stream, const testing::LnData& d, float eps, float grad_beta,
                  bool with_dx, const std::vector<float>& old_g, const std::vector<float>& old_b) {
  const int64_t n = d.rows * d.cols;
  DeviceBuffer<float> x(d.x), gamma(d.gamma), beta(d.beta), dy(d.dy), y(n), mean(d.rows),
      rstd(d.rows), dx(n), dg(d.cols), db(d.cols);
  if (grad_beta != 0.0f) {
    dg.Upload(old_g);
    db.Upload(old_b);
  }
  DeviceBuffer<char> ws(static_cast<int64_t>(LayerNormBackwardWorkspaceBytes(d.rows, d.cols)));
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  LayerNormForward(x.get(), gamma.get(), beta.get(), d.rows, d.cols, eps, y.get(), mean.get(),
                   rstd.get(), stream);
  LayerNormBackward(x.get(), gamma.get(), mean.get(), rstd.get(), dy.get(), d.rows, d.cols,
                    grad_beta, with_dx ? dx.get() : nullptr, dg.get(), db.get(), ws.get(), stream);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return {y.Download(), mean.Download(), rstd.Download(), dx.Download(), dg.Download(),
          db.Download()};
}

TEST_F(CudaSequenceTest, LayerNormIsBitwiseItsReplayAndCloseToTheCpu) {
  TestRng rng(86);
  const float eps = 1e-5f;
  for (int64_t rows : {1, 3, 32, 33, 1000}) {
    for (int64_t cols : {1, 7, 8, 9, 97, 1024}) {
      for (float grad_beta : {0.0f, 1.0f}) {
        for (bool with_dx : {true, false}) {
          SCOPED_TRACE(::testing::Message() << "rows=" << rows << " cols=" << cols << " grad_beta="
                                            << grad_beta << " dx=" << with_dx);
          const testing::LnData d = testing::MakeLn(rng, rows, cols);
          const size_t n = static_cast<size_t>(rows * cols), nr = static_cast<size_t>(rows);
          const std::vector<float> old_g = rng.Vector(cols), old_b = rng.Vector(cols);
          const LnGpuResult got = RunLn(stream_, d, eps, grad_beta, with_dx, old_g, old_b);

          std::vector<float> y(n), mean(nr), rstd(nr), dx(n), dg = old_g, db = old_b;
          testing::ReplayLnForward(d, eps, &y, &mean, &rstd);
          testing::ReplayLnBackward(d, mean, rstd, grad_beta, with_dx ? &dx : nullptr, &dg, &db);
          EXPECT_TRUE(BitwiseEqual(got.y, y)) << "y";
          EXPECT_TRUE(BitwiseEqual(got.mean, mean)) << "mean";
          EXPECT_TRUE(BitwiseEqual(got.rstd, rstd)) << "rstd";
          if (with_dx) {
            EXPECT_TRUE(BitwiseEqual(got.dx, dx)) << "dx";
          }
          EXPECT_TRUE(BitwiseEqual(got.dgamma, dg)) << "dgamma";
          EXPECT_TRUE(BitwiseEqual(got.dbeta, db)) << "dbeta";

          std::vector<float> cy(n), cmean(nr), crstd(nr), cdx(n), cdg = old_g, cdb = old_b;
          cpu::LayerNormForward(d.x.data(), d.gamma.data(), d.beta.data(), rows, cols, eps,
                                cy.data(), cmean.data(), crstd.data());
          cpu::LayerNormBackward(d.x.data(), d.gamma.data(), got.mean.data(), got.rstd.data(),
                                 d.dy.data(), rows, cols, grad_beta, cdx.data(), cdg.data(),
                                 cdb.data());
          EXPECT_TRUE(BitwiseEqual(got.mean, cmean)) << "cpu mean";
          EXPECT_TRUE(AllClose(got.rstd, crstd, kCpuAbsTol, kCpuRelTol)) << "cpu rstd";
          EXPECT_TRUE(AllClose(got.y, cy, kCpuAbsTol, kCpuRelTol)) << "cpu y";
          if (with_dx) {
            EXPECT_TRUE(AllClose(got.dx, cdx, kCpuAbsTol, kCpuRelTol)) << "cpu dx";
          }
          EXPECT_TRUE(AllClose(got.dgamma, cdg, kCpuAbsTol, kCpuRelTol)) << "cpu dgamma";
          if (rows <= kLnMinChunkRows) {
            EXPECT_TRUE(BitwiseEqual(got.dbeta, cdb)) << "cpu dbeta";
          } else {
            EXPECT_TRUE(WithinUlps(got.dbeta, cdb, 1)) << "cpu dbeta";
          }

          const LnGpuResult again = RunLn(stream_, d, eps, grad_beta, with_dx, old_g, old_b);
          EXPECT_TRUE(BitwiseEqual(again.y, got.y) && BitwiseEqual(again.dgamma, got.dgamma) &&
                      BitwiseEqual(again.dbeta, got.dbeta) &&
                      (!with_dx || BitwiseEqual(again.dx, got.dx)))
              << "second run";
        }
      }
    }
  }
}

TEST_F(CudaSequenceTest, LayerNormBackwardWithNoRowsOnlyAppliesGradBeta) {
  const int64_t cols = 9;
  TestRng rng(87);
  const std::vector<float> old = rng.Vector(cols);
  for (float grad_beta : {0.0f, 1.0f}) {
    DeviceBuffer<float> dg(cols), db(cols);  // NaN garbage
    if (grad_beta != 0.0f) {
      dg.Upload(old);
      db.Upload(old);
    }
    ASSERT_EQ(LayerNormBackwardWorkspaceBytes(0, cols), 0u);
    Settle();
    LayerNormForward(nullptr, nullptr, nullptr, 0, cols, 1e-5f, nullptr, nullptr, nullptr, stream_);
    LayerNormBackward(nullptr, nullptr, nullptr, nullptr, nullptr, 0, cols, grad_beta, nullptr,
                      dg.get(), db.get(), nullptr, stream_);
    Settle();
    const std::vector<float> want = grad_beta == 0.0f ? std::vector<float>(cols, 0.0f) : old;
    EXPECT_TRUE(BitwiseEqual(dg.Download(), want)) << "grad_beta=" << grad_beta;
    EXPECT_TRUE(BitwiseEqual(db.Download(), want)) << "grad_beta=" << grad_beta;
  }
}

// ---- recurrent ---------------------------------------------------------------------


// The device copies of a StepBuffers.
struct DeviceStep {
  explicit DeviceStep(const StepBuffers& b)
      : gates(b.gates), rec(b.rec), rec_bias(b.rec_bias), c_prev(b.c_prev), c(b.c), h(b.h),
        dy(b.dy), carry(b.carry), dc(b.dc) {}
  DeviceBuffer<float> gates, rec, rec_bias, c_prev, c, h, dy, carry, dc;
};

TEST_F(CudaSequenceTest, LstmCellIsBitwiseItsReplayAndCloseToTheCpu) {
  TestRng rng(88);
  for (int64_t batch : {0, 1, 5}) {
    for (int64_t units : {1, 7, 33, 300}) {
      for (const StepFlags& f : AllFlags(false)) {
        const StepBuffers host = testing::MakeStep(rng, batch, units, 4);
        SCOPED_TRACE(Describe(host.s, f));
        const int64_t go = host.gate_offset(), so = host.state_offset();
        std::vector<float> first_dgates;
        for (int run = 0; run < 2; ++run) {
          DeviceStep d(host);
          DeviceBuffer<float> dgates(static_cast<int64_t>(host.gates.size()));  // NaN padding
          Settle();
          LstmCellForward(host.s, d.gates.get() + go, f.prev ? d.c_prev.get() : nullptr,
                          d.c.get() + so, d.h.get() + so, 1.0f, stream_);
          LstmCellBackward(host.s, d.gates.get() + go, f.prev ? d.c_prev.get() : nullptr,
                           d.c.get() + so, f.dy ? d.dy.get() : nullptr, host.dy_stride,
                           f.carry ? d.carry.get() : nullptr, d.dc.get(), dgates.get() + go,
                           stream_);
          Settle();

          StepBuffers rep = host;
          std::vector<float> rep_dgates(host.gates.size(), Poison());
          testing::ReplayLstmForward(&rep, f, 1.0f);
          testing::ReplayLstmBackward(&rep, f, &rep_dgates);
          EXPECT_TRUE(BitwiseEqual(d.gates.Download(), rep.gates)) << "gates";
          EXPECT_TRUE(BitwiseEqual(d.c.Download(), rep.c)) << "c";
          EXPECT_TRUE(BitwiseEqual(d.h.Download(), rep.h)) << "h";
          EXPECT_TRUE(BitwiseEqual(d.dc.Download(), rep.dc)) << "dc";
          const std::vector<float> got_dgates = dgates.Download();
          EXPECT_TRUE(BitwiseEqual(got_dgates, rep_dgates)) << "dgates";
          if (run == 1) {
            EXPECT_TRUE(BitwiseEqual(got_dgates, first_dgates)) << "second run";
            continue;
          }
          first_dgates = got_dgates;

          StepBuffers cpu_b = host;
          std::vector<float> cpu_dgates(host.gates.size(), std::nanf(""));
          cpu::LstmCellForward(cpu_b.s, cpu_b.gates.data() + go,
                               f.prev ? cpu_b.c_prev.data() : nullptr, cpu_b.c.data() + so,
                               cpu_b.h.data() + so, 1.0f);
          cpu::LstmCellBackward(cpu_b.s, cpu_b.gates.data() + go,
                                f.prev ? cpu_b.c_prev.data() : nullptr, cpu_b.c.data() + so,
                                f.dy ? cpu_b.dy.data() : nullptr, cpu_b.dy_stride,
                                f.carry ? cpu_b.carry.data() : nullptr, cpu_b.dc.data(),
                                cpu_dgates.data() + go);
          EXPECT_TRUE(AllClose(d.h.Download(), cpu_b.h, kCpuAbsTol, kCpuRelTol)) << "cpu h";
          EXPECT_TRUE(AllClose(d.c.Download(), cpu_b.c, kCpuAbsTol, kCpuRelTol)) << "cpu c";
          EXPECT_TRUE(AllClose(d.dc.Download(), cpu_b.dc, kCpuAbsTol, kCpuRelTol)) << "cpu dc";
          EXPECT_TRUE(AllClose(got_dgates, cpu_dgates, kCpuAbsTol, kCpuRelTol)) << "cpu dgates";
        }
      }
    }
  }
}

TEST_F(CudaSequenceTest, GruCellIsBitwiseItsReplayAndCloseToTheCpu) {
  TestRng rng(89);
  for (int64_t batch : {0, 1, 5}) {
    for (int64_t units : {1, 7, 33, 300}) {
      for (const StepFlags& f : AllFlags(true)) {
        const StepBuffers host = testing::MakeStep(rng, batch, units, 3);
        SCOPED_TRACE(Describe(host.s, f));
        const int64_t go = host.gate_offset(), so = host.state_offset();
        std::vector<float> first_drec;
        for (int run = 0; run < 2; ++run) {
          DeviceStep d(host);
          DeviceBuffer<float> dgates(static_cast<int64_t>(host.gates.size())),
              drec(static_cast<int64_t>(host.gates.size())), dh_prev(batch * host.s.units);
          Settle();
          GruCellForward(host.s, d.gates.get() + go, d.rec.get() + go, d.rec_bias.get(),
                         f.prev ? d.h.get() : nullptr, d.h.get() + so, stream_);
          GruCellBackward(host.s, d.gates.get() + go, d.rec.get() + go,
                          f.prev ? d.h.get() : nullptr, f.dy ? d.dy.get() : nullptr,
                          host.dy_stride, f.carry ? d.carry.get() : nullptr,
                          f.alias ? d.carry.get() : dh_prev.get(), dgates.get() + go,
                          drec.get() + go, stream_);
          Settle();

          StepBuffers rep = host;
          std::vector<float> rep_dgates(host.gates.size(), Poison()), rep_drec = rep_dgates;
          std::vector<float> rep_dh_prev(static_cast<size_t>(batch * host.s.units), std::nanf(""));
          testing::ReplayGruForward(&rep, f);
          testing::ReplayGruBackward(&rep, f, &rep_dh_prev, &rep_dgates, &rep_drec);
          EXPECT_TRUE(BitwiseEqual(d.gates.Download(), rep.gates)) << "gates";
          EXPECT_TRUE(BitwiseEqual(d.rec.Download(), rep.rec)) << "rec";
          EXPECT_TRUE(BitwiseEqual(d.h.Download(), rep.h)) << "h";
          EXPECT_TRUE(BitwiseEqual(dgates.Download(), rep_dgates)) << "dgates";
          EXPECT_TRUE(BitwiseEqual(d.carry.Download(), rep.carry)) << "dh_carry";
          if (!f.alias) {
            EXPECT_TRUE(BitwiseEqual(dh_prev.Download(), rep_dh_prev)) << "dh_prev";
          }
          const std::vector<float> got_drec = drec.Download();
          EXPECT_TRUE(BitwiseEqual(got_drec, rep_drec)) << "drec";
          if (run == 1) {
            EXPECT_TRUE(BitwiseEqual(got_drec, first_drec)) << "second run";
            continue;
          }
          first_drec = got_drec;

          StepBuffers cpu_b = host;
          std::vector<float> cpu_dgates(host.gates.size(), std::nanf("")), cpu_drec = cpu_dgates;
          std::vector<float> cpu_dh_prev(static_cast<size_t>(batch * host.s.units), std::nanf(""));
          cpu::GruCellForward(cpu_b.s, cpu_b.gates.data() + go, cpu_b.rec.data() + go,
                              cpu_b.rec_bias.data(), f.prev ? cpu_b.h.data() : nullptr,
                              cpu_b.h.data() + so);
          cpu::GruCellBackward(cpu_b.s, cpu_b.gates.data() + go, cpu_b.rec.data() + go,
                               f.prev ? cpu_b.h.data() : nullptr, f.dy ? cpu_b.dy.data() : nullptr,
                               cpu_b.dy_stride, f.carry ? cpu_b.carry.data() : nullptr,
                               f.alias ? cpu_b.carry.data() : cpu_dh_prev.data(),
                               cpu_dgates.data() + go, cpu_drec.data() + go);
          EXPECT_TRUE(AllClose(d.h.Download(), cpu_b.h, kCpuAbsTol, kCpuRelTol)) << "cpu h";
          EXPECT_TRUE(AllClose(got_drec, cpu_drec, kCpuAbsTol, kCpuRelTol)) << "cpu drec";
          EXPECT_TRUE(AllClose(dgates.Download(), cpu_dgates, kCpuAbsTol, kCpuRelTol))
              << "cpu dgates";
          EXPECT_TRUE(AllClose(d.carry.Download(), cpu_b.carry, kCpuAbsTol, kCpuRelTol))
              << "cpu dh_carry";
        }
      }
    }
  }
}

// bf16 activation storage expands the kept gates into the buffer the cells then
// overwrite with their gradients: in place must be bitwise the separate buffers.
TEST_F(CudaSequenceTest, CellBackwardInPlaceIsBitwiseSeparateBuffers) {
  TestRng rng(90);
  for (int64_t gates_per_unit : {4, 3}) {
    SCOPED_TRACE(gates_per_unit == 4 ? "lstm" : "gru");
    const StepBuffers host = testing::MakeStep(rng, 5, 33, gates_per_unit);
    const cpu::RecurrentStep& s = host.s;
    const int64_t go = host.gate_offset(), so = host.state_offset(), n = s.batch * s.units;
    DeviceStep separate(host), in_place(host);
    DeviceBuffer<float> dgates(static_cast<int64_t>(host.gates.size())), drec(dgates.size());
    DeviceBuffer<float> dh_separate(n), dh_in_place(n);
    Settle();
    for (DeviceStep* d : {&separate, &in_place}) {
      if (gates_per_unit == 4) {
        LstmCellForward(s, d->gates.get() + go, d->c_prev.get(), d->c.get() + so, d->h.get() + so, 1.0f, stream_);
      } else {
        GruCellForward(s, d->gates.get() + go, d->rec.get() + go, d->rec_bias.get(), d->h.get(), d->h.get() + so,
                       stream_);
      }
    }
    DeviceStep& a = separate;
    DeviceStep& b = in_place;
    if (gates_per_unit == 4) {
      LstmCellBackward(s, a.gates.get() + go, a.c_prev.get(), a.c.get() + so, a.dy.get(), host.dy_stride,
                       a.carry.get(), a.dc.get(), dgates.get() + go, stream_);
      LstmCellBackward(s, b.gates.get() + go, b.c_prev.get(), b.c.get() + so, b.dy.get(), host.dy_stride,
                       b.carry.get(), b.dc.get(), b.gates.get() + go, stream_);
    } else {
      GruCellBackward(s, a.gates.get() + go, a.rec.get() + go, a.h.get(), a.dy.get(), host.dy_stride, a.carry.get(),
                      dh_separate.get(), dgates.get() + go, drec.get() + go, stream_);
      GruCellBackward(s, b.gates.get() + go, b.rec.get() + go, b.h.get(), b.dy.get(), host.dy_stride, b.carry.get(),
                      dh_in_place.get(), b.gates.get() + go, b.rec.get() + go, stream_);
    }
    Settle();
    const std::vector<float> want_g = dgates.Download(), want_r = drec.Download();
    const std::vector<float> got_g = b.gates.Download(), got_r = b.rec.Download();
    int64_t differ = 0;
    for (int64_t row = 0; row < s.batch; ++row) {  // the rows' entries; padding differs by design
      for (int64_t k = 0; k < gates_per_unit * s.units; ++k) {
        const size_t at = static_cast<size_t>(go + row * s.gate_stride + k);
        differ += std::memcmp(&got_g[at], &want_g[at], sizeof(float)) != 0;
        if (gates_per_unit == 3) differ += std::memcmp(&got_r[at], &want_r[at], sizeof(float)) != 0;
      }
    }
    EXPECT_EQ(differ, 0) << "gradient entries that differ in place";
    EXPECT_TRUE(BitwiseEqual(b.dc.Download(), a.dc.Download())) << "dc";
    EXPECT_TRUE(BitwiseEqual(dh_in_place.Download(), dh_separate.Download())) << "dh_prev";
  }
}

}  // namespace
}  // namespace lockstep::kernels::cuda
