// Index math of the GPU embedding kernels (kernels/cuda/embedding.cu), host- and
// device-callable so tests/cuda/sequence_index_test.cc checks it on the CPU: the
// float-id rounding, the radix-sort key width, the bucket search over sorted ids and
// the backward workspace layout. Header-only, no CUDA runtime dependency. Pure.
#pragma once

#include <math.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/philox.h"  // LS_HOST_DEVICE

namespace lockstep::kernels::cuda {

// cpu::TokenId without the abort: the row named by a float-encoded id (rounded to the
// nearest integer, halves away from zero, as std::lround), or -1 when that is outside
// [0, vocab) or the id is NaN / infinite.
LS_HOST_DEVICE int64_t TokenIndex(float id, int64_t vocab) {
  const float r = roundf(id);  // integral; -0.0f for ids in (-0.5, 0)
  if (!(r >= 0.0f && r < 4611686018427387904.0f)) return -1;  // NaN, negative, or past 2^62
  const int64_t t = static_cast<int64_t>(r);
  return t < vocab ? t : -1;
}

// Bits of a radix-sort key that holds 0..max_key (max_key >= 0; at least 1 bit).
LS_HOST_DEVICE int SortKeyBits(int64_t max_key) {
  int bits = 1;
  while (bits < 63 && (max_key >> bits) != 0) ++bits;
  return bits;
}

// First k in [0, n) with sorted[k] >= v, or n: std::lower_bound over ascending keys.
LS_HOST_DEVICE int64_t LowerBound(const uint32_t* sorted, int64_t n, int64_t v) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (static_cast<int64_t>(sorted[mid]) < v) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

// dtable element idx = v * dim + c after the scatter-add: its old value (keep, i.e.
// beta != 0) or 0, plus dy[pos, c] for the positions of row v's bucket in sorted
// order (ascending positions: the CPU's order). bucket_begin null: no positions.
LS_HOST_DEVICE float BucketSumElement(const float* dy, const int32_t* sorted_pos,
                                      const int32_t* bucket_begin, int64_t dim, bool keep,
                                      const float* dtable, int64_t idx) {
  const int64_t v = idx / dim, c = idx % dim;
  float acc = keep ? dtable[idx] : 0.0f;
  if (bucket_begin != nullptr) {
    const int64_t end = bucket_begin[v + 1];
    for (int64_t k = bucket_begin[v]; k < end; ++k) acc += dy[sorted_pos[k] * dim + c];
  }
  return acc;
}

// EmbeddingBackward's workspace: byte offsets of its pieces, each 256-byte aligned.
// keys (uint32, n): the row of each position (vocab for an invalid id, so those sort
// last and are skipped); pos (int32, n): the positions 0..n-1 carried by the sort;
// bucket_begin (int32, vocab + 1): where row v's run starts in the sorted keys (entry
// vocab ends the last valid run); sort_temp: the radix sort's scratch.
struct EmbeddingWorkspace {
  static constexpr size_t kAlign = 256;
  size_t keys_in, keys_out, pos_in, pos_out, bucket_begin, sort_temp, total;
};

inline size_t AlignUp(size_t bytes, size_t align) { return (bytes + align - 1) / align * align; }

inline EmbeddingWorkspace EmbeddingWorkspaceLayout(int64_t n, int64_t vocab,
                                                   size_t sort_temp_bytes) {
  const size_t a = EmbeddingWorkspace::kAlign;
  const size_t ids = AlignUp(sizeof(uint32_t) * static_cast<size_t>(n), a);  // also int32 positions
  EmbeddingWorkspace w;
  w.keys_in = 0;
  w.keys_out = w.keys_in + ids;
  w.pos_in = w.keys_out + ids;
  w.pos_out = w.pos_in + ids;
  w.bucket_begin = w.pos_out + ids;
  w.sort_temp = w.bucket_begin + AlignUp(sizeof(int32_t) * static_cast<size_t>(vocab + 1), a);
  w.total = w.sort_temp + AlignUp(sort_temp_bytes, a);
  return w;
}

}  // namespace lockstep::kernels::cuda
