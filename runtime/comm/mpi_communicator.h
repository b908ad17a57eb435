// MpiCommunicator: host-buffer collectives over MPI. Each communicator owns its own
// MPI_Comm_dup of the world and ONE communication thread that executes its collectives
// in FIFO order, so reductions progress while the issuing thread computes and the MPI
// call order is the issue order on every rank. Issue from one thread; Wait from any.
//
// Arrival tracking (deadline diagnostics). Each communicator also owns a second
// MPI_Comm_dup, the "arrival" channel. When the comm thread starts collective #seq it
// sends seq (one int64, MPI_Isend, eager-sized) to every peer; at most one send per
// peer is outstanding (the previous one is completed first). Received announcements
// are drained through one pre-posted MPI_Irecv per peer (tested, re-posted, keeping the
// highest seq per peer). The comm thread drains every 64th collective, which bounds
// the unmatched announcements per peer; draining at every collective made the
// all-reduce itself ~25% slower at every size (OpenMPI 4.1, bench_allreduce). On a Wait
// time-out the waiting thread drains (MPI calls from a second thread need
// MPI_THREAD_MULTIPLE; without it the comm thread drains at every collective and the
// report uses what it drained last) and names the peers whose latest seq is below the
// stalled collective's. Switch it off with MpiOptions::track_arrivals = false.
#pragma once

#include <mpi.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "runtime/comm/communicator.h"
#include "runtime/comm/mpi_runtime.h"

namespace lockstep::comm {

// True when the environment variable is set to a non-empty value other than "0".
bool EnvFlag(const char* name);

struct MpiOptions {
  // Counts above this are split into several MPI calls (MPI counts are int). Tests
  // lower it to exercise the split paths with small buffers.
  int64_t max_elements_per_call = int64_t{1} << 30;
  // Announce collective starts to peers so that time-outs can name missing ranks.
  bool track_arrivals = true;
  // All-reduces tagged caller_polls (the DDP reducer's buckets when it overlaps) of up
  // to issue_all_reduce_max_bytes are issued as MPI_Iallreduce on the issuing thread
  // and progress whenever their handles are tested or waited on (the reducer tests its
  // buckets after every layer's backward), instead of running on the communication
  // thread.
  // With a core per rank busy computing, a comm thread gets the CPU only in
  // scheduler slices that rarely line up with its peers', so buckets started during
  // backward barely progressed (0-0.4 of the all-reduce hidden); progress made by the
  // compute thread between layers hid ~0.8 at the same throughput (bench_ddp, CNN,
  // 2 ranks on 2 cores). Needs MPI_THREAD_MULTIPLE; without it the comm thread runs
  // them. Other collectives, and all-reduces whose caller just waits, use the comm
  // thread's blocking calls, whose bandwidth is the better (below). The variable
  // LOCKSTEP_MPI_ALLREDUCE_ON_COMM_THREAD=1 turns it off (the A/B knob of bench_ddp,
  // and a way out should an MPI's non-blocking collectives misbehave).
  bool progress_all_reduce_on_issuing_thread = !EnvFlag("LOCKSTEP_MPI_ALLREDUCE_ON_COMM_THREAD");
  // Larger ones stay on the comm thread's blocking MPI_Allreduce too: OpenMPI 4.1's
  // non-blocking all-reduce (libnbc, any of its algorithms) moved 0.4-0.85 of the
  // blocking one's bandwidth at 128 KiB-8 MiB (bench_allreduce, 2 ranks), and a bucket
  // this large is too coarse to overlap much anyway.
  int64_t issue_all_reduce_max_bytes = int64_t{1} << 20;
};

class MpiCommunicator : public Communicator {
 public:
  // Collective over MPI_COMM_WORLD (call on every rank, from one thread). Initialises
  // MPI when needed (see MpiRuntime) and sets this process's rank for log lines.
  static Result<std::unique_ptr<MpiCommunicator>> Create(std::string name = "world", MpiOptions options = {});
  // Completes every queued collective, then frees its MPI communicators. Must not be
  // called while a collective is stuck (after a Wait time-out, Abort instead), nor
  // before the handles of all-reduces issued on the issuing thread have completed.
  ~MpiCommunicator() override;

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  const std::string& name() const override { return name_; }
  // Logs `reason` and calls MPI_Abort(comm, exit_code): mpirun then ends every rank.
  [[noreturn]] void Abort(const std::string& reason, int exit_code = 1) override;
  // Queued behind this communicator's collectives (MPI_Comm_dup is collective), waits
  // up to default_deadline().
  Result<std::unique_ptr<Communicator>> Duplicate(std::string name) override;

