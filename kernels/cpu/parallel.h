// Fork-join over contiguous index ranges for the CPU kernels whose work OpenBLAS
// threads cannot split well (im2col convolutions with few output channels). The
// caller's thread runs part 0; while the parts run, OpenBLAS is set to one thread
// each (so the parts do not fight over its pool) and restored afterwards. Call only
// from the training thread while no other thread uses BLAS.
#pragma once

#include <cstdint>
#include <functional>

namespace lockstep::kernels::cpu {

// Parts ParallelRanges would use for n items: min(BlasThreads(), n), at least 1.
int ParallelParts(int64_t n);

// fn(part, begin, end) for `parts` contiguous ranges covering [0, n) (sizes differ by
// at most one), part 0 on the calling thread; returns when all have finished.
void ParallelRanges(int parts, int64_t n, const std::function<void(int, int64_t, int64_t)>& fn);

// Parts for a memory-bound loop over n elements: ParallelParts, but 1 below
// kMinParallelElements (a thread start would cost more than it saves).
constexpr int64_t kMinParallelElements = int64_t{1} << 16;
int ElementwiseParts(int64_t n);

// ParallelRanges for code that makes no BLAS calls (the BLAS thread count is left alone).
void ParallelFor(int parts, int64_t n, const std::function<void(int, int64_t, int64_t)>& fn);

}  // namespace lockstep::kernels::cpu
