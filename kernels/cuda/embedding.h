// Embedding lookup on the GPU, mirroring kernels/cpu/embedding.h: token ids arrive as
// floats and are rounded to the nearest row (cuda::TokenIndex = cpu::TokenId). The
// gather is bitwise the CPU's; the scatter-add is too (each table element adds its
// gradients in position order, as the CPU's loop over i does), without float atomics.
// The CPU aborts on an id outside [0, vocab); a kernel cannot, so such an id makes
// its forward row NaN (the loss reports it) and is skipped by backward; memory is
// never touched out of bounds. Pointers are device memory; asynchronous on `stream`.
// Thread-safe; ordering is the stream's.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace lockstep::kernels::cuda {

// y (n, dim) = table[ids[i]]; table (vocab, dim).
void EmbeddingForward(const float* ids, int64_t n, const float* table, int64_t vocab, int64_t dim,
                      float* y, cudaStream_t stream);

// Bytes of device workspace EmbeddingBackward needs (the radix sort's scratch is asked
// of CUB, for the current device, so call it with that device current). The
// workspace must be 256-byte aligned (cudaMalloc's are). n <= INT32_MAX,
// vocab < INT32_MAX.
size_t EmbeddingBackwardWorkspaceBytes(int64_t n, int64_t vocab);

// dtable (vocab, dim) = beta * dtable + scatter_add(ids, dy); dy (n, dim); beta 0 or
// 1 (any non-zero beta keeps dtable, as on the CPU). Positions are sorted by row (a
// stable radix sort of n keys), then one thread per table element adds that row's dy
// in increasing position: O(n log vocab + vocab * dim + n * dim) work, the longest
// thread doing (count of its row's most frequent token) additions.
void EmbeddingBackward(const float* ids, int64_t n, const float* dy, int64_t vocab, int64_t dim,
                       float beta, float* dtable, void* workspace, cudaStream_t stream);

}  // namespace lockstep::kernels::cuda
