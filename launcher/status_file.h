// RUN_DIR/status.json: the supervisor's view of a job (state, attempt, restarts
// with their causes, per-rank heartbeats, Slurm job id and restart count), written
// atomically (temporary file + rename) so readers never see half a file; and
// `lockstep status RUN_DIR`, which prints it. Plain functions; thread-compatible.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "common/status.h"
#include "launcher/control_server.h"

namespace lockstep {

struct RestartRecord {
  int attempt = 0;            // the attempt that failed (0 = the first launch)
  std::string at;             // ISO-8601 wall-clock time of the failure
  std::string reason;         // root cause, one line
  int rank = -1;              // first failing rank (-1 unknown)
  std::string host;
  int exit_code = -1;         // -1 unknown / not an exit
  int signal = 0;             // 0 = not a signal
  long long step = -1;        // the job's step when it failed (min over ranks)
  double detect_seconds = -1; // for heartbeat timeouts: silence before detection
  double detected_mono = 0;   // MonotonicSeconds() when the supervisor noticed (benchmarks)
  std::vector<std::string> last_lines;  // the failing rank's last log lines
  bool restarted = true;      // false: the supervisor gave up after this failure
};

struct JobStatus {
  std::string state = "starting";  // starting|running|restarting|succeeded|failed|preempted|preempting
  int attempt = 0;
  int max_restarts = 0;
  int world_size = 0;
  std::string cluster;
  std::string command;
  std::string run_dir;
  std::string supervisor;   // host:port of the control plane
  int supervisor_pid = 0;
  std::string started_at;
  std::string updated_at;
  std::string slurm_job_id;
  int slurm_restart_count = -1;   // -1: not under Slurm
  long long step = 0;             // min step over the ranks of the current attempt
  int rejected_connections = 0;
  std::vector<RankState> ranks;
  double now = 0;                 // MonotonicSeconds() when built (heartbeat ages)
  double supervisor_started_mono = 0;  // MonotonicSeconds() (CLOCK_MONOTONIC, comparable on this host)
  double attempt_started_mono = 0;
  std::vector<RestartRecord> restarts;
  int exit_code = -1;             // set when the supervisor is done
  std::string error;
};

std::string NowIso8601();
std::string StatusJson(const JobStatus& s);
Status WriteStatusFile(const std::string& run_dir, const JobStatus& s);
// `lockstep status RUN_DIR [--json]`: returns the process exit code.
int ShowStatus(const std::string& run_dir, bool json, std::ostream& out, std::ostream& err);

}  // namespace lockstep
