#include "runtime/core/ddp.h"

#include <algorithm>

#include "common/sysinfo.h"

namespace lockstep {

GradientReducer::GradientReducer(comm::Communicator* comm, float* grads, int64_t count,
                                 ReducerOptions options)
    : comm_(comm), grads_(grads), count_(count), options_(options) {
  int64_t size = std::max<int64_t>(1, options_.bucket_elements);
  for (int64_t start = 0; start < count_; start += size) bucket_starts_.push_back(start);
}

void GradientReducer::BeginStep(int64_t step) {
  step_ = step;
  next_bucket_ = 0;
  in_flight_.clear();
}

void GradientReducer::Launch(size_t b) {
  int64_t begin = bucket_starts_[b];
  int64_t end = b + 1 < bucket_starts_.size() ? bucket_starts_[b + 1] : count_;
  comm::CollectiveTag tag{"gradient bucket", step_, static_cast<int64_t>(b)};
  tag.caller_polls = options_.overlap;  // OnGradsReady tests the buckets in flight
  in_flight_.push_back(comm_->AllReduce(grads_ + begin, end - begin, comm::DataType::kFloat32,
                                        comm::ReduceOp::kSum, tag));
  ++stats_.buckets_launched;
}

void GradientReducer::OnGradsReady(int64_t prefix) {
  if (!options_.overlap) return;
  // Testing the buckets in flight is what progresses them when the communicator runs
  // all-reduces on this thread (MpiOptions::progress_all_reduce_on_issuing_thread).
  for (auto& handle : in_flight_) handle->Test();
  while (next_bucket_ < bucket_starts_.size()) {
    int64_t end = next_bucket_ + 1 < bucket_starts_.size() ? bucket_starts_[next_bucket_ + 1] : count_;
    if (end > prefix) break;
    Launch(next_bucket_++);
  }
}

Status GradientReducer::Finish() {
  while (next_bucket_ < bucket_starts_.size()) Launch(next_bucket_++);
  double t0 = NowSeconds();
  Status first;
  for (auto& handle : in_flight_) {
    Status s = handle->Wait(options_.deadline);
    if (!s.ok() && first.ok()) first = s;
    if (s.code() == StatusCode::kDeadlineExceeded) break;  // the caller aborts the job
  }
  const double t1 = NowSeconds();
  stats_.exposed_wait_seconds += t1 - t0;
  if (options_.record_finish_windows) stats_.finish_windows.push_back({t0, t1});
  in_flight_.clear();
  return first;
}

std::vector<int64_t> PartitionCounts(int64_t count, int world) {
  std::vector<int64_t> counts(static_cast<size_t>(world));
  for (int r = 0; r < world; ++r) counts[static_cast<size_t>(r)] = count / world + (r < count % world ? 1 : 0);
  return counts;
}

}  // namespace lockstep
