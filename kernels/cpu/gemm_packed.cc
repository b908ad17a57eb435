// Packed-B GEMM: register tiles of 4 rows x 16 columns (8 AVX2 accumulators)
// over a 16-column panel of B that stays in L1 for all row blocks. Built for
// AVX2+FMA and baseline x86-64 (LS_KERNEL_CLONES); this file is compiled with
// -ffp-contract=fast, so the AVX2 clone fuses multiply-adds (a GEMM is not
// bitwise portable across CPUs anyway: neither is OpenBLAS).
#include "kernels/cpu/gemm_packed.h"

#include <algorithm>
#include <cstring>

#include "common/check.h"
#include "kernels/cpu/fast_math.h"

namespace lockstep::kernels::cpu {
namespace {

constexpr int64_t kPanel = 16;  // columns per packed panel
constexpr int kRows = 4;        // rows per register tile

// C rows [0, R) x panel columns [0, w) from A rows (lda apart) and one packed panel.
template <int R>
LS_INLINE void Tile(int64_t k, const float* a, int64_t lda, const float* panel, float beta, float* c,
                    int64_t ldc, int64_t w) {
  V8 acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = V8{};
  for (int64_t kk = 0; kk < k; ++kk) {
    V8 b0, b1;
    std::memcpy(&b0, panel + kk * kPanel, sizeof(V8));
    std::memcpy(&b1, panel + kk * kPanel + 8, sizeof(V8));
    for (int r = 0; r < R; ++r) {
      const float s = a[r * lda + kk];
      const V8 va = {s, s, s, s, s, s, s, s};
      acc[r][0] += va * b0;
      acc[r][1] += va * b1;
    }
  }
  if (w == kPanel) {  // a whole panel: vector epilogue (a scalar one cost ~10% at k = 256)
    const V8 vbeta = {beta, beta, beta, beta, beta, beta, beta, beta};
    for (int r = 0; r < R; ++r) {
      V8Unaligned* cr = reinterpret_cast<V8Unaligned*>(c + r * ldc);  // not auto: deduction drops the alignment
      if (beta == 0.0f) {
        cr[0] = acc[r][0];
        cr[1] = acc[r][1];
      } else {
        cr[0] = vbeta * cr[0] + acc[r][0];
        cr[1] = vbeta * cr[1] + acc[r][1];
      }
    }
    return;
  }
  for (int r = 0; r < R; ++r) {
    float out[kPanel];
    std::memcpy(out, &acc[r][0], sizeof(V8));
    std::memcpy(out + 8, &acc[r][1], sizeof(V8));
    float* cr = c + r * ldc;
    if (beta == 0.0f) {
      for (int64_t j = 0; j < w; ++j) cr[j] = out[j];
    } else {
      for (int64_t j = 0; j < w; ++j) cr[j] = beta * cr[j] + out[j];
    }
  }
}

}  // namespace

size_t PackedGemmBFloats(int64_t n, int64_t k) {
  return static_cast<size_t>((n + kPanel - 1) / kPanel * kPanel * k);
}

void PackGemmB(bool trans_b, int64_t n, int64_t k, const float* b, int64_t ldb, float* packed) {
  LS_CHECK(n >= 0 && k >= 0) << "PackGemmB: negative size n=" << n << " k=" << k;
  for (int64_t j0 = 0; j0 < n; j0 += kPanel) {
    float* dst = packed + j0 * k;  // panel j0 / kPanel starts at (j0 / kPanel) * k * kPanel
    const int64_t w = std::min(kPanel, n - j0);
    if (trans_b) {
      // Column j of the panel is row j0 + j of B, read sequentially: gathering one
      // panel row at a time read 16 rows ldb apart per kk (4 KiB aliasing at ldb 1024).
      for (int64_t j = 0; j < w; ++j) {
        const float* src = b + (j0 + j) * ldb;
        for (int64_t kk = 0; kk < k; ++kk) dst[kk * kPanel + j] = src[kk];
      }
      for (int64_t j = w; j < kPanel; ++j) {
        for (int64_t kk = 0; kk < k; ++kk) dst[kk * kPanel + j] = 0.0f;
      }
      continue;
    }
    for (int64_t kk = 0; kk < k; ++kk) {
      float* row = dst + kk * kPanel;
      std::memcpy(row, b + kk * ldb + j0, sizeof(float) * static_cast<size_t>(w));
      for (int64_t j = w; j < kPanel; ++j) row[j] = 0.0f;
    }
  }
}

LS_KERNEL_CLONES void SgemmPackedB(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                                   const float* packed, float beta, float* c, int64_t ldc, Triangle tri) {
  LS_CHECK(m >= 0 && n >= 0 && k >= 0) << "SgemmPackedB: negative size m=" << m << " n=" << n << " k=" << k;
  for (int64_t j0 = 0; j0 < n; j0 += kPanel) {
    const float* panel = packed + j0 * k;
    const int64_t w = std::min(kPanel, n - j0);
    for (int64_t i = 0; i < m;) {
      const int64_t rows = m - i >= kRows ? kRows : 1;
      if (tri == Triangle::kLowerC && j0 > i + rows - 1) {
        i += rows;
        continue;
      }
      // The k range holding the block's nonzero A entries.
      const int64_t k0 = tri == Triangle::kUpperA ? std::min(i, k) : 0;
      const int64_t k1 = tri == Triangle::kLowerA ? std::min(i + rows, k) : k;
      const float* ab = a + i * lda + k0;
      const float* pb = panel + k0 * kPanel;
      float* cb = c + i * ldc + j0;
      if (rows == kRows) {
        Tile<kRows>(k1 - k0, ab, lda, pb, beta, cb, ldc, w);
      } else {
        Tile<1>(k1 - k0, ab, lda, pb, beta, cb, ldc, w);
      }
      i += rows;
    }
  }
}

}  // namespace lockstep::kernels::cpu
