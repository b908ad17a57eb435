// Data-parallel gradient synchronisation over the flat gradient arena.
// Buckets are byte ranges of the arena (DESIGN decision 1): because the arena is
// in reverse layer order, backward completes a growing prefix and a bucket's
// all-reduce can start as soon as the prefix covers it, overlapping the rest of
// backward. Gradients are pre-scaled by 1/global_batch, so a SUM reduction gives
// the global mean. With ZeRO-1 the arena is reduce-scattered instead and each rank
// updates only its partition, then parameters are all-gathered.
// Driven by the training thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "common/status.h"
#include "runtime/comm/communicator.h"

namespace lockstep {

struct ReducerOptions {
  int64_t bucket_elements = 25 * (1 << 20) / 4;  // 25 MiB of fp32
  bool overlap = true;      // start buckets during backward (else all after backward)
  std::chrono::milliseconds deadline{300'000};
  bool record_finish_windows = false;  // benchmarks: keep ReducerStats::finish_windows
};

// When Finish() was entered (this rank's backward is done) and when it returned
// (NowSeconds(): steady clock, comparable between processes of one host).
struct FinishWindow {
  double entered = 0, returned = 0;
};

struct ReducerStats {
  double exposed_wait_seconds = 0;  // time Finish() blocked: communication NOT hidden
  int64_t buckets_launched = 0;
  // One window per step while recording (ReducerOptions::record_finish_windows).
  // Benchmarks gather them over the ranks of a node: the wait after the LAST rank
  // entered Finish is communication that backward did not hide, whereas the wait
  // before it is load imbalance between ranks.
  std::vector<FinishWindow> finish_windows;
};

class GradientReducer {
 public:
  GradientReducer(comm::Communicator* comm, float* grads, int64_t count, ReducerOptions options);

  int64_t num_buckets() const { return static_cast<int64_t>(bucket_starts_.size()); }
  // Arms the reducer for the backward pass that completes step `step`'s gradients.
  void BeginStep(int64_t step);
  // Gradient arena elements [0, prefix) are final: launch every bucket inside it.
  void OnGradsReady(int64_t prefix);
  // Launches what is left and waits for every bucket. On a deadline the error names
  // the bucket, the step and (from the communicator) the ranks that did not arrive.
  Status Finish();
  const ReducerStats& stats() const { return stats_; }
  void set_record_finish_windows(bool on) { options_.record_finish_windows = on; }
  void set_overlap(bool on) { options_.overlap = on; }  // between steps
  void set_communicator(comm::Communicator* comm) { comm_ = comm; }  // between steps
  void ResetStats() { stats_ = ReducerStats{}; }

 private:
  void Launch(size_t bucket);

  comm::Communicator* comm_;
  float* grads_;
  int64_t count_;
  ReducerOptions options_;
  std::vector<int64_t> bucket_starts_;  // bucket i = [starts[i], starts[i+1] or count)
  size_t next_bucket_ = 0;
  int64_t step_ = 0;
  std::vector<std::shared_ptr<comm::CommHandle>> in_flight_;
  ReducerStats stats_;
};

// Contiguous near-equal partition of [0, count) over `world` ranks (ZeRO-1 ranges).
std::vector<int64_t> PartitionCounts(int64_t count, int world);

}  // namespace lockstep
