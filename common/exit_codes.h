// Process exit codes of `lockstep`, documented in the README. The launcher and
// Slurm scripts interpret them (e.g. kExitRequeue means "preempted, requeue me").
#pragma once

#include "common/status.h"

namespace lockstep {

enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1,           // training failed (runtime error, non-finite loss, I/O error)
  kExitUsage = 2,             // bad command line, recipe or cluster config
  kExitDataError = 3,         // dataset missing, truncated or corrupt
  kExitCheckpointError = 4,   // checkpoint missing, corrupt or incompatible
  kExitPeerTimeout = 5,       // a collective or peer missed its deadline
  kExitRestartsExhausted = 6, // lockstep launch: the job kept failing, fault.max_restarts used up
  kExitRequeue = 75,          // preempted: state saved, run again to resume (EX_TEMPFAIL)
};

// The exit code for a failed Status.
int ExitCodeFor(const Status& status);

}  // namespace lockstep
