// FaultInjectingCommunicator: wraps any Communicator and, on one chosen rank, delays,
// fails or hangs the k-th call (counted from 1) of one chosen collective kind, so
// tests can exercise deadlines, aborts and error paths. Owns the wrapped communicator;
// same threading contract as Communicator.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "runtime/comm/communicator.h"

namespace lockstep::comm {

struct FaultSpec {
  enum class Action { kDelay, kFail, kHang };
  int rank = 0;
  CollectiveKind kind = CollectiveKind::kAllReduce;
  int64_t index = 1;  // the index-th call of `kind` on that rank, counted from 1
  Action action = Action::kFail;
  int64_t delay_ms = 0;  // for kDelay

  std::string ToString() const;  // "rank=1,op=allreduce,index=3,action=hang"
};

// Parses "rank=1,op=allreduce,index=3,action=hang" (action: hang | fail | delay:MS;
// op: allreduce | broadcast | allgather | allgatherv | reducescatter | barrier). All
// four keys are required. A bad spec is InvalidArgument naming the bad key.
Result<FaultSpec> ParseFaultSpec(const std::string& text);

class FaultInjectingCommunicator : public Communicator {
 public:
  // Environment variable read by MaybeWrapWithFaults.
  static constexpr const char* kEnvVar = "LOCKSTEP_FAULT_INJECT";

  FaultInjectingCommunicator(std::unique_ptr<Communicator> inner, FaultSpec spec);

  int rank() const override { return inner_->rank(); }
  int world_size() const override { return inner_->world_size(); }
  const std::string& name() const override { return inner_->name(); }
  [[noreturn]] void Abort(const std::string& reason, int exit_code = 1) override;
  // The duplicate is wrapped with the same spec and its own call counters.
  Result<std::unique_ptr<Communicator>> Duplicate(std::string name) override;

  const FaultSpec& spec() const { return spec_; }

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
  // Counts the call; delays, or returns a hang/fail handle, or forwards via `issue`.
  std::shared_ptr<CommHandle> Intercept(CollectiveKind kind, const CollectiveTag& tag,
                                        const std::function<std::shared_ptr<CommHandle>()>& issue);

  std::unique_ptr<Communicator> inner_;
  FaultSpec spec_;
  std::array<int64_t, 6> calls_{};  // per CollectiveKind
  // After a hang every later collective hangs too: a stuck rank issues nothing more,
  // and issuing later calls would pair them with the peers' earlier ones.
  bool hung_ = false;
};

// Wraps `comm` when LOCKSTEP_FAULT_INJECT is set (and non-empty); returns it unchanged
// otherwise. A malformed spec is InvalidArgument naming the variable and the bad key.
Result<std::unique_ptr<Communicator>> MaybeWrapWithFaults(
    std::unique_ptr<Communicator> comm,
    const std::function<const char*(const char*)>& getenv_fn = [](const char* name) -> const char* {
      return ::getenv(name);
    });

}  // namespace lockstep::comm
