// Embedding gather and scatter-add.
#include "kernels/cpu/embedding.h"

#include <cmath>
#include <cstring>

#include "common/check.h"

namespace lockstep::kernels::cpu {

int64_t TokenId(float id, int64_t vocab) {
  const int64_t t = static_cast<int64_t>(std::lround(id));
  LS_CHECK(t >= 0 && t < vocab) << "token id " << id << " outside the vocabulary [0, " << vocab << ")";
  return t;
}

void EmbeddingForward(const float* ids, int64_t n, const float* table, int64_t vocab, int64_t dim,
                      float* y) {
  for (int64_t i = 0; i < n; ++i) {
    const float* row = table + TokenId(ids[i], vocab) * dim;
    std::memcpy(y + i * dim, row, sizeof(float) * static_cast<size_t>(dim));
  }
}

void EmbeddingBackward(const float* ids, int64_t n, const float* dy, int64_t vocab, int64_t dim,
                       float beta, float* dtable) {
  if (beta == 0.0f) std::memset(dtable, 0, sizeof(float) * static_cast<size_t>(vocab * dim));
  for (int64_t i = 0; i < n; ++i) {
    float* row = dtable + TokenId(ids[i], vocab) * dim;
    const float* g = dy + i * dim;
    for (int64_t c = 0; c < dim; ++c) row[c] += g[c];
  }
}

}  // namespace lockstep::kernels::cpu
