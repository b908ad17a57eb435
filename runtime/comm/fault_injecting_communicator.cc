#include "runtime/comm/fault_injecting_communicator.h"

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <sstream>
#include <thread>

#include "common/log.h"
#include "common/process_identity.h"

namespace lockstep::comm {
namespace {

constexpr CollectiveKind kKinds[] = {CollectiveKind::kAllReduce,  CollectiveKind::kBroadcast,
                                     CollectiveKind::kAllGather,  CollectiveKind::kAllGatherV,
                                     CollectiveKind::kReduceScatter, CollectiveKind::kBarrier};

Result<int64_t> ParseNumber(const std::string& key, const std::string& value, int64_t min) {
  errno = 0;
  char* end = nullptr;
  long long parsed = std::strtoll(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || errno == ERANGE || parsed < min) {
    return InvalidArgumentError("fault spec key '" + key + "': value '" + value + "' is not an integer >= " +
                                std::to_string(min));
  }
  return static_cast<int64_t>(parsed);
}

// Never completes: models a rank that never issued the collective. Wait honours the
// deadline so the faulty rank itself can still report and exit.
class HangHandle : public CommHandle {
 public:
  explicit HangHandle(std::string what) : what_(std::move(what)) {}
  Status Wait(std::chrono::milliseconds deadline) override {
    std::this_thread::sleep_for(deadline);
    return DeadlineExceededError(what_ + " did not complete within " + std::to_string(deadline.count()) + " ms on " +
                                 ProcessDescription() + ": fault injection hung it on this rank (it was never issued)");
  }
  bool Test() override { return false; }

 private:
  std::string what_;
};

// Completes when the wrapped collective does, then reports a failure.
class FailHandle : public CommHandle {
 public:
  FailHandle(std::shared_ptr<CommHandle> inner, std::string what) : inner_(std::move(inner)), what_(std::move(what)) {}
  Status Wait(std::chrono::milliseconds deadline) override {
    LS_RETURN_IF_ERROR(inner_->Wait(deadline));
    return UnavailableError(what_ + " failed on " + ProcessDescription() + ": fault injected");
  }
  bool Test() override { return inner_->Test(); }

 private:
  std::shared_ptr<CommHandle> inner_;
  std::string what_;
};

}  // namespace

std::string FaultSpec::ToString() const {
  std::string act = action == Action::kHang ? "hang" : action == Action::kFail ? "fail" : "delay:" + std::to_string(delay_ms);
  return "rank=" + std::to_string(rank) + ",op=" + CollectiveKindName(kind) + ",index=" + std::to_string(index) +
         ",action=" + act;
}

Result<FaultSpec> ParseFaultSpec(const std::string& text) {
  FaultSpec spec;
  bool seen_rank = false, seen_op = false, seen_index = false, seen_action = false;
  std::stringstream items(text);
  std::string item;
  while (std::getline(items, item, ',')) {
    size_t eq = item.find('=');
    if (eq == std::string::npos) {
      return InvalidArgumentError("fault spec '" + text + "': item '" + item + "' is not key=value");
    }
    std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    if (key == "rank") {
      LS_ASSIGN_OR_RETURN(int64_t rank, ParseNumber(key, value, 0));
      if (rank > INT_MAX) return InvalidArgumentError("fault spec key 'rank': value '" + value + "' is too large");
      spec.rank = static_cast<int>(rank);
      seen_rank = true;
    } else if (key == "op") {
      bool found = false;
      for (CollectiveKind kind : kKinds) {
        if (value == CollectiveKindName(kind)) spec.kind = kind, found = true;
      }
      if (!found) {
        return InvalidArgumentError("fault spec key 'op': value '" + value +
                                    "' is not one of allreduce, broadcast, allgather, allgatherv, reducescatter, barrier");
      }
      seen_op = true;
    } else if (key == "index") {
      LS_ASSIGN_OR_RETURN(spec.index, ParseNumber(key, value, 1));
      seen_index = true;
    } else if (key == "action") {
      if (value == "hang") {
        spec.action = FaultSpec::Action::kHang;
      } else if (value == "fail") {
        spec.action = FaultSpec::Action::kFail;
      } else if (value.rfind("delay:", 0) == 0) {
        spec.action = FaultSpec::Action::kDelay;
        LS_ASSIGN_OR_RETURN(spec.delay_ms, ParseNumber(key, value.substr(6), 0));
      } else {
        return InvalidArgumentError("fault spec key 'action': value '" + value + "' is not hang, fail or delay:MS");
      }
      seen_action = true;
    } else {
      return InvalidArgumentError("fault spec '" + text + "': unknown key '" + key +
                                  "' (expected rank, op, index, action)");
    }
  }
  const std::pair<bool, const char*> required[] = {
      {seen_rank, "rank"}, {seen_op, "op"}, {seen_index, "index"}, {seen_action, "action"}};
  for (const auto& [seen, key] : required) {
    if (!seen) return InvalidArgumentError("fault spec '" + text + "': missing key '" + key + "'");
  }
  return spec;
}

FaultInjectingCommunicator::FaultInjectingCommunicator(std::unique_ptr<Communicator> inner, FaultSpec spec)
    : inner_(std::move(inner)), spec_(spec) {
  set_default_deadline(inner_->default_deadline());
}

void FaultInjectingCommunicator::Abort(const std::string& reason, int exit_code) {
  inner_->Abort(reason, exit_code);
  std::abort();  // the inner Abort does not return; this tells the compiler so
}

Result<std::unique_ptr<Communicator>> FaultInjectingCommunicator::Duplicate(std::string name) {
  LS_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> dup, inner_->Duplicate(std::move(name)));
  return std::unique_ptr<Communicator>(new FaultInjectingCommunicator(std::move(dup), spec_));
}

