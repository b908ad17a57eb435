#include "runtime/comm/communicator.h"

#include <numeric>
#include <sstream>

#include "common/check.h"

namespace lockstep::comm {

size_t DataTypeSize(DataType dtype) {
  switch (dtype) {
    case DataType::kFloat32: return 4;
    case DataType::kFloat64: return 8;
    case DataType::kInt32: return 4;
    case DataType::kInt64: return 8;
    case DataType::kUint8: return 1;
  }
  LS_FATAL() << "unknown DataType " << static_cast<int>(dtype);
}

const char* DataTypeName(DataType dtype) {
  switch (dtype) {
    case DataType::kFloat32: return "float32";
    case DataType::kFloat64: return "float64";
    case DataType::kInt32: return "int32";
    case DataType::kInt64: return "int64";
    case DataType::kUint8: return "uint8";
  }
  return "?";
}

const char* ReduceOpName(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "sum";
    case ReduceOp::kMax: return "max";
    case ReduceOp::kMin: return "min";
  }
  return "?";
}

const char* CollectiveKindName(CollectiveKind kind) {
  switch (kind) {
    case CollectiveKind::kAllReduce: return "allreduce";
    case CollectiveKind::kBroadcast: return "broadcast";
    case CollectiveKind::kAllGather: return "allgather";
    case CollectiveKind::kAllGatherV: return "allgatherv";
    case CollectiveKind::kReduceScatter: return "reducescatter";
    case CollectiveKind::kBarrier: return "barrier";
  }
  return "?";
}

std::string CollectiveTag::ToString() const {
  std::ostringstream out;
  out << "'" << (name.empty() ? "(untagged)" : name) << "'";
  if (step >= 0) out << " step " << step;
  if (bucket >= 0) out << " bucket " << bucket;
  return out.str();
}

namespace {

class ReadyHandle : public CommHandle {
 public:
  explicit ReadyHandle(Status status) : status_(std::move(status)) {}
  Status Wait(std::chrono::milliseconds) override { return status_; }
  bool Test() override { return true; }

 private:
  Status status_;
};

std::shared_ptr<CommHandle> Invalid(const Communicator& comm, CollectiveKind kind,
                                    const CollectiveTag& tag, const std::string& what) {
  return MakeReadyHandle(InvalidArgumentError(std::string(CollectiveKindName(kind)) + " " +
                                              tag.ToString() + " on communicator '" + comm.name() +
                                              "': " + what));
}

// Returns an error text, or "" when the counts are valid for this communicator.
std::string CheckCounts(const Communicator& comm, const std::vector<int64_t>& counts) {
  if (static_cast<int>(counts.size()) != comm.world_size()) {
    return "counts_per_rank has " + std::to_string(counts.size()) + " entries, expected world size " +
           std::to_string(comm.world_size());
  }
  for (size_t r = 0; r < counts.size(); ++r) {
    if (counts[r] < 0) return "counts_per_rank[" + std::to_string(r) + "] = " + std::to_string(counts[r]) + " < 0";
  }
  return "";
}

}  // namespace

std::shared_ptr<CommHandle> MakeReadyHandle(Status status) {
  return std::make_shared<ReadyHandle>(std::move(status));
}

std::vector<int64_t> BlockOffsets(const std::vector<int64_t>& counts_per_rank) {
  std::vector<int64_t> offsets(counts_per_rank.size() + 1, 0);
  std::partial_sum(counts_per_rank.begin(), counts_per_rank.end(), offsets.begin() + 1);
  return offsets;
}

std::shared_ptr<CommHandle> Communicator::AllReduce(void* buf, int64_t count, DataType dtype, ReduceOp op,
                                                    CollectiveTag tag) {
  if (count < 0) return Invalid(*this, CollectiveKind::kAllReduce, tag, "count " + std::to_string(count) + " < 0");
  if (count > 0 && buf == nullptr) return Invalid(*this, CollectiveKind::kAllReduce, tag, "null buffer");
  return DoAllReduce(buf, count, dtype, op, std::move(tag));
}

