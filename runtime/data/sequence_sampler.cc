// SequenceSampler: per-epoch window grids and orders; validation windows.
#include "runtime/data/sequence_sampler.h"

#include <string>

#include "common/check.h"
#include "runtime/data/rng.h"

namespace lockstep {
namespace data {
namespace {

constexpr uint64_t kOffsetStreamTag = 0x5e9e5a3b1e0ff5e7ULL;  // separates offsets from orders

}  // namespace

Result<std::unique_ptr<SequenceSampler>> SequenceSampler::Create(const SequenceSamplerOptions& o) {
  if (o.seq_len <= 0 || o.global_batch <= 0) {
    return InvalidArgumentError("sequence sampler needs seq_len > 0 and global_batch > 0, got seq_len " +
                                std::to_string(o.seq_len) + ", global_batch " + std::to_string(o.global_batch));
  }
  if (o.range.begin < 0 || o.range.size() < 2 * o.seq_len) {
    return InvalidArgumentError("sequence sampler: the training text holds " + std::to_string(o.range.size()) +
                                " characters, fewer than 2 x seq_len = " + std::to_string(2 * o.seq_len) +
                                " (one window at every offset)");
  }
  std::unique_ptr<SequenceSampler> s(new SequenceSampler(o));
  if (s->windows_ < o.global_batch) {
    return InvalidArgumentError("sequence sampler: " + std::to_string(s->windows_) + " windows of seq_len " +
                                std::to_string(o.seq_len) + " per epoch, fewer than global_batch_size " +
                                std::to_string(o.global_batch));
  }
  return s;
}

SequenceSampler::SequenceSampler(const SequenceSamplerOptions& o)
    : options_(o), windows_(o.range.size() / o.seq_len - 1) {}

int64_t SequenceSampler::EpochOffset(int64_t epoch) const {
  LS_CHECK_GE(epoch, 0) << "SequenceSampler: negative epoch";
  const uint64_t key = SplitMix64(options_.seed ^ kOffsetStreamTag).Next();
  Xoshiro256StarStar rng(key ^ static_cast<uint64_t>(epoch));
  return static_cast<int64_t>(UniformBelow(rng, static_cast<uint64_t>(options_.seq_len)));
}

std::vector<int64_t> SequenceSampler::EpochStarts(int64_t epoch) const { return *StartsFor(epoch); }

std::shared_ptr<const std::vector<int64_t>> SequenceSampler::StartsFor(int64_t epoch) const {
  LS_CHECK_GE(epoch, 0) << "SequenceSampler: negative epoch";
  std::lock_guard<std::mutex> lock(mu_);
  if (cached_ == nullptr || cached_epoch_ != epoch) {
    std::vector<int64_t> order = ComputeEpochOrder(0, windows_, options_.seed, epoch, true);
    const int64_t base = options_.range.begin + EpochOffset(epoch);
    for (int64_t& k : order) k = base + k * options_.seq_len;
    cached_ = std::make_shared<const std::vector<int64_t>>(std::move(order));
    cached_epoch_ = epoch;
  }
  return cached_;
}

std::vector<int64_t> SequenceSampler::GlobalBatch(int64_t epoch, int64_t step) const {
  LS_CHECK(step >= 0 && step < StepsPerEpoch())
      << "SequenceSampler: step " << step << " outside [0, " << StepsPerEpoch() << ") of epoch " << epoch;
  std::shared_ptr<const std::vector<int64_t>> starts = StartsFor(epoch);
  const int64_t begin = step * options_.global_batch;
  return std::vector<int64_t>(starts->begin() + begin, starts->begin() + begin + options_.global_batch);
}

int64_t NumValidationWindows(IndexRange range, int64_t seq_len) {
  LS_CHECK_GT(seq_len, 0);
  return range.size() < 1 ? 0 : (range.size() - 1) / seq_len;
}

IndexRange ValidationShard(IndexRange range, int64_t seq_len, int rank, int world_size) {
  return DistributedSampler::EvalShard({0, NumValidationWindows(range, seq_len)}, rank, world_size);
}

IndexRange ValidationCoverage(IndexRange range, int64_t seq_len) {
  const int64_t k = NumValidationWindows(range, seq_len);
  return {range.begin, k == 0 ? range.begin : range.begin + k * seq_len + 1};
}

}  // namespace data
}  // namespace lockstep
