// CheckpointService: the checkpoint writer as the training loop sees it. Submit
// copies this rank's slices into a host staging buffer -- the only cost the loop
// pays -- and a service thread persists the copy with the collective SaveCheckpoint.
// Policy when a save is still running at the next Submit: "wait" -- Submit first
// blocks until it has finished (counted in stats().last_wait_ms), so at most one
// save is in flight and one staging buffer suffices; saves are never dropped or
// reordered, which keeps every rank's sequence of collective saves identical.
// A synchronous mode (async=false) persists inside Submit, for comparison.
// Submit, WaitIdle and the destructor are called from one thread (the training
// loop); stats() and last_status() from any thread.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "checkpoints/writer.h"

namespace lockstep::ckpt {

struct ServiceStats {
  int64_t saves = 0;                                   // committed
  int64_t failures = 0;                                // finished with an error
  int64_t bytes = 0;                                   // this rank's bytes in the last snapshot
  double last_wait_ms = 0, total_wait_ms = 0;          // Submit blocked on the previous save
  double last_snapshot_ms = 0, total_snapshot_ms = 0;  // Submit copying into staging
  double last_persist_ms = 0, total_persist_ms = 0;    // SaveCheckpoint (write, gather, commit)
  std::string last_error;                              // message of the last failed save
  std::string last_committed_dir;                      // directory of the last committed save
};

class CheckpointService {
 public:
  static Result<std::unique_ptr<CheckpointService>> Create(WriterOptions options, bool async);
  ~CheckpointService();  // waits for the save in flight
  CheckpointService(const CheckpointService&) = delete;
  CheckpointService& operator=(const CheckpointService&) = delete;

  // Async: waits for a save in flight, snapshots the slices, returns OK (the save's
  // own outcome comes from WaitIdle / last_status). Sync: the save's status.
  // Every rank must Submit the same sequence of steps.
  Status Submit(const CheckpointMeta& meta, const std::vector<ShardSlice>& slices);
  // Blocks until no save is in flight; returns the status of the last finished save
  // (OK when none has run).
  Status WaitIdle();
  Status last_status() const;
  ServiceStats stats() const;
  bool async() const { return async_; }

 private:
  struct Job {
    CheckpointMeta meta;
    std::vector<ShardSlice> slices;  // pointing into staging_
  };
  CheckpointService(WriterOptions options, bool async);
  void Loop();
  void Persist(const Job& job);  // runs SaveCheckpoint and records the outcome

  const WriterOptions options_;
  const bool async_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::optional<Job> job_;  // submitted, not yet finished
  bool stop_ = false;
  Status last_status_;
  ServiceStats stats_;
  std::unique_ptr<char[]> staging_;  // touched by Submit only while no job is in flight
  size_t staging_capacity_ = 0;
  std::thread thread_;
};

}  // namespace lockstep::ckpt
