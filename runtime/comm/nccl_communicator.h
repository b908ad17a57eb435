// NcclCommunicator: the Communicator interface over NCCL, for one GPU per rank.
// UNLIKE Local/Mpi, every buffer is DEVICE memory on this communicator's device.
// Each communicator owns one ncclComm_t (created non-blocking) and one CUDA stream;
// collectives are enqueued on that stream in issue order, after all work already
// enqueued on the compute stream (set_compute_stream), and a handle completes when
// the stream has passed its collective. Issue from one thread (as the interface
// says); Wait/Test from any.
//
// Bootstrap: rank 0 draws the ncclUniqueId, and an existing communicator over the
// same ranks (normally the MPI one) broadcasts it. Deadlines: every wait polls the
// CUDA event and ncclCommGetAsyncError; on a time-out (or an asynchronous NCCL error)
// the handle returns DeadlineExceeded / Internal naming the collective, rank and host,
// and the caller is expected to Abort(), which ncclCommAbort()s (so no kernel stays
// stuck) and then aborts the bootstrap communicator (MPI_Abort ends every rank).
// Every NCCL and CUDA call is checked; failures name the call, rank, host and device.
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/comm/communicator.h"

namespace lockstep::comm {

struct NcclOptions {
  // How often a waiting thread polls the event and NCCL's asynchronous error.
  std::chrono::microseconds poll_interval{200};
  // Deadline for communicator creation (ncclCommInitRankConfig / ncclCommSplit).
  std::chrono::milliseconds init_deadline{120'000};
};

class NcclCommunicator : public Communicator {
 public:
  // Collective over bootstrap's ranks: every rank calls it with its own device. The
  // bootstrap communicator must outlive this one (Abort uses it). On failure (no
  // device, NCCL cannot connect in time) returns a Status naming the call, rank and host.
  static Result<std::unique_ptr<NcclCommunicator>> Create(Communicator* bootstrap, int device,
                                                          std::string name = "nccl",
                                                          NcclOptions options = {});
  // Waits for the stream, then releases the NCCL communicator (after the last handle).
  ~NcclCommunicator() override;

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  const std::string& name() const override { return name_; }
  int device() const { return device_; }
  cudaStream_t stream() const { return stream_; }
  // Collectives issued after this call wait for the work enqueued on `compute` before
  // them (nullptr: the legacy default stream). Issuing thread only.
  void set_compute_stream(cudaStream_t compute) { compute_stream_ = compute; }

  // Logs, ncclCommAbort()s, then bootstrap->Abort(reason, exit_code).
  [[noreturn]] void Abort(const std::string& reason, int exit_code = 1) override;
  // ncclCommSplit of this communicator (same ranks, its own stream). Collective.
  Result<std::unique_ptr<Communicator>> Duplicate(std::string name) override;

 protected:
  std::shared_ptr<CommHandle> DoAllReduce(void* buf, int64_t count, DataType dtype, ReduceOp op,
                                          CollectiveTag tag) override;
  std::shared_ptr<CommHandle> DoBroadcast(void* buf, int64_t count, DataType dtype, int root,
                                          CollectiveTag tag) override;
  std::shared_ptr<CommHandle> DoAllGather(const void* send, void* recv, int64_t count_per_rank,
                                          DataType dtype, CollectiveTag tag) override;
  std::shared_ptr<CommHandle> DoAllGatherV(const void* send, void* recv,
                                           const std::vector<int64_t>& counts_per_rank,
                                           DataType dtype, CollectiveTag tag) override;
  std::shared_ptr<CommHandle> DoReduceScatter(const void* send, void* recv,
                                              const std::vector<int64_t>& counts_per_rank,
                                              DataType dtype, ReduceOp op,
                                              CollectiveTag tag) override;
  std::shared_ptr<CommHandle> DoBarrier(CollectiveTag tag) override;

 private:
  struct Shared;  // the ncclComm_t, shared with the handles (nccl_communicator.cc)
  class Handle;

  NcclCommunicator(std::shared_ptr<Shared> shared, Communicator* bootstrap, int device, int rank,
                   int world_size, std::string name, NcclOptions options, cudaStream_t stream,
                   void* barrier_buf);
  // Makes the comm stream wait for the compute stream, runs `enqueue` (NCCL calls on
  // stream_), waits out ncclInProgress, records the completion event.
  template <typename Fn>
  std::shared_ptr<CommHandle> Issue(CollectiveKind kind, CollectiveTag tag, Fn enqueue);

  std::shared_ptr<Shared> shared_;
  Communicator* bootstrap_;
  int device_;
  int rank_;
  int world_size_;
  std::string name_;
  NcclOptions options_;
  cudaStream_t stream_;
  cudaStream_t compute_stream_ = nullptr;
  void* barrier_buf_;     // one device float: the barrier's all-reduce
  int64_t next_seq_ = 1;  // issuing thread only
};

}  // namespace lockstep::comm
