// HostStagedCommunicator: lets a host-memory communicator (MPI) move buffers that
// live on a device backend (CUDA). Each collective copies its device inputs into a
// host buffer the handle owns, runs the wrapped collective on the host copies, and
// copies the received data back to the device when the handle is found complete.
// The host buffers are page-locked on a GPU (Backend::AllocateHost) and reused from
// step to step (HostStagingPool). NCCL, which reads device memory itself, needs no
// staging.
//
// Threading: issue, Wait and Test on the backend's thread (the training thread):
// the copies go through the backend, which is single-threaded. Buffers are as in
// Communicator: untouched by the caller until the handle completes, and on the
// device only after Wait (or a Test returning true) has copied them back.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "runtime/comm/communicator.h"
#include "runtime/core/backend.h"
#include "runtime/core/host_staging_pool.h"

namespace lockstep {

class HostStagedCommunicator : public comm::Communicator {
 public:
  // Wraps `inner` without owning it (it must outlive this wrapper).
  HostStagedCommunicator(comm::Communicator* inner, Backend* backend);
  // Wraps and owns `inner`.
  HostStagedCommunicator(std::unique_ptr<comm::Communicator> inner, Backend* backend);

  int rank() const override { return inner_->rank(); }
  int world_size() const override { return inner_->world_size(); }
  const std::string& name() const override { return inner_->name(); }
  [[noreturn]] void Abort(const std::string& reason, int exit_code = 1) override;
  // A staged wrapper owning the inner communicator's duplicate.
  Result<std::unique_ptr<comm::Communicator>> Duplicate(std::string name) override;
  // The host buffers the collectives staged through (see HostStagingPool).
  HostStagingStats staging_stats() const { return staging_.stats(); }

 protected:
  std::shared_ptr<comm::CommHandle> DoAllReduce(void* buf, int64_t count, comm::DataType dtype,
                                                comm::ReduceOp op, comm::CollectiveTag tag) override;
  std::shared_ptr<comm::CommHandle> DoBroadcast(void* buf, int64_t count, comm::DataType dtype, int root,
                                                comm::CollectiveTag tag) override;
  std::shared_ptr<comm::CommHandle> DoAllGather(const void* send, void* recv, int64_t count_per_rank,
                                                comm::DataType dtype, comm::CollectiveTag tag) override;
  std::shared_ptr<comm::CommHandle> DoAllGatherV(const void* send, void* recv,
                                                 const std::vector<int64_t>& counts_per_rank,
                                                 comm::DataType dtype, comm::CollectiveTag tag) override;
  std::shared_ptr<comm::CommHandle> DoReduceScatter(const void* send, void* recv,
                                                    const std::vector<int64_t>& counts_per_rank,
                                                    comm::DataType dtype, comm::ReduceOp op,
                                                    comm::CollectiveTag tag) override;
  std::shared_ptr<comm::CommHandle> DoBarrier(comm::CollectiveTag tag) override;

 private:
  std::unique_ptr<comm::Communicator> owned_;
  comm::Communicator* inner_;
  Backend* backend_;
  HostStagingPool staging_;  // handles hold its blocks: they must not outlive this
};

}  // namespace lockstep
