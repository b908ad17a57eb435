#include "common/exit_codes.h"

namespace lockstep {

int ExitCodeFor(const Status& status) {
  switch (status.code()) {
    case StatusCode::kOk: return kExitOk;
    case StatusCode::kInvalidArgument: return kExitUsage;
    case StatusCode::kNotFound:
    case StatusCode::kDataLoss: return kExitDataError;
    case StatusCode::kDeadlineExceeded: return kExitPeerTimeout;
    case StatusCode::kCheckpoint: return kExitCheckpointError;
    case StatusCode::kPreempted: return kExitRequeue;
    default: return kExitFailure;
  }
}

}  // namespace lockstep