std::shared_ptr<CommHandle> Communicator::Broadcast(void* buf, int64_t count, DataType dtype, int root,
                                                    CollectiveTag tag) {
  if (count < 0) return Invalid(*this, CollectiveKind::kBroadcast, tag, "count " + std::to_string(count) + " < 0");
  if (count > 0 && buf == nullptr) return Invalid(*this, CollectiveKind::kBroadcast, tag, "null buffer");
  if (root < 0 || root >= world_size()) {
    return Invalid(*this, CollectiveKind::kBroadcast, tag,
                   "root " + std::to_string(root) + " is outside [0, " + std::to_string(world_size()) + ")");
  }
  return DoBroadcast(buf, count, dtype, root, std::move(tag));
}

std::shared_ptr<CommHandle> Communicator::AllGather(const void* send, void* recv, int64_t count_per_rank,
                                                    DataType dtype, CollectiveTag tag) {
  if (count_per_rank < 0) {
    return Invalid(*this, CollectiveKind::kAllGather, tag, "count_per_rank " + std::to_string(count_per_rank) + " < 0");
  }
  if (count_per_rank > 0 && (send == nullptr || recv == nullptr)) {
    return Invalid(*this, CollectiveKind::kAllGather, tag, "null buffer");
  }
  return DoAllGather(send, recv, count_per_rank, dtype, std::move(tag));
}

std::shared_ptr<CommHandle> Communicator::AllGatherV(const void* send, void* recv,
                                                     const std::vector<int64_t>& counts_per_rank,
                                                     DataType dtype, CollectiveTag tag) {
  std::string error = CheckCounts(*this, counts_per_rank);
  if (!error.empty()) return Invalid(*this, CollectiveKind::kAllGatherV, tag, error);
  int64_t total = BlockOffsets(counts_per_rank).back();
  if ((counts_per_rank[rank()] > 0 && send == nullptr) || (total > 0 && recv == nullptr)) {
    return Invalid(*this, CollectiveKind::kAllGatherV, tag, "null buffer");
  }
  return DoAllGatherV(send, recv, counts_per_rank, dtype, std::move(tag));
}

std::shared_ptr<CommHandle> Communicator::ReduceScatter(const void* send, void* recv,
                                                        const std::vector<int64_t>& counts_per_rank,
                                                        DataType dtype, ReduceOp op, CollectiveTag tag) {
  std::string error = CheckCounts(*this, counts_per_rank);
  if (!error.empty()) return Invalid(*this, CollectiveKind::kReduceScatter, tag, error);
  int64_t total = BlockOffsets(counts_per_rank).back();
  if ((total > 0 && send == nullptr) || (counts_per_rank[rank()] > 0 && recv == nullptr)) {
    return Invalid(*this, CollectiveKind::kReduceScatter, tag, "null buffer");
  }
  return DoReduceScatter(send, recv, counts_per_rank, dtype, op, std::move(tag));
}

std::shared_ptr<CommHandle> Communicator::Barrier(CollectiveTag tag) { return DoBarrier(std::move(tag)); }

Status Communicator::AllReduceSync(void* buf, int64_t count, DataType dtype, ReduceOp op, CollectiveTag tag) {
  return AllReduce(buf, count, dtype, op, std::move(tag))->Wait(default_deadline_);
}
Status Communicator::BroadcastSync(void* buf, int64_t count, DataType dtype, int root, CollectiveTag tag) {
  return Broadcast(buf, count, dtype, root, std::move(tag))->Wait(default_deadline_);
}
Status Communicator::AllGatherSync(const void* send, void* recv, int64_t count_per_rank, DataType dtype,
                                   CollectiveTag tag) {
  return AllGather(send, recv, count_per_rank, dtype, std::move(tag))->Wait(default_deadline_);
}
Status Communicator::AllGatherVSync(const void* send, void* recv, const std::vector<int64_t>& counts_per_rank,
                                    DataType dtype, CollectiveTag tag) {
  return AllGatherV(send, recv, counts_per_rank, dtype, std::move(tag))->Wait(default_deadline_);
}
Status Communicator::ReduceScatterSync(const void* send, void* recv, const std::vector<int64_t>& counts_per_rank,
                                       DataType dtype, ReduceOp op, CollectiveTag tag) {
  return ReduceScatter(send, recv, counts_per_rank, dtype, op, std::move(tag))->Wait(default_deadline_);
}
Status Communicator::BarrierSync(CollectiveTag tag) { return Barrier(std::move(tag))->Wait(default_deadline_); }

}  // namespace lockstep::comm
