// The supervisor behind `lockstep launch`: starts the ranks (mpirun), listens for
// their heartbeats, keeps RUN_DIR/status.json current, and on a failure (a rank
// exiting non-zero or by a signal, or silent beyond the heartbeat timeout) stops the
// whole job, reports the root cause and restarts it with --resume auto, up to the
// config's max restarts with exponential backoff. SIGUSR1/SIGTERM/SIGINT sent to the
// supervisor are forwarded to the ranks as SIGUSR1 (checkpoint and exit 75).
// One Supervisor per process, driven from the main thread.
#pragma once

#include <string>

#include "launcher/cluster_config.h"
#include "launcher/render.h"

namespace lockstep {

struct SupervisorOptions {
  LoadedCluster cluster;
  LaunchRequest request;   // control_env is filled in by the supervisor
  bool echo_output = true; // copy the ranks' output to stdout (always appended to RUN_DIR/launch.log)
};

// Runs the job to its end; returns the exit code for `lockstep launch`.
int RunSupervisor(const SupervisorOptions& options);

}  // namespace lockstep
