// The rank side of the launcher's control plane: when LOCKSTEP_SUPERVISOR
// (host:port) and LOCKSTEP_JOB_TOKEN are set, a background thread connects to the
// supervisor, authenticates and sends a heartbeat every interval
// (LOCKSTEP_HEARTBEAT_INTERVAL_MS, default 1000) with the latest reported step,
// loss, samples/s and phase. Without those variables everything here is a no-op.
// Report*() never blocks on the network: it stores values under a mutex. Callable
// from any thread; the process-wide client says goodbye at normal exit.
#pragma once

#include <cstdint>
#include <string>

namespace lockstep {

// Starts the process-wide heartbeat client once (later calls are no-ops).
void StartHeartbeat(int rank, int world_size);
// The state the next heartbeat carries.
void ReportHeartbeat(int64_t step, double loss, double samples_per_sec, const char* phase = "train");
// Sends BYE and stops the thread (also done automatically at exit).
void StopHeartbeat(const char* phase = "done");

}  // namespace lockstep