std::shared_ptr<CommHandle> FaultInjectingCommunicator::Intercept(
    CollectiveKind kind, const CollectiveTag& tag, const std::function<std::shared_ptr<CommHandle>()>& issue) {
  int64_t call = ++calls_[static_cast<size_t>(kind)];
  std::string what = std::string(CollectiveKindName(kind)) + " " + tag.ToString() + " (call #" +
                     std::to_string(call) + " of that kind on communicator '" + name() + "')";
  if (hung_) return std::make_shared<HangHandle>(what + ", after an injected hang");
  if (rank() != spec_.rank || kind != spec_.kind || call != spec_.index) return issue();
  switch (spec_.action) {
    case FaultSpec::Action::kDelay:
      LS_LOG(WARNING) << "fault injection: delaying " << what << " by " << spec_.delay_ms << " ms";
      std::this_thread::sleep_for(std::chrono::milliseconds(spec_.delay_ms));
      return issue();
    case FaultSpec::Action::kFail:
      LS_LOG(WARNING) << "fault injection: failing " << what;
      return std::make_shared<FailHandle>(issue(), what);
    case FaultSpec::Action::kHang:
      LS_LOG(WARNING) << "fault injection: hanging " << what << " (not issued, nor any later call)";
      hung_ = true;
      return std::make_shared<HangHandle>(what);
  }
  return issue();
}

std::shared_ptr<CommHandle> FaultInjectingCommunicator::DoAllReduce(void* buf, int64_t count, DataType dtype,
                                                                    ReduceOp op, CollectiveTag tag) {
  return Intercept(CollectiveKind::kAllReduce, tag, [&] { return inner_->AllReduce(buf, count, dtype, op, tag); });
}
std::shared_ptr<CommHandle> FaultInjectingCommunicator::DoBroadcast(void* buf, int64_t count, DataType dtype,
                                                                    int root, CollectiveTag tag) {
  return Intercept(CollectiveKind::kBroadcast, tag, [&] { return inner_->Broadcast(buf, count, dtype, root, tag); });
}
std::shared_ptr<CommHandle> FaultInjectingCommunicator::DoAllGather(const void* send, void* recv,
                                                                    int64_t count_per_rank, DataType dtype,
                                                                    CollectiveTag tag) {
  return Intercept(CollectiveKind::kAllGather, tag,
                   [&] { return inner_->AllGather(send, recv, count_per_rank, dtype, tag); });
}
std::shared_ptr<CommHandle> FaultInjectingCommunicator::DoAllGatherV(const void* send, void* recv,
                                                                     const std::vector<int64_t>& counts_per_rank,
                                                                     DataType dtype, CollectiveTag tag) {
  return Intercept(CollectiveKind::kAllGatherV, tag,
                   [&] { return inner_->AllGatherV(send, recv, counts_per_rank, dtype, tag); });
}
std::shared_ptr<CommHandle> FaultInjectingCommunicator::DoReduceScatter(const void* send, void* recv,
                                                                        const std::vector<int64_t>& counts_per_rank,
                                                                        DataType dtype, ReduceOp op,
                                                                        CollectiveTag tag) {
  return Intercept(CollectiveKind::kReduceScatter, tag,
                   [&] { return inner_->ReduceScatter(send, recv, counts_per_rank, dtype, op, tag); });
}
std::shared_ptr<CommHandle> FaultInjectingCommunicator::DoBarrier(CollectiveTag tag) {
  return Intercept(CollectiveKind::kBarrier, tag, [&] { return inner_->Barrier(tag); });
}

Result<std::unique_ptr<Communicator>> MaybeWrapWithFaults(std::unique_ptr<Communicator> comm,
                                                          const std::function<const char*(const char*)>& getenv_fn) {
  const char* text = getenv_fn(FaultInjectingCommunicator::kEnvVar);
  if (text == nullptr || *text == '\0') return comm;
  Result<FaultSpec> spec = ParseFaultSpec(text);
  if (!spec.ok()) return spec.status().WithContext(FaultInjectingCommunicator::kEnvVar);
  LS_LOG(WARNING) << "fault injection active on communicator '" << comm->name() << "': " << spec->ToString();
  return std::unique_ptr<Communicator>(new FaultInjectingCommunicator(std::move(comm), *spec));
}

}  // namespace lockstep::comm
