// distributed.device_collectives: NCCL -- the NCCL communicator for a GPU backend's
// gradient and parameter collectives, bootstrapped over the host communicator and
// ordered after the backend's compute stream.
#pragma once

#include <memory>

#include "common/status.h"
#include "runtime/comm/communicator.h"
#include "runtime/core/backend.h"

namespace lockstep {

// Collective over bootstrap's ranks. Unavailable (naming the setting) in a build
// without NCCL or for a CPU backend; NCCL's own errors name the call, rank and host.
Result<std::unique_ptr<comm::Communicator>> CreateNcclDeviceCommunicator(comm::Communicator* bootstrap,
                                                                          Backend& backend);

}  // namespace lockstep
