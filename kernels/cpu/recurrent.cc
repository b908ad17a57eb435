// LSTM and GRU cell kernels: plain per-sample loops over the units.
#include "kernels/cpu/recurrent.h"

#include <cmath>

namespace lockstep::kernels::cpu {
namespace {

inline float Sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

inline float IncomingGradient(const float* dy, int64_t dy_stride, const float* dh_carry,
                              int64_t units, int64_t b, int64_t u) {
  float g = dy ? dy[b * dy_stride + u] : 0.0f;
  if (dh_carry) g += dh_carry[b * units + u];
  return g;
}

}  // namespace

void LstmCellForward(const RecurrentStep& s, float* gates, const float* c_prev, float* c, float* h,
                     float forget_bias) {
  const int64_t n = s.units;
  for (int64_t b = 0; b < s.batch; ++b) {
    float* g = gates + b * s.gate_stride;
    float* cb = c + b * s.state_stride;
    float* hb = h + b * s.state_stride;
    const float* cp = c_prev ? c_prev + b * s.state_stride : nullptr;
    for (int64_t u = 0; u < n; ++u) {
      const float i = Sigmoid(g[u]);
      const float f = Sigmoid(g[n + u] + forget_bias);
      const float cand = std::tanh(g[2 * n + u]);
      const float o = Sigmoid(g[3 * n + u]);
      g[u] = i;
      g[n + u] = f;
      g[2 * n + u] = cand;
      g[3 * n + u] = o;
      const float cn = (cp ? f * cp[u] : 0.0f) + i * cand;
      cb[u] = cn;
      hb[u] = o * std::tanh(cn);
    }
  }
}

void LstmCellBackward(const RecurrentStep& s, const float* gates, const float* c_prev,
                      const float* c, const float* dy, int64_t dy_stride, const float* dh_carry,
                      float* dc, float* dgates) {
  const int64_t n = s.units;
  for (int64_t b = 0; b < s.batch; ++b) {
    const float* g = gates + b * s.gate_stride;
    const float* cb = c + b * s.state_stride;
    const float* cp = c_prev ? c_prev + b * s.state_stride : nullptr;
    float* dg = dgates + b * s.gate_stride;
    float* dcb = dc + b * n;
    for (int64_t u = 0; u < n; ++u) {
      const float i = g[u], f = g[n + u], cand = g[2 * n + u], o = g[3 * n + u];
      const float dh = IncomingGradient(dy, dy_stride, dh_carry, n, b, u);
      const float tc = std::tanh(cb[u]);
      const float dcell = dcb[u] + dh * o * (1.0f - tc * tc);
      const float cprev = cp ? cp[u] : 0.0f;
      dg[u] = dcell * cand * i * (1.0f - i);
      dg[n + u] = dcell * cprev * f * (1.0f - f);
      dg[2 * n + u] = dcell * i * (1.0f - cand * cand);
      dg[3 * n + u] = dh * tc * o * (1.0f - o);
      dcb[u] = dcell * f;
    }
  }
}

void GruCellForward(const RecurrentStep& s, float* gates, float* rec, const float* rec_bias,
                    const float* h_prev, float* h) {
  const int64_t n = s.units;
  for (int64_t b = 0; b < s.batch; ++b) {
    float* g = gates + b * s.gate_stride;
    float* r = rec + b * s.gate_stride;
    const float* hp = h_prev ? h_prev + b * s.state_stride : nullptr;
    float* hb = h + b * s.state_stride;
    for (int64_t k = 0; k < 3 * n; ++k) r[k] = (hp ? r[k] : 0.0f) + rec_bias[k];
    for (int64_t u = 0; u < n; ++u) {
      const float z = Sigmoid(g[u] + r[u]);
      const float rs = Sigmoid(g[n + u] + r[n + u]);
      const float hh = std::tanh(g[2 * n + u] + rs * r[2 * n + u]);
      g[u] = z;
      g[n + u] = rs;
      g[2 * n + u] = hh;
      hb[u] = z * (hp ? hp[u] : 0.0f) + (1.0f - z) * hh;
    }
  }
}

void GruCellBackward(const RecurrentStep& s, const float* gates, const float* rec,
                     const float* h_prev, const float* dy, int64_t dy_stride,
                     const float* dh_carry, float* dh_prev, float* dgates, float* drec) {
  const int64_t n = s.units;
  for (int64_t b = 0; b < s.batch; ++b) {
    const float* g = gates + b * s.gate_stride;
    const float* r = rec + b * s.gate_stride;
    const float* hp = h_prev ? h_prev + b * s.state_stride : nullptr;
    float* dg = dgates + b * s.gate_stride;
    float* dr = drec + b * s.gate_stride;
    for (int64_t u = 0; u < n; ++u) {
      const float z = g[u], rs = g[n + u], hh = g[2 * n + u];
      const float dh = IncomingGradient(dy, dy_stride, dh_carry, n, b, u);
      const float hpu = hp ? hp[u] : 0.0f;
      const float dz = dh * (hpu - hh) * z * (1.0f - z);  // d(pre-activation of z)
      const float dah = dh * (1.0f - z) * (1.0f - hh * hh);  // d(pre-activation of hh)
      const float dar = dah * r[2 * n + u] * rs * (1.0f - rs);
      dg[u] = dz;
      dg[n + u] = dar;
      dg[2 * n + u] = dah;
      dr[u] = dz;
      dr[n + u] = dar;
      dr[2 * n + u] = dah * rs;
      dh_prev[b * n + u] = dh * z;
    }
  }
}

}  // namespace lockstep::kernels::cpu
