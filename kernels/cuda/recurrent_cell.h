// One (sample, unit) element of the LSTM / GRU cell kernels of kernels/cuda/recurrent.cu,
// host- and device-callable so tests/cuda/sequence_index_test.cc runs them over whole
// steps on the CPU against cpu::Lstm* / cpu::Gru* (bitwise). Element idx = b * units + u
// is also the index into the contiguous (batch, units) buffers (dc, dh_carry, dh_prev);
// gate k of sample b is at b * gate_stride + k * units + u, its state at
// b * state_stride + u. The expressions are the CPU's (kernels/cpu/recurrent.cc),
// operand for operand. Header-only, no CUDA runtime dependency. Pure per element.
#pragma once

#include <cstdint>

#include "kernels/cuda/fast_math.h"

namespace lockstep::kernels::cuda {

// RecurrentStep by value (the kernels take it as an argument).
struct StepDims {
  int64_t batch, units, gate_stride, state_stride;
};

LS_HOST_DEVICE void LstmForwardElement(const StepDims& d, int64_t idx, float* gates,
                                       const float* c_prev, float* c, float* h,
                                       float forget_bias) {
  const int64_t n = d.units, b = idx / n, u = idx % n;
  float* g = gates + b * d.gate_stride;
  const int64_t si = b * d.state_stride + u;
  const float i = FastSigmoid(g[u]);
  const float f = FastSigmoid(g[n + u] + forget_bias);
  const float cand = FastTanh(g[2 * n + u]);
  const float o = FastSigmoid(g[3 * n + u]);
  g[u] = i;
  g[n + u] = f;
  g[2 * n + u] = cand;
  g[3 * n + u] = o;
  const float cn = c_prev != nullptr ? f * c_prev[si] + i * cand : i * cand;
  c[si] = cn;
  h[si] = o * FastTanh(cn);
}

LS_HOST_DEVICE void LstmBackwardElement(const StepDims& d, int64_t idx, const float* gates,
                                        const float* c_prev, const float* c, const float* dy,
                                        int64_t dy_stride, const float* dh_carry, float* dc,
                                        float* dgates) {
  const int64_t n = d.units, b = idx / n, u = idx % n;
  const float* g = gates + b * d.gate_stride;
  float* dg = dgates + b * d.gate_stride;
  const int64_t si = b * d.state_stride + u;
  const float i = g[u], f = g[n + u], cand = g[2 * n + u], o = g[3 * n + u];
  float dh = dy != nullptr ? dy[b * dy_stride + u] : 0.0f;
  if (dh_carry != nullptr) dh += dh_carry[idx];
  const float tc = FastTanh(c[si]);
  const float dcell = dc[idx] + dh * o * (1.0f - tc * tc);
  const float cprev = c_prev != nullptr ? c_prev[si] : 0.0f;
  dg[u] = dcell * cand * i * (1.0f - i);
  dg[n + u] = dcell * cprev * f * (1.0f - f);
  dg[2 * n + u] = dcell * i * (1.0f - cand * cand);
  dg[3 * n + u] = dh * tc * o * (1.0f - o);
  dc[idx] = dcell * f;
}

// The CPU adds rec_bias over all 3 * units entries of a row before the gates; entries
// k * units + u (k = 0, 1, 2) are this element's, so it can do its own three first.
LS_HOST_DEVICE void GruForwardElement(const StepDims& d, int64_t idx, float* gates, float* rec,
                                      const float* rec_bias, const float* h_prev, float* h) {
  const int64_t n = d.units, b = idx / n, u = idx % n;
  float* g = gates + b * d.gate_stride;
  float* r = rec + b * d.gate_stride;
  const bool prev = h_prev != nullptr;
  for (int k = 0; k < 3; ++k) {
    const int64_t j = k * n + u;
    r[j] = prev ? r[j] + rec_bias[j] : rec_bias[j];
  }
  const float z = FastSigmoid(g[u] + r[u]);
  const float rs = FastSigmoid(g[n + u] + r[n + u]);
  const float hh = FastTanh(g[2 * n + u] + rs * r[2 * n + u]);
  g[u] = z;
  g[n + u] = rs;
  g[2 * n + u] = hh;
  const int64_t si = b * d.state_stride + u;
  h[si] = prev ? z * h_prev[si] + (1.0f - z) * hh : (1.0f - z) * hh;
}

// dh_prev may alias dh_carry: element idx of dh_carry is read before dh_prev[idx] is written.
LS_HOST_DEVICE void GruBackwardElement(const StepDims& d, int64_t idx, const float* gates,
                                       const float* rec, const float* h_prev, const float* dy,
                                       int64_t dy_stride, const float* dh_carry, float* dh_prev,
                                       float* dgates, float* drec) {
  const int64_t n = d.units, b = idx / n, u = idx % n;
  const float* g = gates + b * d.gate_stride;
  const float* r = rec + b * d.gate_stride;
  float* dg = dgates + b * d.gate_stride;
  float* dr = drec + b * d.gate_stride;
  const float z = g[u], rs = g[n + u], hh = g[2 * n + u];
  float dh = dy != nullptr ? dy[b * dy_stride + u] : 0.0f;
  if (dh_carry != nullptr) dh += dh_carry[idx];
  const float hpu = h_prev != nullptr ? h_prev[b * d.state_stride + u] : 0.0f;
  const float dz = dh * (hpu - hh) * z * (1.0f - z);
  const float dah = dh * (1.0f - z) * (1.0f - hh * hh);
  const float dar = dah * r[2 * n + u] * rs * (1.0f - rs);
  dg[u] = dz;
  dg[n + u] = dar;
  dg[2 * n + u] = dah;
  dr[u] = dz;
  dr[n + u] = dar;
  dr[2 * n + u] = dah * rs;
  dh_prev[idx] = dh * z;
}

}  // namespace lockstep::kernels::cuda
