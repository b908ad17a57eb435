#include "runtime/comm/local_communicator.h"

#include <cstdlib>
#include <cstring>

#include "common/log.h"

namespace lockstep::comm {
namespace {
// memmove: in-place calls pass overlapping (identical) ranges.
void CopyBytes(const void* send, void* recv, int64_t count, DataType dtype) {
  if (count > 0 && send != recv) std::memmove(recv, send, static_cast<size_t>(count) * DataTypeSize(dtype));
}
}  // namespace

void LocalCommunicator::Abort(const std::string& reason, int exit_code) {
  LS_LOG(ERROR) << "aborting communicator '" << name_ << "': " << reason;
  std::exit(exit_code);
}

Result<std::unique_ptr<Communicator>> LocalCommunicator::Duplicate(std::string name) {
  return std::unique_ptr<Communicator>(new LocalCommunicator(std::move(name)));
}

std::shared_ptr<CommHandle> LocalCommunicator::DoAllReduce(void*, int64_t, DataType, ReduceOp, CollectiveTag) {
  return MakeReadyHandle();  // the reduction of one rank's data is that data
}

std::shared_ptr<CommHandle> LocalCommunicator::DoBroadcast(void*, int64_t, DataType, int, CollectiveTag) {
  return MakeReadyHandle();
}

std::shared_ptr<CommHandle> LocalCommunicator::DoAllGather(const void* send, void* recv, int64_t count_per_rank,
                                                           DataType dtype, CollectiveTag) {
  CopyBytes(send, recv, count_per_rank, dtype);
  return MakeReadyHandle();
}

std::shared_ptr<CommHandle> LocalCommunicator::DoAllGatherV(const void* send, void* recv,
                                                            const std::vector<int64_t>& counts_per_rank,
                                                            DataType dtype, CollectiveTag) {
  CopyBytes(send, recv, counts_per_rank[0], dtype);
  return MakeReadyHandle();
}

std::shared_ptr<CommHandle> LocalCommunicator::DoReduceScatter(const void* send, void* recv,
                                                               const std::vector<int64_t>& counts_per_rank,
                                                               DataType dtype, ReduceOp, CollectiveTag) {
  CopyBytes(send, recv, counts_per_rank[0], dtype);
  return MakeReadyHandle();
}

std::shared_ptr<CommHandle> LocalCommunicator::DoBarrier(CollectiveTag) { return MakeReadyHandle(); }

}  // namespace lockstep::comm
