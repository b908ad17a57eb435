// DistributedSampler: epoch permutations, global batches and rank slices.
#include "runtime/data/sampler.h"

#include <algorithm>
#include <numeric>
#include <string>

#include "common/check.h"
#include "runtime/data/rng.h"

namespace lockstep {
namespace data {

std::vector<int64_t> ComputeEpochOrder(int64_t range_begin, int64_t range_end, uint64_t seed,
                                       int64_t epoch, bool shuffle) {
  LS_CHECK_LE(range_begin, range_end);
  std::vector<int64_t> order(static_cast<size_t>(range_end - range_begin));
  std::iota(order.begin(), order.end(), range_begin);
  if (!shuffle) return order;
  const uint64_t key = SplitMix64(seed).Next();
  Xoshiro256StarStar rng(key ^ static_cast<uint64_t>(epoch));
  Shuffle(order, rng);
  return order;
}

DistributedSampler::DistributedSampler(const SamplerOptions& options) : options_(options) {
  LS_CHECK_GT(options_.global_batch, 0) << "DistributedSampler: global_batch must be > 0";
  LS_CHECK_LE(options_.range_begin, options_.range_end)
      << "DistributedSampler: empty-or-negative range";
  LS_CHECK_GE(options_.range_begin, 0) << "DistributedSampler: negative range_begin";
}

int64_t DistributedSampler::StepsPerEpoch() const {
  const int64_t n = NumSamples();
  const int64_t g = options_.global_batch;
  return options_.drop_last ? n / g : (n + g - 1) / g;
}

std::shared_ptr<const std::vector<int64_t>> DistributedSampler::OrderFor(int64_t epoch) const {
  LS_CHECK_GE(epoch, 0) << "DistributedSampler: negative epoch";
  std::lock_guard<std::mutex> lock(mu_);
  if (cached_ == nullptr || cached_epoch_ != epoch) {
    // Computed under the lock: callers asking for the same epoch wait instead of
    // shuffling twice; a permutation of 55,000 takes well under a millisecond.
    cached_ = std::make_shared<const std::vector<int64_t>>(ComputeEpochOrder(
        options_.range_begin, options_.range_end, options_.seed, epoch, options_.shuffle));
    cached_epoch_ = epoch;
  }
  return cached_;
}

std::vector<int64_t> DistributedSampler::EpochOrder(int64_t epoch) const {
  return *OrderFor(epoch);
}

std::vector<int64_t> DistributedSampler::GlobalBatch(int64_t epoch, int64_t step_in_epoch) const {
  LS_CHECK(step_in_epoch >= 0 && step_in_epoch < StepsPerEpoch())
      << "DistributedSampler: step " << step_in_epoch << " outside [0, " << StepsPerEpoch()
      << ") of epoch " << epoch;
  std::shared_ptr<const std::vector<int64_t>> order = OrderFor(epoch);
  const int64_t begin = step_in_epoch * options_.global_batch;
  const int64_t end = std::min(begin + options_.global_batch, NumSamples());
  return std::vector<int64_t>(order->begin() + begin, order->begin() + end);
}

Result<MicroBatchPlan> DistributedSampler::Plan(int64_t global_batch, int world_size,
                                                int accumulation_steps) {
  const std::string numbers = "global_batch_size " + std::to_string(global_batch) +
                              ", world size " + std::to_string(world_size) +
                              ", gradient_accumulation_steps " + std::to_string(accumulation_steps);
  if (global_batch <= 0 || world_size <= 0 || accumulation_steps <= 0) {
    return InvalidArgumentError("batch plan needs positive numbers, got " + numbers);
  }
  const int64_t slots = static_cast<int64_t>(world_size) * accumulation_steps;
  if (global_batch % slots != 0) {
    return InvalidArgumentError(
        numbers + ": global_batch_size must be divisible by world size x accumulation steps (" +
        std::to_string(slots) + "); " + std::to_string(global_batch) + " % " +
        std::to_string(slots) + " = " + std::to_string(global_batch % slots));
  }
  MicroBatchPlan plan;
  plan.global_batch = global_batch;
  plan.world_size = world_size;
  plan.accumulation_steps = accumulation_steps;
  plan.micro_batch = global_batch / slots;
  return plan;
}

IndexRange DistributedSampler::SlotPositions(int64_t batch_size, int rank, int world_size,
                                             int accumulation_steps, int micro_step) {
  LS_CHECK(world_size > 0 && accumulation_steps > 0 && batch_size >= 0)
      << "SlotPositions: batch " << batch_size << ", world " << world_size << ", accumulation "
      << accumulation_steps;
  LS_CHECK(rank >= 0 && rank < world_size)
      << "SlotPositions: rank " << rank << " of " << world_size;
  LS_CHECK(micro_step >= 0 && micro_step < accumulation_steps)
      << "SlotPositions: micro_step " << micro_step << " of " << accumulation_steps;
  const int64_t slots = static_cast<int64_t>(world_size) * accumulation_steps;
  const int64_t s = static_cast<int64_t>(micro_step) * world_size + rank;
  const int64_t base = batch_size / slots;
  const int64_t first_long = slots - batch_size % slots;  // slots >= first_long hold base + 1
  auto start = [&](int64_t slot) { return slot * base + std::max<int64_t>(0, slot - first_long); };
  return {start(s), start(s + 1)};
}

RankSliceInfo DistributedSampler::RankSlice(const std::vector<int64_t>& global_batch, int rank,
                                            int world_size, int accumulation_steps,
                                            int micro_step) {
  IndexRange pos = SlotPositions(static_cast<int64_t>(global_batch.size()), rank, world_size,
                                 accumulation_steps, micro_step);
  RankSliceInfo info;
  info.first_position = pos.begin;
  info.indices.assign(global_batch.begin() + pos.begin, global_batch.begin() + pos.end);
  return info;
}

IndexRange DistributedSampler::EvalShard(IndexRange all, int rank, int world_size) {
  LS_CHECK(world_size > 0 && rank >= 0 && rank < world_size)
      << "EvalShard: rank " << rank << " of " << world_size;
  LS_CHECK_LE(all.begin, all.end);
  const int64_t n = all.size();
  const int64_t base = n / world_size;
  const int64_t extra = n % world_size;  // ranks < extra hold base + 1
  auto start = [&](int64_t r) { return all.begin + r * base + std::min<int64_t>(r, extra); };
  return {start(rank), start(rank + 1)};
}

}  // namespace data
}  // namespace lockstep
