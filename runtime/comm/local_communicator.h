// LocalCommunicator: world size 1. Every collective is a copy (or nothing) done on
// the calling thread; handles are complete when returned. Same threading contract as
// Communicator (one issuing thread); owns nothing but its name.
#pragma once

#include <memory>
#include <string>

#include "runtime/comm/communicator.h"

namespace lockstep::comm {

class LocalCommunicator : public Communicator {
 public:
  explicit LocalCommunicator(std::string name = "world") : name_(std::move(name)) {}

  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  const std::string& name() const override { return name_; }
  [[noreturn]] void Abort(const std::string& reason, int exit_code = 1) override;
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
  std::string name_;
};

}  // namespace lockstep::comm
