#include "runtime/core/host_staged_communicator.h"

#include <cstdlib>
#include <functional>
#include <mutex>

#include "common/check.h"

namespace lockstep {
namespace {

using comm::CommHandle;
using comm::DataType;

// The wrapped handle plus the host copies it works on; copies the received bytes
// back to the device once, when it first sees the collective succeed.
class StagedHandle : public CommHandle {
 public:
  // copy_back owns (captures) the host buffer, so it lives as long as the handle.
  explicit StagedHandle(std::function<void()> copy_back) : copy_back_(std::move(copy_back)) {}
  void set_inner(std::shared_ptr<CommHandle> inner) { inner_ = std::move(inner); }

  Status Wait(std::chrono::milliseconds deadline) override {
    Status s = inner_->Wait(deadline);
    if (s.ok()) CopyBackOnce();
    return s;
  }
  bool Test() override {
    if (!inner_->Test()) return false;
    // Complete: Wait returns at once with the collective's status.
    if (inner_->Wait(std::chrono::milliseconds(0)).ok()) CopyBackOnce();
    return true;
  }

 private:
  void CopyBackOnce() {
    std::lock_guard<std::mutex> lock(mu_);
    if (copied_) return;
    copied_ = true;
    if (copy_back_) copy_back_();
    copy_back_ = nullptr;  // hands the host block back to the pool for the next collective
  }

  std::shared_ptr<CommHandle> inner_;
  std::function<void()> copy_back_;
  std::mutex mu_;
  bool copied_ = false;
};

size_t Bytes(int64_t count, DataType dtype) {
  return static_cast<size_t>(count) * comm::DataTypeSize(dtype);
}

}  // namespace

HostStagedCommunicator::HostStagedCommunicator(comm::Communicator* inner, Backend* backend)
    : inner_(inner), backend_(backend), staging_(backend) {
  LS_CHECK(inner_ != nullptr && backend_ != nullptr) << "HostStagedCommunicator: null argument";
  set_default_deadline(inner_->default_deadline());
}

HostStagedCommunicator::HostStagedCommunicator(std::unique_ptr<comm::Communicator> inner, Backend* backend)
    : HostStagedCommunicator(inner.get(), backend) {
  owned_ = std::move(inner);
}

void HostStagedCommunicator::Abort(const std::string& reason, int exit_code) {
  inner_->Abort(reason, exit_code);
  std::abort();  // the inner Abort does not return; this tells the compiler so
}

Result<std::unique_ptr<comm::Communicator>> HostStagedCommunicator::Duplicate(std::string name) {
  LS_ASSIGN_OR_RETURN(std::unique_ptr<comm::Communicator> dup, inner_->Duplicate(std::move(name)));
  return std::unique_ptr<comm::Communicator>(std::make_unique<HostStagedCommunicator>(std::move(dup), backend_));
}

std::shared_ptr<CommHandle> HostStagedCommunicator::DoAllReduce(void* buf, int64_t count, DataType dtype,
                                                                comm::ReduceOp op, comm::CollectiveTag tag) {
  const size_t bytes = Bytes(count, dtype);
  auto host = staging_.Acquire(bytes);
  backend_->CopyToHost(host.get(), buf, bytes);
  auto handle = std::make_shared<StagedHandle>([this, buf, host, bytes] {
    backend_->CopyFromHost(buf, host.get(), bytes);
  });
  handle->set_inner(inner_->AllReduce(host.get(), count, dtype, op, std::move(tag)));
  return handle;
}

std::shared_ptr<CommHandle> HostStagedCommunicator::DoBroadcast(void* buf, int64_t count, DataType dtype, int root,
                                                                comm::CollectiveTag tag) {
  const size_t bytes = Bytes(count, dtype);
  auto host = staging_.Acquire(bytes);
  // Only the root's bytes travel; the others' copy is overwritten.
  if (rank() == root) backend_->CopyToHost(host.get(), buf, bytes);
  auto handle = std::make_shared<StagedHandle>([this, buf, host, bytes, root] {
    if (rank() != root) backend_->CopyFromHost(buf, host.get(), bytes);
  });
  handle->set_inner(inner_->Broadcast(host.get(), count, dtype, root, std::move(tag)));
  return handle;
}

std::shared_ptr<CommHandle> HostStagedCommunicator::DoAllGather(const void* send, void* recv,
                                                                int64_t count_per_rank, DataType dtype,
                                                                comm::CollectiveTag tag) {
  std::vector<int64_t> counts(static_cast<size_t>(world_size()), count_per_rank);
  return DoAllGatherV(send, recv, counts, dtype, std::move(tag));
}

std::shared_ptr<CommHandle> HostStagedCommunicator::DoAllGatherV(const void* send, void* recv,
                                                                 const std::vector<int64_t>& counts_per_rank,
                                                                 DataType dtype, comm::CollectiveTag tag) {
  const size_t elem = comm::DataTypeSize(dtype);
  const std::vector<int64_t> offsets = comm::BlockOffsets(counts_per_rank);
  const size_t recv_bytes = Bytes(offsets.back(), dtype);
  const size_t own_offset = static_cast<size_t>(offsets[static_cast<size_t>(rank())]) * elem;
  const size_t own_bytes = Bytes(counts_per_rank[static_cast<size_t>(rank())], dtype);
  // The host recv block of this rank doubles as the host send buffer (in place on
  // the host whatever the caller's layout), filled from the device send.
  auto host = staging_.Acquire(recv_bytes);
  backend_->CopyToHost(host.get() + own_offset, send, own_bytes);
  auto handle = std::make_shared<StagedHandle>([this, recv, host, recv_bytes] {
    backend_->CopyFromHost(recv, host.get(), recv_bytes);
  });
  handle->set_inner(inner_->AllGatherV(host.get() + own_offset, host.get(), counts_per_rank, dtype,
                                       std::move(tag)));
  return handle;
}

std::shared_ptr<CommHandle> HostStagedCommunicator::DoReduceScatter(const void* send, void* recv,
                                                                    const std::vector<int64_t>& counts_per_rank,
                                                                    DataType dtype, comm::ReduceOp op,
                                                                    comm::CollectiveTag tag) {
  const size_t elem = comm::DataTypeSize(dtype);
  const std::vector<int64_t> offsets = comm::BlockOffsets(counts_per_rank);
  const size_t send_bytes = Bytes(offsets.back(), dtype);
  const size_t own_offset = static_cast<size_t>(offsets[static_cast<size_t>(rank())]) * elem;
  const size_t own_bytes = Bytes(counts_per_rank[static_cast<size_t>(rank())], dtype);
  // Reduced in place on the host; only this rank's block goes back, to recv (which
  // may lie inside send on the device: the other blocks are clobbered either way).
  auto host = staging_.Acquire(send_bytes);
  backend_->CopyToHost(host.get(), send, send_bytes);
  auto handle = std::make_shared<StagedHandle>([this, recv, host, own_offset, own_bytes] {
    backend_->CopyFromHost(recv, host.get() + own_offset, own_bytes);
  });
  handle->set_inner(inner_->ReduceScatter(host.get(), host.get() + own_offset, counts_per_rank, dtype, op,
                                          std::move(tag)));
  return handle;
}

std::shared_ptr<CommHandle> HostStagedCommunicator::DoBarrier(comm::CollectiveTag tag) {
  return inner_->Barrier(std::move(tag));
}

}  // namespace lockstep
