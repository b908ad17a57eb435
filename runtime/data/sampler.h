// DistributedSampler: the data order of synchronous data-parallel training as a
// pure function of (seed, epoch, step) — global batch g holds the same samples
// whatever the world size, and each rank takes a fixed slice of it (DESIGN 5).
// Thread-safety: every method may be called concurrently (the epoch-order cache
// is guarded by a mutex); the static helpers are pure functions.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "common/status.h"
#include "runtime/data/index_range.h"

namespace lockstep {
namespace data {

struct SamplerOptions {
  int64_t range_begin = 0;  // samples [range_begin, range_end) are drawn
  int64_t range_end = 0;
  int64_t global_batch = 1;  // samples per optimizer step, summed over ranks and micro-steps
  uint64_t seed = 0;
  bool shuffle = true;    // false: every epoch visits the range in order
  bool drop_last = true;  // false: the last, partial batch of an epoch is kept
};

// How a global batch splits: world_size ranks x accumulation_steps micro-steps
// of micro_batch samples each (= global_batch for a full batch).
struct MicroBatchPlan {
  int64_t global_batch = 0;
  int world_size = 1;
  int accumulation_steps = 1;
  int64_t micro_batch = 0;
};

// One rank's samples for one micro-step, and where they sit in the global batch:
// indices == global_batch[first_position, first_position + indices.size()).
// first_position keys per-sample randomness (e.g. dropout) independently of the
// world size.
struct RankSliceInfo {
  std::vector<int64_t> indices;
  int64_t first_position = 0;
};

class DistributedSampler {
 public:
  // Aborts (LS_CHECK) on global_batch <= 0 or range_end < range_begin: validate
  // user input with Plan() first. global_batch > range size is allowed and gives
  // StepsPerEpoch() == 0 with drop_last (the caller reports it).
  explicit DistributedSampler(const SamplerOptions& options);
  DistributedSampler(const DistributedSampler&) = delete;
  DistributedSampler& operator=(const DistributedSampler&) = delete;

  const SamplerOptions& options() const { return options_; }
  int64_t NumSamples() const { return options_.range_end - options_.range_begin; }

  // drop_last: floor(N / global_batch); otherwise ceil(N / global_batch).
  int64_t StepsPerEpoch() const;

  // A permutation of [range_begin, range_end), a pure function of (seed, epoch):
  //   key  = SplitMix64(seed).Next()
  //   rng  = xoshiro256** seeded from SplitMix64(key ^ uint64(epoch))
  //   perm = [range_begin .. range_end) shuffled by Fisher-Yates, i = n-1 .. 1,
  //          j = UniformBelow(rng, i + 1) (Lemire), swap(perm[i], perm[j]).
  // Identity order when shuffle is off. The last epoch asked for is cached.
  std::vector<int64_t> EpochOrder(int64_t epoch) const;

  // Sample indices of step `step_in_epoch` (0 <= step < StepsPerEpoch()):
  // EpochOrder(epoch)[step * global_batch, min((step + 1) * global_batch, N)).
  // Only the last step of an epoch without drop_last can be shorter.
  std::vector<int64_t> GlobalBatch(int64_t epoch, int64_t step_in_epoch) const;

  // Validates global_batch, world_size, accumulation_steps (all > 0) and that
  // global_batch divides into world_size x accumulation_steps micro-batches.
  static Result<MicroBatchPlan> Plan(int64_t global_batch, int world_size, int accumulation_steps);

  // Layout of a global batch of m samples over S = world_size x accumulation_steps
  // slots: slot s = micro_step * world_size + rank holds a contiguous run of
  // positions, slots in increasing s order. So concatenating, for micro-step 0,
  // 1, ..., the slices of ranks 0, 1, ... gives back the global batch in order.
  // A full batch (m = S * micro_batch) gives every slot exactly micro_batch.
  // A partial batch (drop_last off) is split as evenly as possible: every slot
  // gets floor(m / S) and the LAST m % S slots one more, so sizes differ by at
  // most 1, never exceed the planned micro_batch, and when m < S the empty
  // slices fall on the earliest micro-steps / lowest ranks (the final
  // micro-step, which triggers the gradient all-reduce, fills first). Callers
  // must cope with empty slices (gradient scale = 1 / m, not 1 / micro_batch).
  static IndexRange SlotPositions(int64_t batch_size, int rank, int world_size,
                                  int accumulation_steps, int micro_step);
  static RankSliceInfo RankSlice(const std::vector<int64_t>& global_batch, int rank, int world_size,
                                 int accumulation_steps, int micro_step);

  // Contiguous shard of `all` for evaluation: sizes differ by at most 1 (the
  // first size % world_size ranks get one more); the shards of ranks 0..W-1 are
  // in order and their union is exactly `all`, so summed counts reproduce the
  // single-rank metric.
  static IndexRange EvalShard(IndexRange all, int rank, int world_size);

 private:
  SamplerOptions options_;
  mutable std::mutex mu_;
  mutable int64_t cached_epoch_ = -1;                           // guarded by mu_
  mutable std::shared_ptr<const std::vector<int64_t>> cached_;  // guarded by mu_

  std::shared_ptr<const std::vector<int64_t>> OrderFor(int64_t epoch) const;
};

// The permutation EpochOrder computes, as a free function (no caching).
std::vector<int64_t> ComputeEpochOrder(int64_t range_begin, int64_t range_end, uint64_t seed,
                                       int64_t epoch, bool shuffle);

}  // namespace data
}  // namespace lockstep
