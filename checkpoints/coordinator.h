// Coordinator: the tiny coordination seam the checkpoint writer needs (DESIGN
// decision 6). The runtime implements it over its dedicated checkpoint
// communicator, so checkpoint traffic never interleaves with gradient collectives;
// this file provides a world-1 implementation and in-process "thread ranks" for
// tests. Each Coordinator object belongs to one rank and is called from one thread
// at a time; the thread coordinators of one group are used from different threads.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace lockstep::ckpt {

class Coordinator {
 public:
  virtual ~Coordinator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // Collective: every rank passes bytes and gets all ranks' bytes in rank order.
  // Fails with DeadlineExceeded when a peer has not arrived within `deadline`.
  virtual Result<std::vector<std::string>> AllGather(const std::string& bytes,
                                                     std::chrono::milliseconds deadline) = 0;
};

// World size 1: AllGather returns {bytes}.
std::unique_ptr<Coordinator> MakeLocalCoordinator();

// n coordinators of one group, element r is rank r; each must be driven by its own
// thread. After a deadline expires the group is broken and every later AllGather
// fails with Aborted (like a real communicator after a time-out).
std::vector<std::unique_ptr<Coordinator>> MakeThreadCoordinators(int n);

}  // namespace lockstep::ckpt
