#include "launcher/launch_command.h"

#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>

#include "common/exit_codes.h"
#include "launcher/cluster_config.h"
#include "launcher/render.h"
#include "launcher/status_file.h"
#include "launcher/supervisor.h"

namespace lockstep {
namespace {

struct LaunchFlags {
  std::string cluster;
  int nprocs = 0;
  bool dry_run = false;
  bool quiet = false;
  std::string binary;
  std::vector<std::string> command;
};

Result<LoadedCluster> LoadCluster(const std::string& path) {
  if (path.empty()) return DefaultLocalCluster();
  return LoadClusterConfig(path);
}

int Fail(const std::string& who, const Status& s, int code) {
  std::cerr << "lockstep " << who << ": " << s.message() << "\n";
  return code;
}

int RunLaunch(const LaunchFlags& f) {
  auto cluster = LoadCluster(f.cluster);
  if (!cluster.ok()) return Fail("launch", cluster.status(), kExitUsage);
  auto train = ParseTrainInvocation(f.command);
  if (!train.ok()) return Fail("launch", train.status(), kExitUsage);
  if (EffectiveMode(cluster->config) == cluster::SLURM && std::getenv("SLURM_JOB_ID") == nullptr && !f.dry_run) {
    return Fail("launch", InvalidArgumentError(cluster->path + " is a SLURM config: submit it with `lockstep sbatch`"),
                kExitUsage);
  }
  SupervisorOptions o;
  o.cluster = *cluster;
  o.request.nprocs_override = f.nprocs;
  o.request.binary = f.binary;
  o.request.train = *train;
  o.echo_output = !f.quiet;
  if (f.dry_run) {
    LaunchRequest req = o.request;
    req.control_env = {{"LOCKSTEP_SUPERVISOR", "<host:port>"},
                       {"LOCKSTEP_JOB_TOKEN", "<per-job token>"},
                       {"LOCKSTEP_HEARTBEAT_INTERVAL_MS", std::to_string(static_cast<int>(HeartbeatIntervalSeconds(cluster->config) * 1000))},
                       {"LOCKSTEP_LAUNCH_ATTEMPT", "0"}};
    auto plan = RenderLaunch(*cluster, req);
    if (!plan.ok()) return Fail("launch", plan.status(), kExitUsage);
    std::cout << DryRunText(*plan);
    return kExitOk;
  }
  return RunSupervisor(o);
}

int RunSbatch(const LaunchFlags& f) {
  auto cluster = LoadCluster(f.cluster);
  if (!cluster.ok()) return Fail("sbatch", cluster.status(), kExitUsage);
  auto train = ParseTrainInvocation(f.command);
  if (!train.ok()) return Fail("sbatch", train.status(), kExitUsage);
  SbatchRequest req;
  char abs[PATH_MAX];
  req.cluster_path = realpath(f.cluster.c_str(), abs) ? abs : f.cluster;
  req.binary = f.binary;
  req.train = *train;
  auto script = RenderSbatchScript(*cluster, req);
  if (!script.ok()) return Fail("sbatch", script.status(), kExitUsage);
  if (f.dry_run) {
    std::cout << *script;
    return kExitOk;
  }
  if (std::system("command -v sbatch >/dev/null 2>&1") != 0) {
    return Fail("sbatch", UnavailableError("sbatch not found on PATH: run this on a Slurm login node (or use --dry-run "
                                           "to print the batch script)"), kExitFailure);
  }
  const std::string dir = train->run_dir.empty() ? "." : train->run_dir;
  if (std::system(("mkdir -p " + ShellQuote(dir)).c_str()) != 0) {
    return Fail("sbatch", IoError("cannot create " + dir), kExitFailure);
  }
  const std::string path = dir + "/sbatch-" + std::to_string(getpid()) + ".sh";
  {
    std::ofstream out(path);
    out << *script;
    if (!out) return Fail("sbatch", IoError("cannot write " + path), kExitFailure);
  }
  FILE* p = popen(("sbatch --parsable " + ShellQuote(path) + " 2>&1").c_str(), "r");
  if (!p) return Fail("sbatch", IoError("cannot run sbatch"), kExitFailure);
  std::string text;
  char buf[512];
  while (fgets(buf, sizeof(buf), p)) text += buf;
  int rc = pclose(p);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  if (rc != 0) return Fail("sbatch", UnavailableError("sbatch " + path + " failed: " + text), kExitFailure);
  std::string id = text.substr(0, text.find(';'));
  std::cerr << "lockstep sbatch: submitted " << path << " as job " << id << "\n";
  std::cout << id << "\n";
  return kExitOk;
}

void AddCommon(CLI::App* cmd, LaunchFlags* f) {
  cmd->add_option("--cluster", f->cluster, "Cluster config (protobuf text, cluster-configs/*.pbtxt); default: local ranks")
      ->check(CLI::ExistingFile);
  cmd->add_flag("--dry-run", f->dry_run, "Print what would run, start nothing");
  cmd->add_option("--binary", f->binary, "The lockstep binary the ranks run (default: the config's, or this one)");
  cmd->add_option("command", f->command, "`-- train --config RECIPE --run-dir DIR ...`: the training command")->required();
}

}  // namespace

void AddLaunchCommand(CLI::App& app, int* exit_code) {
  auto f = std::make_shared<LaunchFlags>();
  CLI::App* cmd = app.add_subcommand(
      "launch", "Start the ranks of a training job (mpirun) and supervise them: heartbeats, status.json, restarts");
  AddCommon(cmd, f.get());
  cmd->add_option("-n,--nprocs", f->nprocs, "Number of ranks (overrides the config's nprocs)")->check(CLI::PositiveNumber);
  cmd->add_flag("-q,--quiet", f->quiet, "Do not echo the ranks' output (it still goes to RUN_DIR/launch.log)");
  cmd->callback([f, exit_code] { *exit_code = RunLaunch(*f); });
}

void AddSbatchCommand(CLI::App& app, int* exit_code) {
  auto f = std::make_shared<LaunchFlags>();
  CLI::App* cmd = app.add_subcommand("sbatch", "Render a Slurm batch script for a supervised job and submit it");
  AddCommon(cmd, f.get());
  cmd->callback([f, exit_code] { *exit_code = RunSbatch(*f); });
}

void AddStatusCommand(CLI::App& app, int* exit_code) {
  auto dir = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand("status", "Show RUN_DIR/status.json of a supervised job");
  cmd->add_option("run_dir", *dir, "The job's run directory")->required();
  cmd->add_flag("--json", *json, "Print the raw JSON");
  cmd->callback([dir, json, exit_code] { *exit_code = ShowStatus(*dir, *json, std::cout, std::cerr); });
}

}  // namespace lockstep
