// CommCoordinator: the checkpoint library's coordination seam implemented over a
// runtime communicator of its own (a Duplicate of the world communicator), so
// checkpoint traffic never interleaves with gradient collectives (DESIGN 4, 6).
// Called from one thread at a time (the checkpoint service thread, or the training
// thread while no save is in flight).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "checkpoints/coordinator.h"
#include "runtime/comm/communicator.h"

namespace lockstep {

class CommCoordinator : public ckpt::Coordinator {
 public:
  explicit CommCoordinator(std::unique_ptr<comm::Communicator> comm) : comm_(std::move(comm)) {}
  int rank() const override { return comm_->rank(); }
  int world_size() const override { return comm_->world_size(); }
  // Two collectives: the byte counts, then the bytes (all-gather-v).
  Result<std::vector<std::string>> AllGather(const std::string& bytes, std::chrono::milliseconds deadline) override;

 private:
  std::unique_ptr<comm::Communicator> comm_;
};

}  // namespace lockstep