 protected:
  std::shared_ptr<CommHandle> DoAllReduce(void* buf, int64_t count, DataType dtype, ReduceOp op,
                                          CollectiveTag tag) override;
  std::shared_ptr<CommHandle> DoBroadcast(void* buf, int64_t count, DataType dtype, int root,
                                          CollectiveTag tag) override;
  std::shared_ptr<CommHandle> DoAllGather(const void* send, void* recv, int64_t count_per_rank,
                                          DataType dtype, CollectiveTag tag) override;
  std::shared_ptr<CommHandle> DoAllGatherV(const void* send, void* recv,
                                           const std::vector<int64_t>& counts_per_rank, DataType dtype,
                                           CollectiveTag tag) override;
  std::shared_ptr<CommHandle> DoReduceScatter(const void* send, void* recv,
                                              const std::vector<int64_t>& counts_per_rank, DataType dtype,
                                              ReduceOp op, CollectiveTag tag) override;
  std::shared_ptr<CommHandle> DoBarrier(CollectiveTag tag) override;

 private:
  struct OpState;
  class Handle;
  class IssuedHandle;
  struct Op {
    std::shared_ptr<OpState> state;
    std::function<Status()> body;  // runs on the comm thread
  };

  MpiCommunicator(std::shared_ptr<MpiRuntime> runtime, MPI_Comm comm, MPI_Comm arrival_comm, std::string name,
                  MpiOptions options);
  std::shared_ptr<CommHandle> Enqueue(CollectiveKind kind, CollectiveTag tag, std::function<Status()> body);
  // MPI_Iallreduce on the calling (issuing) thread, after the comm thread has issued
  // everything queued before it (so MPI sees collectives in issue order on every rank).
  std::shared_ptr<CommHandle> IssueAllReduce(void* buf, int64_t count, DataType dtype, ReduceOp op,
                                             CollectiveTag tag);
  void WaitForCommThreadIdle();
  void ThreadMain();
  Status Announce(int64_t seq);  // comm thread
  Status DrainArrivals();        // comm thread, or a waiting thread under THREAD_MULTIPLE
  std::string DescribeStall(const OpState& waited, std::chrono::milliseconds deadline);
  // Runs call(offset, n) over [0, count) in pieces of at most max_elements_per_call
  // elements (MPI counts are int); stops at the first error.
  Status ForEachCallChunk(int64_t count, const std::function<Status(int64_t offset, int n)>& call) const;
  // Block-wise fallbacks for totals above max_elements_per_call.
  Status BroadcastChunked(char* buf, int64_t count, MPI_Datatype type, size_t elem, int root);
  Status AllGatherVByBroadcast(const char* send, char* recv, const std::vector<int64_t>& counts, size_t elem,
                               MPI_Datatype type);

  std::shared_ptr<MpiRuntime> runtime_;
  MPI_Comm comm_;
  MPI_Comm arrival_comm_;
  std::string name_;
  MpiOptions options_;
  int rank_ = 0;
  int world_size_ = 1;
  int64_t next_seq_ = 1;  // issuing thread only

  std::mutex mu_;  // guards the fields below
  std::condition_variable cv_;       // wakes the comm thread
  std::condition_variable idle_cv_;  // the comm thread finished an op
  std::deque<Op> queue_;
  bool stop_ = false;
  std::shared_ptr<OpState> running_;  // the collective the comm thread is in, if any
  Status broken_;                     // first failure; later collectives fail fast

  std::mutex arrival_mu_;  // guards the arrival fields and serialises draining
  std::vector<int64_t> latest_arrival_;   // highest seq announced by each rank
  std::vector<int64_t> announce_buf_;     // comm thread only: in-flight send buffers
  std::vector<MPI_Request> announce_req_; // comm thread only
  std::vector<int64_t> arrival_buf_;      // one pre-posted receive per peer (arrival_mu_)
  std::vector<MPI_Request> arrival_req_;  // arrival_mu_

  std::thread thread_;  // last: started after everything above is initialised
};

}  // namespace lockstep::comm
