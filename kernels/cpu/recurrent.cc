// LSTM and GRU cell kernels: per-sample loops over the units that g++ -O3
// vectorises (AVX2 and baseline clones; fast_math.h sigmoid / tanh). Optional
// inputs (previous state, dy, carried dh) are template flags, so the inner loops
// carry no branches.
#include "kernels/cpu/recurrent.h"

#include "common/check.h"
#include "kernels/cpu/fast_math.h"

namespace lockstep::kernels::cpu {
namespace {

// One sample of the LSTM forward; g: 4n gate pre-activations in, activations out.
template <bool kPrev>
LS_INLINE void LstmRowForward(int64_t n, float* __restrict g, const float* __restrict cp, float* __restrict cb,
                           float* __restrict hb, float forget_bias) {
  for (int64_t u = 0; u < n; ++u) {
    const float i = FastSigmoid(g[u]);
    const float f = FastSigmoid(g[n + u] + forget_bias);
    const float cand = FastTanh(g[2 * n + u]);
    const float o = FastSigmoid(g[3 * n + u]);
    g[u] = i;
    g[n + u] = f;
    g[2 * n + u] = cand;
    g[3 * n + u] = o;
    const float cn = kPrev ? f * cp[u] + i * cand : i * cand;
    cb[u] = cn;
    hb[u] = o * FastTanh(cn);
  }
}

// The row bodies take plain pointers; the wrappers below say what may alias what
// (restrict), for the vectoriser: a separate gradient buffer (dg never g), or the
// gates' own buffer overwritten in place (one pointer for both, so it cannot be
// confused with the others). Each index is read before it is written.
template <bool kPrev, bool kDy, bool kCarry>
LS_INLINE void LstmRowBackwardBody(int64_t n, const float* g, const float* cp, const float* cb, const float* dyb,
                                   const float* carry, float* dcb, float* dg) {
  for (int64_t u = 0; u < n; ++u) {
    const float i = g[u], f = g[n + u], cand = g[2 * n + u], o = g[3 * n + u];
    float dh = kDy ? dyb[u] : 0.0f;
    if (kCarry) dh += carry[u];
    const float tc = FastTanh(cb[u]);
    const float dcell = dcb[u] + dh * o * (1.0f - tc * tc);
    const float cprev = kPrev ? cp[u] : 0.0f;
    dg[u] = dcell * cand * i * (1.0f - i);
    dg[n + u] = dcell * cprev * f * (1.0f - f);
    dg[2 * n + u] = dcell * i * (1.0f - cand * cand);
    dg[3 * n + u] = dh * tc * o * (1.0f - o);
    dcb[u] = dcell * f;
  }
}

template <bool kPrev, bool kDy, bool kCarry>
LS_INLINE void LstmRowBackward(int64_t n, const float* __restrict g, const float* __restrict cp,
                               const float* __restrict cb, const float* __restrict dyb, const float* __restrict carry,
                               float* __restrict dcb, float* __restrict dg) {
  LstmRowBackwardBody<kPrev, kDy, kCarry>(n, g, cp, cb, dyb, carry, dcb, dg);
}

template <bool kPrev, bool kDy, bool kCarry>
LS_INLINE void LstmRowBackwardInPlace(int64_t n, float* __restrict g, const float* __restrict cp,
                                      const float* __restrict cb, const float* __restrict dyb,
                                      const float* __restrict carry, float* __restrict dcb) {
  LstmRowBackwardBody<kPrev, kDy, kCarry>(n, g, cp, cb, dyb, carry, dcb, g);
}

template <bool kPrev, bool kDy, bool kCarry>
LS_INLINE void LstmBackwardRows(const RecurrentStep& s, const float* gates, const float* c_prev, const float* c,
                      const float* dy, int64_t dy_stride, const float* dh_carry, float* dc, float* dgates) {
  const int64_t n = s.units;
  for (int64_t b = 0; b < s.batch; ++b) {
    const float* cp = kPrev ? c_prev + b * s.state_stride : nullptr;
    const float* dyb = kDy ? dy + b * dy_stride : nullptr;
    const float* carry = kCarry ? dh_carry + b * n : nullptr;
    const float* cb = c + b * s.state_stride;
    float* dg = dgates + b * s.gate_stride;
    if (gates == dgates) {
      LstmRowBackwardInPlace<kPrev, kDy, kCarry>(n, dg, cp, cb, dyb, carry, dc + b * n);
    } else {
      LstmRowBackward<kPrev, kDy, kCarry>(n, gates + b * s.gate_stride, cp, cb, dyb, carry, dc + b * n, dg);
    }
  }
}

template <bool kPrev>
LS_INLINE void GruRowForward(int64_t n, float* __restrict g, float* __restrict r, const float* __restrict rec_bias,
                          const float* __restrict hp, float* __restrict hb) {
  for (int64_t k = 0; k < 3 * n; ++k) r[k] = kPrev ? r[k] + rec_bias[k] : rec_bias[k];
  for (int64_t u = 0; u < n; ++u) {
    const float z = FastSigmoid(g[u] + r[u]);
    const float rs = FastSigmoid(g[n + u] + r[n + u]);
    const float hh = FastTanh(g[2 * n + u] + rs * r[2 * n + u]);
    g[u] = z;
    g[n + u] = rs;
    g[2 * n + u] = hh;
    hb[u] = kPrev ? z * hp[u] + (1.0f - z) * hh : (1.0f - z) * hh;
  }
}

// dh_prev may alias carry (same index read before written), so no restrict on them.
template <bool kPrev, bool kDy, bool kCarry>
LS_INLINE void GruRowBackwardBody(int64_t n, const float* g, const float* r, const float* hp, const float* dyb,
                                  const float* carry, float* dh_prev, float* dg, float* dr) {
  for (int64_t u = 0; u < n; ++u) {
    const float z = g[u], rs = g[n + u], hh = g[2 * n + u];
    float dh = kDy ? dyb[u] : 0.0f;
    if (kCarry) dh += carry[u];
    const float hpu = kPrev ? hp[u] : 0.0f;
    const float dz = dh * (hpu - hh) * z * (1.0f - z);      // d(pre-activation of z)
    const float dah = dh * (1.0f - z) * (1.0f - hh * hh);   // d(pre-activation of hh)
    const float dar = dah * r[2 * n + u] * rs * (1.0f - rs);
    dg[u] = dz;
    dg[n + u] = dar;
    dg[2 * n + u] = dah;
    dr[u] = dz;
    dr[n + u] = dar;
    dr[2 * n + u] = dah * rs;
    dh_prev[u] = dh * z;
  }
}

template <bool kPrev, bool kDy, bool kCarry>
LS_INLINE void GruRowBackward(int64_t n, const float* __restrict g, const float* __restrict r,
                              const float* __restrict hp, const float* __restrict dyb, const float* carry,
                              float* dh_prev, float* __restrict dg, float* __restrict dr) {
  GruRowBackwardBody<kPrev, kDy, kCarry>(n, g, r, hp, dyb, carry, dh_prev, dg, dr);
}

template <bool kPrev, bool kDy, bool kCarry>
LS_INLINE void GruRowBackwardInPlace(int64_t n, float* __restrict g, float* __restrict r, const float* __restrict hp,
                                     const float* __restrict dyb, const float* carry, float* dh_prev) {
  GruRowBackwardBody<kPrev, kDy, kCarry>(n, g, r, hp, dyb, carry, dh_prev, g, r);
}

template <bool kPrev, bool kDy, bool kCarry>
LS_INLINE void GruBackwardRows(const RecurrentStep& s, const float* gates, const float* rec, const float* h_prev,
                     const float* dy, int64_t dy_stride, const float* dh_carry, float* dh_prev, float* dgates,
                     float* drec) {
  const int64_t n = s.units;
  const bool in_place = gates == dgates;
  LS_CHECK(in_place == (rec == drec)) << "GruCellBackward: overwrites gates and rec in place, or neither";
  for (int64_t b = 0; b < s.batch; ++b) {
    const float* hp = kPrev ? h_prev + b * s.state_stride : nullptr;
    const float* dyb = kDy ? dy + b * dy_stride : nullptr;
    const float* carry = kCarry ? dh_carry + b * n : nullptr;
    float* dg = dgates + b * s.gate_stride;
    float* dr = drec + b * s.gate_stride;
    if (in_place) {
      GruRowBackwardInPlace<kPrev, kDy, kCarry>(n, dg, dr, hp, dyb, carry, dh_prev + b * n);
    } else {
      GruRowBackward<kPrev, kDy, kCarry>(n, gates + b * s.gate_stride, rec + b * s.gate_stride, hp, dyb, carry,
                                         dh_prev + b * n, dg, dr);
    }
  }
}

// Calls F<kPrev, kDy, kCarry> for the runtime flags (8 instantiations).
#define LS_DISPATCH3(F, p, d, c, ...)                \
  do {                                               \
    if (p) {                                         \
      if (d) {                                       \
        if (c) F<true, true, true>(__VA_ARGS__);     \
        else F<true, true, false>(__VA_ARGS__);      \
      } else {                                       \
        if (c) F<true, false, true>(__VA_ARGS__);    \
        else F<true, false, false>(__VA_ARGS__);     \
      }                                              \
    } else {                                         \
      if (d) {                                       \
        if (c) F<false, true, true>(__VA_ARGS__);    \
        else F<false, true, false>(__VA_ARGS__);     \
      } else {                                       \
        if (c) F<false, false, true>(__VA_ARGS__);   \
        else F<false, false, false>(__VA_ARGS__);    \
      }                                              \
    }                                                \
  } while (0)

}  // namespace

LS_KERNEL_CLONES void LstmCellForward(const RecurrentStep& s, float* gates, const float* c_prev, float* c,
                                      float* h, float forget_bias) {
  for (int64_t b = 0; b < s.batch; ++b) {
    float* g = gates + b * s.gate_stride;
    float* cb = c + b * s.state_stride;
    float* hb = h + b * s.state_stride;
    if (c_prev) {
      LstmRowForward<true>(s.units, g, c_prev + b * s.state_stride, cb, hb, forget_bias);
    } else {
      LstmRowForward<false>(s.units, g, nullptr, cb, hb, forget_bias);
    }
  }
}

LS_KERNEL_CLONES void LstmCellBackward(const RecurrentStep& s, const float* gates, const float* c_prev,
                                       const float* c, const float* dy, int64_t dy_stride,
                                       const float* dh_carry, float* dc, float* dgates) {
  LS_DISPATCH3(LstmBackwardRows, c_prev != nullptr, dy != nullptr, dh_carry != nullptr, s, gates, c_prev, c,
               dy, dy_stride, dh_carry, dc, dgates);
}

LS_KERNEL_CLONES void GruCellForward(const RecurrentStep& s, float* gates, float* rec, const float* rec_bias,
                                     const float* h_prev, float* h) {
  for (int64_t b = 0; b < s.batch; ++b) {
    float* g = gates + b * s.gate_stride;
    float* r = rec + b * s.gate_stride;
    float* hb = h + b * s.state_stride;
    if (h_prev) {
      GruRowForward<true>(s.units, g, r, rec_bias, h_prev + b * s.state_stride, hb);
    } else {
      GruRowForward<false>(s.units, g, r, rec_bias, nullptr, hb);
    }
  }
}

LS_KERNEL_CLONES void GruCellBackward(const RecurrentStep& s, const float* gates, const float* rec,
                                      const float* h_prev, const float* dy, int64_t dy_stride,
                                      const float* dh_carry, float* dh_prev, float* dgates, float* drec) {
  LS_DISPATCH3(GruBackwardRows, h_prev != nullptr, dy != nullptr, dh_carry != nullptr, s, gates, rec, h_prev,
               dy, dy_stride, dh_carry, dh_prev, dgates, drec);
}

}  // namespace lockstep::kernels::cpu
