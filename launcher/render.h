// Renders what a launch runs: the mpirun command line (with the environment its
// ranks get) and the Slurm batch script. Pure functions of the config and the
// request (plus file-existence checks); thread-safe.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "launcher/cluster_config.h"

namespace lockstep {

using EnvList = std::vector<std::pair<std::string, std::string>>;

struct TrainInvocation {
  std::vector<std::string> args;  // "train", "--config", ...  (everything after `--`)
  std::string config;             // the recipe named by --config (checked to exist)
  std::string run_dir;            // --run-dir ("" when absent)
};

// Checks the words after `--`: they must start with "train" and name an existing recipe.
Result<TrainInvocation> ParseTrainInvocation(const std::vector<std::string>& words);
// The args for a restart: any --resume value replaced by "auto".
std::vector<std::string> WithResumeAuto(const std::vector<std::string>& args);

struct LaunchPlan {
  std::vector<std::string> argv;  // mpirun ... BINARY train ...
  EnvList env;                    // set in the launcher's child before exec; exported by -x NAME
  int nprocs = 0;
  // MPIRUN with `hosts` and a run directory: the OpenMPI hostfile mpirun is given
  // (RUN_DIR/hostfile); the launcher writes it before starting mpirun. Empty otherwise.
  std::string hostfile_path;
  std::string hostfile_text;
};

struct LaunchRequest {
  int nprocs_override = 0;         // --nprocs
  std::string binary;              // "" = the config's binary or this executable
  TrainInvocation train;
  EnvList control_env;             // LOCKSTEP_SUPERVISOR, LOCKSTEP_JOB_TOKEN, ...
};

// The lockstep binary the ranks run: the config's, or this executable; must exist.
Result<std::string> ResolveBinary(const cluster::ClusterConfig& c, const std::string& override_binary);
Result<LaunchPlan> RenderLaunch(const LoadedCluster& cluster, const LaunchRequest& request);
// The OpenMPI hostfile of the config's `hosts`: one "NAME slots=N" line per host
// (N = slots, else gpus, else 1), after a comment naming the config.
std::string RenderHostfile(const LoadedCluster& cluster);
// Writes the plan's hostfile (temporary file + rename); no-op without one.
Status WriteHostfile(const LaunchPlan& plan);
// `lockstep launch --dry-run`: shell that would start the ranks (the hostfile written
// by a here-document, then the environment and the mpirun command line).
std::string DryRunText(const LaunchPlan& plan);

struct SbatchRequest {
  std::string cluster_path;        // absolute path of the cluster config (the script re-reads it)
  std::string binary;              // "" = resolved as for a launch
  TrainInvocation train;
};
Result<std::string> RenderSbatchScript(const LoadedCluster& cluster, const SbatchRequest& request);

// POSIX shell quoting ('...' when needed) and a printable command line.
std::string ShellQuote(const std::string& word);
std::string CommandLine(const std::vector<std::string>& argv);

}  // namespace lockstep
