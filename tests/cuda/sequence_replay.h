// Host replays of the sequence CUDA kernels (embedding, layer norm, LSTM / GRU cells):
// each kernel's decomposition (buckets, 8-lane partials, row chunks, elements) run on
// the CPU with the LS_HOST_DEVICE functions the kernels themselves call. A GPU result
// must be bitwise its replay (same operations, same order, no FMA on either side: the
// CUDA target has --fmad=false and this header is compiled for baseline x86-64), and
// the replay is checked against the CPU kernels of kernels/cpu in
// sequence_index_test.cc. Those CPU kernels are compared with a tolerance, not
// bitwise: under GCC 12 their AVX2 (x86-64-v3) clones contract a * b + c into FMAs
// even in ISO C++ mode, so their last bits depend on the host CPU; built with
// -ffp-contract=off they equal the replays bitwise. Test-only, header-only.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "kernels/cpu/recurrent.h"
#include "kernels/cuda/embedding_index.h"
#include "kernels/cuda/layer_norm_order.h"
#include "kernels/cuda/recurrent_cell.h"
#include "tests/kernels/kernels_test_util.h"

namespace lockstep::kernels::cuda::testing {

// Replay versus cpu:: kernels whose AVX2 clone may use FMA (see the header comment).
constexpr double kCpuAbsTol = 1e-5;
constexpr double kCpuRelTol = 1e-5;

// ---- embedding ---------------------------------------------------------------------

// Ids in [0, vocab) nudged by up to +-0.45 (still naming the same row), many repeats.
inline std::vector<float> RandomIds(::lockstep::kernels::testing::TestRng& rng, int64_t n,
                                    int64_t vocab) {
  std::vector<float> ids(static_cast<size_t>(n));
  for (auto& id : ids) id = static_cast<float>(rng.Next() % vocab) + rng.Uniform(-0.45f, 0.45f);
  return ids;
}

// RandomIds with four invalid ids at fixed places -- below 0, == vocab, NaN, and one
// that rounds to vocab -- which the GPU skips (and the CPU would abort on). n > 20.
inline std::vector<float> RandomIdsWithFourInvalid(::lockstep::kernels::testing::TestRng& rng, int64_t n,
                                                   int64_t vocab) {
  std::vector<float> ids = RandomIds(rng, n, vocab);
  ids[3] = -1.0f;
  ids[7] = static_cast<float>(vocab);
  ids[8] = std::nanf("");
  ids[20] = static_cast<float>(vocab) - 0.4f;
  return ids;
}

inline std::vector<float> ReplayEmbeddingForward(const std::vector<float>& ids,
                                                 const std::vector<float>& table, int64_t vocab,
                                                 int64_t dim) {
  std::vector<float> y(ids.size() * static_cast<size_t>(dim));
  for (size_t i = 0; i < ids.size(); ++i) {
    const int64_t row = TokenIndex(ids[i], vocab);
    for (int64_t c = 0; c < dim; ++c) {
      y[i * dim + c] = row >= 0 ? table[row * dim + c] : std::nanf("");
    }
  }
  return y;
}

// Keys, a stable sort (std::stable_sort standing in for CUB's stable radix sort),
// bucket starts by LowerBound, one BucketSumElement per table element (all reading
// the old table, as the kernel's threads do).
inline std::vector<float> ReplayEmbeddingBackward(const std::vector<float>& ids,
                                                  const std::vector<float>& dy, int64_t vocab,
                                                  int64_t dim, float beta,
                                                  const std::vector<float>& dtable) {
  const int64_t n = static_cast<int64_t>(ids.size());
  std::vector<uint32_t> keys(ids.size());
  for (int64_t i = 0; i < n; ++i) {
    const int64_t row = TokenIndex(ids[i], vocab);
    keys[i] = static_cast<uint32_t>(row >= 0 ? row : vocab);
  }
  std::vector<int32_t> pos(ids.size());
  std::iota(pos.begin(), pos.end(), 0);
  std::stable_sort(pos.begin(), pos.end(),
                   [&](int32_t a, int32_t b) { return keys[a] < keys[b]; });
  std::vector<uint32_t> sorted_keys(ids.size());
  for (int64_t k = 0; k < n; ++k) sorted_keys[k] = keys[pos[k]];
  std::vector<int32_t> begin(static_cast<size_t>(vocab + 1));
  for (int64_t v = 0; v <= vocab; ++v) {
    begin[v] = static_cast<int32_t>(LowerBound(sorted_keys.data(), n, v));
  }
  std::vector<float> out(dtable.size());
  for (int64_t idx = 0; idx < vocab * dim; ++idx) {
    out[idx] = BucketSumElement(dy.data(), pos.data(), n > 0 ? begin.data() : nullptr, dim,
                                beta != 0.0f, dtable.data(), idx);
  }
  return out;
}

// ---- layer norm --------------------------------------------------------------------

struct LnData {
  int64_t rows, cols;
  std::vector<float> x, gamma, beta, dy;
};

inline LnData MakeLn(::lockstep::kernels::testing::TestRng& rng, int64_t rows, int64_t cols) {
  return LnData{rows, cols, rng.Vector(rows * cols, -2.0f, 4.0f), rng.Vector(cols, -0.5f, 0.5f),
                rng.Vector(cols, -0.5f, 0.5f), rng.Vector(rows * cols)};
}

// The forward kernel, group by group: eight lane partials joined by LnCombine.
inline void ReplayLnForward(const LnData& d, float eps, std::vector<float>* y,
                            std::vector<float>* mean, std::vector<float>* rstd) {
  for (int64_t r = 0; r < d.rows; ++r) {
    const float* xr = d.x.data() + r * d.cols;
    double p[kLnLanes], q[kLnLanes];
    for (int lane = 0; lane < kLnLanes; ++lane) p[lane] = LnLaneSum(xr, d.cols, lane);
    const double mu = LnCombine(p) / static_cast<double>(d.cols);
    for (int lane = 0; lane < kLnLanes; ++lane) {
      q[lane] = LnLaneSquaredDeviation(xr, d.cols, lane, mu);
    }
    const float rs = LnRstd(LnCombine(q), d.cols, eps);
    const float m = static_cast<float>(mu);
    (*mean)[r] = m;
    (*rstd)[r] = rs;
    for (int64_t c = 0; c < d.cols; ++c) {
      (*y)[r * d.cols + c] = LnY(xr[c], m, rs, d.gamma[c], d.beta[c]);
    }
  }
}

// The backward kernels: dx (if non-null) by lane dots; dgamma / dbeta (old values in,
// results out) by chunk partials added in chunk order.
inline void ReplayLnBackward(const LnData& d, const std::vector<float>& mean,
                             const std::vector<float>& rstd, float grad_beta,
                             std::vector<float>* dx, std::vector<float>* dgamma,
                             std::vector<float>* dbeta) {
  for (int64_t r = 0; dx != nullptr && r < d.rows; ++r) {
    const float* xr = d.x.data() + r * d.cols;
    const float* gr = d.dy.data() + r * d.cols;
    double p[kLnLanes], q[kLnLanes];
    for (int lane = 0; lane < kLnLanes; ++lane) {
      LnLaneDots(xr, gr, d.gamma.data(), mean[r], rstd[r], d.cols, lane, &p[lane], &q[lane]);
    }
    const float a = static_cast<float>(LnCombine(p) / static_cast<double>(d.cols));
    const float b = static_cast<float>(LnCombine(q) / static_cast<double>(d.cols));
    for (int64_t c = 0; c < d.cols; ++c) {
      (*dx)[r * d.cols + c] =
          LnDx(rstd[r], LnDxhat(gr[c], d.gamma[c]), a, LnXhat(xr[c], mean[r], rstd[r]), b);
    }
  }
  const int64_t chunks = LnChunkCount(d.rows);
  std::vector<double> pg(static_cast<size_t>(chunks * d.cols)), pb(pg.size());
  for (int64_t k = 0; k < chunks; ++k) {
    for (int64_t c = 0; c < d.cols; ++c) {
      LnChunkColumnSums(d.x.data(), mean.data(), rstd.data(), d.dy.data(), d.rows, d.cols, k, c,
                        &pg[k * d.cols + c], &pb[k * d.cols + c]);
    }
  }
  for (int64_t c = 0; c < d.cols; ++c) {
    (*dgamma)[c] = LnParamGrad(grad_beta, (*dgamma)[c], LnSumChunks(pg.data(), chunks, d.cols, c));
    (*dbeta)[c] = LnParamGrad(grad_beta, (*dbeta)[c], LnSumChunks(pb.data(), chunks, d.cols, c));
  }
}

// ---- recurrent ---------------------------------------------------------------------

// Step t = 1 of (batch, 3 steps, ...) buffers with padding after each row, so strides
// exceed the rows and the floats between rows must come back untouched. Offsets:
// gates / rec / dgates / drec at gate_offset(), c / h at state_offset(); the previous
// state (c_prev, and h_prev for GRU = step 0 of h) at offset 0.
struct StepBuffers {
  cpu::RecurrentStep s;
  int64_t gates_per_unit = 0;
  int64_t dy_stride = 0;
  std::vector<float> gates, rec, rec_bias, c_prev, c, h, dy, carry, dc;
  int64_t gate_offset() const { return gates_per_unit * s.units; }
  int64_t state_offset() const { return s.units; }
};

inline StepBuffers MakeStep(::lockstep::kernels::testing::TestRng& rng, int64_t batch,
                            int64_t units, int64_t gates_per_unit) {
  constexpr int64_t kSteps = 3;
  StepBuffers b;
  b.gates_per_unit = gates_per_unit;
  b.s.batch = batch;
  b.s.units = units;
  b.s.gate_stride = kSteps * gates_per_unit * units + 5;
  b.s.state_stride = kSteps * units + 3;
  b.dy_stride = units + 2;
  b.gates = rng.Vector(batch * b.s.gate_stride, -6.0f, 6.0f);
  for (size_t i = 0; i < b.gates.size(); i += 7) b.gates[i] *= 2.5f;  // some past |x| = 10
  b.rec = rng.Vector(batch * b.s.gate_stride, -2.0f, 2.0f);
  b.rec_bias = rng.Vector(gates_per_unit * units);
  b.c_prev = rng.Vector(batch * b.s.state_stride, -2.0f, 2.0f);
  b.c = rng.Vector(batch * b.s.state_stride, -2.0f, 2.0f);
  b.h = rng.Vector(batch * b.s.state_stride);
  b.dy = rng.Vector(batch * b.dy_stride);
  b.carry = rng.Vector(batch * units);
  b.dc = rng.Vector(batch * units);
  return b;
}

inline StepDims DimsOf(const cpu::RecurrentStep& s) {
  return {s.batch, s.units, s.gate_stride, s.state_stride};
}

// Which optional inputs a case passes (the rest null).
struct StepFlags {
  bool prev = false, dy = false, carry = false, alias = false;  // alias: GRU dh_prev = dh_carry
};

// The launchers' element loops, over StepBuffers.
inline void ReplayLstmForward(StepBuffers* b, const StepFlags& f, float forget_bias) {
  const int64_t go = b->gate_offset(), so = b->state_offset();
  for (int64_t idx = 0; idx < b->s.batch * b->s.units; ++idx) {
    LstmForwardElement(DimsOf(b->s), idx, b->gates.data() + go,
                       f.prev ? b->c_prev.data() : nullptr, b->c.data() + so, b->h.data() + so,
                       forget_bias);
  }
}

inline void ReplayLstmBackward(StepBuffers* b, const StepFlags& f, std::vector<float>* dgates) {
  const int64_t go = b->gate_offset(), so = b->state_offset();
  for (int64_t idx = 0; idx < b->s.batch * b->s.units; ++idx) {
    LstmBackwardElement(DimsOf(b->s), idx, b->gates.data() + go,
                        f.prev ? b->c_prev.data() : nullptr, b->c.data() + so,
                        f.dy ? b->dy.data() : nullptr, b->dy_stride,
                        f.carry ? b->carry.data() : nullptr, b->dc.data(), dgates->data() + go);
  }
}

inline void ReplayGruForward(StepBuffers* b, const StepFlags& f) {
  const int64_t go = b->gate_offset(), so = b->state_offset();
  for (int64_t idx = 0; idx < b->s.batch * b->s.units; ++idx) {
    GruForwardElement(DimsOf(b->s), idx, b->gates.data() + go, b->rec.data() + go,
                      b->rec_bias.data(), f.prev ? b->h.data() : nullptr, b->h.data() + so);
  }
}

// dh_prev: b->carry when f.alias, else *dh_prev.
inline void ReplayGruBackward(StepBuffers* b, const StepFlags& f, std::vector<float>* dh_prev,
                              std::vector<float>* dgates, std::vector<float>* drec) {
  const int64_t go = b->gate_offset();
  float* out = f.alias ? b->carry.data() : dh_prev->data();
  for (int64_t idx = 0; idx < b->s.batch * b->s.units; ++idx) {
    GruBackwardElement(DimsOf(b->s), idx, b->gates.data() + go, b->rec.data() + go,
                       f.prev ? b->h.data() : nullptr, f.dy ? b->dy.data() : nullptr,
                       b->dy_stride, f.carry ? b->carry.data() : nullptr, out,
                       dgates->data() + go, drec->data() + go);
  }
}

// Every combination of the optional inputs (the alias case only with a carry).
inline std::vector<StepFlags> AllFlags(bool with_alias) {
  std::vector<StepFlags> out;
  for (int mask = 0; mask < (with_alias ? 16 : 8); ++mask) {
    StepFlags f;
    f.prev = mask & 1;
    f.dy = mask & 2;
    f.carry = mask & 4;
    f.alias = mask & 8;
    if (f.alias && !f.carry) continue;
    out.push_back(f);
  }
  return out;
}

inline ::testing::Message Describe(const cpu::RecurrentStep& s, const StepFlags& f) {
  return ::testing::Message() << "batch=" << s.batch << " units=" << s.units << " prev=" << f.prev
                              << " dy=" << f.dy << " carry=" << f.carry << " alias=" << f.alias;
}

}  // namespace lockstep::kernels::cuda::testing
