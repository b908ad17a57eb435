// SequenceSampler: the windows a character-level language model trains on, as
// a pure function of (seed, epoch, step) (DESIGN 5). An epoch cuts the training
// range into K = floor(N / seq_len) - 1 non-overlapping windows of seq_len + 1
// tokens (inputs and shifted targets) at a random offset in [0, seq_len) per
// epoch, and visits them in a random order: every epoch covers the range once,
// window boundaries move between epochs. Global batch g is the same windows for
// every world size; ranks take slices exactly as DistributedSampler::RankSlice.
// Validation uses fixed, non-overlapping windows in order, sharded with
// DistributedSampler::EvalShard. Thread-safety: const methods may be called
// concurrently (the per-epoch order cache is guarded by a mutex).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "common/status.h"
#include "runtime/data/index_range.h"
#include "runtime/data/sampler.h"

namespace lockstep {
namespace data {

struct SequenceSamplerOptions {
  IndexRange range;          // token positions a window may touch (e.g. TextSplit::train)
  int64_t seq_len = 1;       // inputs per window; a window reads seq_len + 1 tokens
  int64_t global_batch = 1;  // windows per optimizer step, summed over ranks and micro-steps
  uint64_t seed = 0;
};

class SequenceSampler {
 public:
  // Validates the options (seq_len and global_batch > 0, a range holding at least
  // 2 * seq_len tokens so that K >= 1, and K >= global_batch) with errors a
  // user can act on.
  static Result<std::unique_ptr<SequenceSampler>> Create(const SequenceSamplerOptions& options);

  const SequenceSamplerOptions& options() const { return options_; }
  int64_t WindowsPerEpoch() const { return windows_; }                 // K
  int64_t StepsPerEpoch() const { return windows_ / options_.global_batch; }  // drop last

  // Offset in [0, seq_len) of epoch e's window grid: UniformBelow(rng, seq_len) with
  // rng = xoshiro256** seeded from SplitMix64(seed ^ tag).Next() ^ epoch (tag in the .cc).
  int64_t EpochOffset(int64_t epoch) const;
  // Window k of epoch e (0 <= k < K) starts at range.begin + offset + k * seq_len.
  // Epoch order: ComputeEpochOrder(0, K, seed, epoch, shuffle=true) as the image sampler.
  std::vector<int64_t> EpochStarts(int64_t epoch) const;
  // Start positions of global batch `step_in_epoch` (0 <= step < StepsPerEpoch()).
  std::vector<int64_t> GlobalBatch(int64_t epoch, int64_t step_in_epoch) const;

  // This rank's windows of micro-step `micro_step`: DistributedSampler::RankSlice.
  static RankSliceInfo RankSlice(const std::vector<int64_t>& global_batch, int rank, int world_size,
                                 int accumulation_steps, int micro_step) {
    return DistributedSampler::RankSlice(global_batch, rank, world_size, accumulation_steps, micro_step);
  }

 private:
  explicit SequenceSampler(const SequenceSamplerOptions& options);
  SequenceSamplerOptions options_;
  int64_t windows_ = 0;
  mutable std::mutex mu_;
  mutable int64_t cached_epoch_ = -1;                           // guarded by mu_
  mutable std::shared_ptr<const std::vector<int64_t>> cached_;  // guarded by mu_
  std::shared_ptr<const std::vector<int64_t>> StartsFor(int64_t epoch) const;
};

// Validation windows: starts range.begin + k * seq_len for k < floor((N - 1) /
// seq_len), so every window's targets stay inside the range and the windows
// together predict each of the first K * seq_len + 1 tokens' successors once.
int64_t NumValidationWindows(IndexRange range, int64_t seq_len);
inline int64_t ValidationWindowStart(IndexRange range, int64_t seq_len, int64_t k) {
  return range.begin + k * seq_len;
}
// This rank's contiguous share of the validation windows (indices k), as
// DistributedSampler::EvalShard: summed losses equal the single-rank metric.
IndexRange ValidationShard(IndexRange range, int64_t seq_len, int rank, int world_size);
// The token span the validation windows cover, [begin, begin + K * seq_len + 1):
// pass it to BigramCrossEntropy to score the baseline on exactly the same targets.
IndexRange ValidationCoverage(IndexRange range, int64_t seq_len);

}  // namespace data
}  // namespace lockstep
