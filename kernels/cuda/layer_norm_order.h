// Summation order of the GPU layer norm (kernels/cuda/layer_norm.cu), host- and
// device-callable so tests/cuda/sequence_index_test.cc replays it on the CPU against
// cpu::LayerNorm*. Row statistics: the CPU (kernels/cpu/layer_norm.cc) keeps eight
// double partial sums, partial j adding the columns c = j, j + 8, j + 16, ... in
// increasing c, combined in a fixed tree; on the GPU eight lanes each run one of
// those chains and LnCombine joins them the same way, so mean / rstd / y / dx are
// bitwise the CPU's. Column sums (dgamma, dbeta): rows are cut into chunks of
// LnChunkRows(rows) consecutive rows, each chunk summed in row order (one partial per
// chunk and column, in double), the chunks then added in chunk order. A single chunk
// (rows <= kLnMinChunkRows) is exactly the CPU's order; more chunks regroup the
// double sum, which rounds to the same float nearly always (not guaranteed).
// Header-only, no CUDA runtime dependency. Pure.
#pragma once

#include <math.h>

#include <cstdint>

#include "kernels/cuda/philox.h"  // LS_HOST_DEVICE

namespace lockstep::kernels::cuda {

constexpr int kLnLanes = 8;                 // the CPU's eight partial sums
constexpr int64_t kLnMinChunkRows = 32;     // rows summed by one thread before chunking
constexpr int64_t kLnMaxChunks = 256;       // bounds the workspace: 2 * 256 * cols doubles

// The CPU's Combine of the eight partials.
LS_HOST_DEVICE double LnCombine(const double* p) {
  return ((p[0] + p[4]) + (p[1] + p[5])) + ((p[2] + p[6]) + (p[3] + p[7]));
}

// Partial `lane` of sum_c x[c].
LS_HOST_DEVICE double LnLaneSum(const float* x, int64_t cols, int lane) {
  double s = 0.0;
  for (int64_t c = lane; c < cols; c += kLnLanes) s += x[c];
  return s;
}

// Partial `lane` of sum_c (x[c] - mu)^2.
LS_HOST_DEVICE double LnLaneSquaredDeviation(const float* x, int64_t cols, int lane, double mu) {
  double s = 0.0;
  for (int64_t c = lane; c < cols; c += kLnLanes) {
    const double d = x[c] - mu;
    s += d * d;
  }
  return s;
}

// 1 / sqrt(var + eps) from the combined squared deviation, as the CPU rounds it.
LS_HOST_DEVICE float LnRstd(double squared_deviation, int64_t cols, float eps) {
  return static_cast<float>(1.0 / sqrt(squared_deviation / static_cast<double>(cols) + eps));
}

// The CPU's per-element expressions: the forward output, the backward intermediates
// xhat and dxhat, and dx from the row's means a (of dxhat) and b (of dxhat * xhat).
LS_HOST_DEVICE float LnY(float x, float mean, float rstd, float gamma, float beta) {
  return (x - mean) * rstd * (1.0f + gamma) + beta;
}
LS_HOST_DEVICE float LnXhat(float x, float mean, float rstd) { return (x - mean) * rstd; }
LS_HOST_DEVICE float LnDxhat(float dy, float gamma) { return dy * (1.0f + gamma); }
LS_HOST_DEVICE float LnDx(float rstd, float dxhat, float a, float xhat, float b) {
  return rstd * (dxhat - a - xhat * b);
}

// Partials `lane` of sum_c dxhat[c] and sum_c dxhat[c] * xhat[c] for one row.
LS_HOST_DEVICE void LnLaneDots(const float* x, const float* dy, const float* gamma, float mean,
                               float rstd, int64_t cols, int lane, double* sum_dxhat,
                               double* sum_dxhat_xhat) {
  double p = 0.0, q = 0.0;
  for (int64_t c = lane; c < cols; c += kLnLanes) {
    const float xh = LnXhat(x[c], mean, rstd);
    const float dxh = LnDxhat(dy[c], gamma[c]);
    p += dxh;
    q += static_cast<double>(dxh) * xh;
  }
  *sum_dxhat = p;
  *sum_dxhat_xhat = q;
}

// Rows per chunk of the column sums: at least kLnMinChunkRows, and few enough chunks
// (<= kLnMaxChunks). A function of rows only, so results do not depend on the device.
LS_HOST_DEVICE int64_t LnChunkRows(int64_t rows) {
  const int64_t spread = (rows + kLnMaxChunks - 1) / kLnMaxChunks;
  return spread > kLnMinChunkRows ? spread : kLnMinChunkRows;
}

LS_HOST_DEVICE int64_t LnChunkCount(int64_t rows) {
  const int64_t per = LnChunkRows(rows);
  return (rows + per - 1) / per;
}

// Rows [*begin, *end) of chunk k.
LS_HOST_DEVICE void LnChunkRange(int64_t rows, int64_t k, int64_t* begin, int64_t* end) {
  const int64_t per = LnChunkRows(rows);
  *begin = k * per;
  *end = *begin + per < rows ? *begin + per : rows;
}

// Chunk k's sums for column c (dgamma: dy * xhat, dbeta: dy), its rows in order, in
// double, as the CPU accumulates them.
LS_HOST_DEVICE void LnChunkColumnSums(const float* x, const float* mean, const float* rstd,
                                      const float* dy, int64_t rows, int64_t cols, int64_t k,
                                      int64_t c, double* dgamma_sum, double* dbeta_sum) {
  int64_t begin = 0, end = 0;
  LnChunkRange(rows, k, &begin, &end);
  double dg = 0.0, db = 0.0;
  for (int64_t r = begin; r < end; ++r) {
    const float g = dy[r * cols + c];
    const float xh = LnXhat(x[r * cols + c], mean[r], rstd[r]);
    dg += static_cast<double>(g) * xh;
    db += g;
  }
  *dgamma_sum = dg;
  *dbeta_sum = db;
}

// Column c's total over the chunk partials (chunks, cols), in chunk order. Starting
// from +0 changes nothing: a partial starts at +0 too, so it is never -0.
LS_HOST_DEVICE double LnSumChunks(const double* partial, int64_t chunks, int64_t cols, int64_t c) {
  double s = 0.0;
  for (int64_t k = 0; k < chunks; ++k) s += partial[k * cols + c];
  return s;
}

// Final parameter gradient from the old value and the row sum, as the CPU writes it:
// grad_beta 0 ignores old (it may be garbage), otherwise grad_beta * old (in float).
LS_HOST_DEVICE float LnParamGrad(float grad_beta, float old, double sum) {
  return static_cast<float>((grad_beta == 0.0f ? 0.0 : grad_beta * old) + sum);
}

}  // namespace lockstep::kernels::cuda
