#include "training/comm_coordinator.h"

#include <numeric>

namespace lockstep {

Result<std::vector<std::string>> CommCoordinator::AllGather(const std::string& bytes,
                                                            std::chrono::milliseconds deadline) {
  const int n = comm_->world_size();
  int64_t mine = static_cast<int64_t>(bytes.size());
  std::vector<int64_t> sizes(static_cast<size_t>(n));
  LS_RETURN_IF_ERROR(comm_->AllGather(&mine, sizes.data(), 1, comm::DataType::kInt64, {"checkpoint sizes"})
                         ->Wait(deadline));
  std::string all(static_cast<size_t>(std::accumulate(sizes.begin(), sizes.end(), int64_t{0})), '\0');
  LS_RETURN_IF_ERROR(
      comm_->AllGatherV(bytes.data(), all.data(), sizes, comm::DataType::kUint8, {"checkpoint records"})
          ->Wait(deadline));
  std::vector<std::string> out;
  out.reserve(static_cast<size_t>(n));
  size_t offset = 0;
  for (int64_t size : sizes) {
    out.push_back(all.substr(offset, static_cast<size_t>(size)));
    offset += static_cast<size_t>(size);
  }
  return out;
}

}  // namespace lockstep
