// Embedding gather and scatter-add. Backward, deterministically and in the CPU's
// order: (1) key each position by its row, (2) stable radix sort of (row, position)
// pairs (CUB; a stable sort's output is unique, so it is the same bits every run),
// (3) bucket_begin[v] by binary search of the sorted rows, (4) one thread per
// (row, column) of dtable adds dy over its bucket — positions ascending, as the CPU's
// loop over i adds them. Index helpers: kernels/cuda/embedding_index.h.
#include <cub/device/device_radix_sort.cuh>

#include <cstdint>
#include <limits>

#include "common/check.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/embedding_index.h"
#include "kernels/cuda/launch.cuh"

namespace lockstep::kernels::cuda {
namespace {

__global__ void EmbeddingForwardKernel(const float* ids, int64_t n, const float* table,
                                       int64_t vocab, int64_t dim, float* y) {
  LS_GRID_STRIDE_LOOP(idx, n * dim) {  // idx = i * dim + c
    const int64_t i = idx / dim, c = idx % dim;
    const int64_t row = TokenIndex(ids[i], vocab);
    y[idx] = row >= 0 ? table[row * dim + c] : __int_as_float(0x7fc00000);  // quiet NaN
  }
}

__global__ void SortInputKernel(const float* ids, int64_t n, int64_t vocab, uint32_t* keys,
                                int32_t* pos) {
  LS_GRID_STRIDE_LOOP(i, n) {
    const int64_t row = TokenIndex(ids[i], vocab);
    keys[i] = static_cast<uint32_t>(row >= 0 ? row : vocab);
    pos[i] = static_cast<int32_t>(i);
  }
}

__global__ void BucketBeginKernel(const uint32_t* sorted_keys, int64_t n, int64_t vocab,
                                  int32_t* bucket_begin) {
  LS_GRID_STRIDE_LOOP(v, vocab + 1) {
    bucket_begin[v] = static_cast<int32_t>(LowerBound(sorted_keys, n, v));
  }
}

__global__ void BucketSumKernel(const float* dy, const int32_t* sorted_pos,
                                const int32_t* bucket_begin, int64_t vocab, int64_t dim,
                                bool keep, float* dtable) {
  LS_GRID_STRIDE_LOOP(idx, vocab * dim) {  // idx = v * dim + c
    dtable[idx] = BucketSumElement(dy, sorted_pos, bucket_begin, dim, keep, dtable, idx);
  }
}

void CheckShape(int64_t n, int64_t vocab, int64_t dim, const char* what) {
  LS_CHECK(n >= 0 && vocab >= 1 && dim >= 0)
      << what << ": bad shape n=" << n << " vocab=" << vocab << " dim=" << dim;
  LS_CHECK(n <= std::numeric_limits<int32_t>::max() && vocab < std::numeric_limits<int32_t>::max())
      << what << ": n=" << n << " or vocab=" << vocab << " too large for int32 sort keys";
}

size_t SortTempBytes(int64_t n, int64_t vocab) {
  if (n == 0) return 0;
  size_t bytes = 0;
  LS_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      nullptr, bytes, static_cast<const uint32_t*>(nullptr), static_cast<uint32_t*>(nullptr),
      static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr), static_cast<int>(n),
      0, SortKeyBits(vocab)));
  return bytes;
}

template <typename T>
T* At(void* base, size_t offset) {
  return reinterpret_cast<T*>(static_cast<char*>(base) + offset);
}

}  // namespace

void EmbeddingForward(const float* ids, int64_t n, const float* table, int64_t vocab, int64_t dim,
                      float* y, cudaStream_t stream) {
  CheckShape(n, vocab, dim, "EmbeddingForward");
  const int64_t total = n * dim;
  if (total == 0) return;
  EmbeddingForwardKernel<<<GridFor(total), kThreads, 0, stream>>>(ids, n, table, vocab, dim, y);
  LS_CUDA_CHECK_LAUNCH();
}

size_t EmbeddingBackwardWorkspaceBytes(int64_t n, int64_t vocab) {
  CheckShape(n, vocab, 0, "EmbeddingBackwardWorkspaceBytes");
  return EmbeddingWorkspaceLayout(n, vocab, SortTempBytes(n, vocab)).total;
}

void EmbeddingBackward(const float* ids, int64_t n, const float* dy, int64_t vocab, int64_t dim,
                       float beta, float* dtable, void* workspace, cudaStream_t stream) {
  CheckShape(n, vocab, dim, "EmbeddingBackward");
  const bool keep = beta != 0.0f;
  if (dim == 0 || (n == 0 && keep)) return;  // nothing changes
  const int32_t* sorted_pos = nullptr;
  const int32_t* bucket_begin = nullptr;
  if (n > 0) {
    LS_CHECK(workspace != nullptr &&
             reinterpret_cast<uintptr_t>(workspace) % EmbeddingWorkspace::kAlign == 0)
        << "EmbeddingBackward: workspace null or not " << EmbeddingWorkspace::kAlign
        << "-byte aligned";
    const size_t sort_bytes = SortTempBytes(n, vocab);
    const EmbeddingWorkspace w = EmbeddingWorkspaceLayout(n, vocab, sort_bytes);
    uint32_t* keys_in = At<uint32_t>(workspace, w.keys_in);
    uint32_t* keys_out = At<uint32_t>(workspace, w.keys_out);
    int32_t* pos_in = At<int32_t>(workspace, w.pos_in);
    int32_t* pos_out = At<int32_t>(workspace, w.pos_out);
    int32_t* begin = At<int32_t>(workspace, w.bucket_begin);
    SortInputKernel<<<GridFor(n), kThreads, 0, stream>>>(ids, n, vocab, keys_in, pos_in);
    LS_CUDA_CHECK_LAUNCH();
    size_t temp_bytes = sort_bytes;
    LS_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(At<void>(workspace, w.sort_temp), temp_bytes,
                                                  keys_in, keys_out, pos_in, pos_out,
                                                  static_cast<int>(n), 0, SortKeyBits(vocab),
                                                  stream));
    BucketBeginKernel<<<GridFor(vocab + 1), kThreads, 0, stream>>>(keys_out, n, vocab, begin);
    LS_CUDA_CHECK_LAUNCH();
    sorted_pos = pos_out;
    bucket_begin = begin;
  }
  BucketSumKernel<<<GridFor(vocab * dim), kThreads, 0, stream>>>(dy, sorted_pos, bucket_begin,
                                                                 vocab, dim, keep, dtable);
  LS_CUDA_CHECK_LAUNCH();
}

}  // namespace lockstep::kernels::cuda
