#include "launcher/render.h"

#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace lockstep {
namespace {

bool IsExecutableFile(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(path.c_str(), X_OK) == 0;
}

bool IsFile(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// The variables every rank gets (names and values), in a stable order.
EnvList RankEnvironment(const cluster::ClusterConfig& c, const EnvList& control_env) {
  EnvList env = control_env;
  const auto& n = c.nccl();
  if (!n.socket_ifname().empty()) env.emplace_back("NCCL_SOCKET_IFNAME", n.socket_ifname());
  if (!n.ib_hca().empty()) env.emplace_back("NCCL_IB_HCA", n.ib_hca());
  if (!n.debug().empty()) env.emplace_back("NCCL_DEBUG", n.debug());
  for (const auto& e : n.env()) env.emplace_back(e.name(), e.value());
  for (const auto& e : c.env().set()) env.emplace_back(e.name(), e.value());
  return env;
}

std::string Join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? sep : "") + v[i];
  return out;
}

}  // namespace

std::string ShellQuote(const std::string& word) {
  if (!word.empty() && word.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+=/.,:@%") ==
                           std::string::npos) {
    return word;
  }
  std::string q = "'";
  for (char ch : word) q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return q + "'";
}

std::string CommandLine(const std::vector<std::string>& argv) {
  std::vector<std::string> quoted;
  for (const auto& a : argv) quoted.push_back(ShellQuote(a));
  return Join(quoted, " ");
}

Result<TrainInvocation> ParseTrainInvocation(const std::vector<std::string>& words) {
  TrainInvocation t;
  if (words.empty() || words[0] != "train") {
    return InvalidArgumentError("expected the training command after `--`, e.g. `-- train --config recipes/cnn.pbtxt "
                                "--run-dir runs/cnn`");
  }
  t.args = words;
  for (size_t i = 1; i < words.size(); ++i) {
    const std::string& w = words[i];
    auto value = [&](const std::string& flag) -> std::string {
      if (w == flag && i + 1 < words.size()) return words[i + 1];
      if (w.rfind(flag + "=", 0) == 0) return w.substr(flag.size() + 1);
      return "";
    };
    for (const char* f : {"--config", "-c"}) {
      if (std::string v = value(f); !v.empty()) t.config = v;
    }
    for (const char* f : {"--run-dir", "-r"}) {
      if (std::string v = value(f); !v.empty()) t.run_dir = v;
    }
  }
  if (t.config.empty()) return InvalidArgumentError("the training command needs --config RECIPE");
  if (!IsFile(t.config)) {
    return InvalidArgumentError("recipe " + t.config + " not found (the ranks would fail at start-up)");
  }
  return t;
}

std::vector<std::string> WithResumeAuto(const std::vector<std::string>& args) {
  std::vector<std::string> out;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--resume" && i + 1 < args.size()) {
      ++i;
      continue;
    }
    if (args[i].rfind("--resume=", 0) == 0) continue;
    out.push_back(args[i]);
  }
  out.push_back("--resume");
  out.push_back("auto");
  return out;
}

Result<std::string> ResolveBinary(const cluster::ClusterConfig& c, const std::string& override_binary) {
  std::string binary = !override_binary.empty() ? override_binary : c.binary();
  if (binary.empty()) {
    char buf[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
    if (n <= 0) return InternalError("cannot find this executable (/proc/self/exe); set `binary` in the cluster config");
    binary.assign(buf, static_cast<size_t>(n));
  }
  if (!IsExecutableFile(binary)) {
    return InvalidArgumentError("binary " + binary + " does not exist or is not executable (cluster config `binary`)");
  }
  return binary;
}

Result<LaunchPlan> RenderLaunch(const LoadedCluster& cluster, const LaunchRequest& request) {
  const cluster::ClusterConfig& c = cluster.config;
  LaunchPlan plan;
  cluster::Mode mode = EffectiveMode(c);
  plan.nprocs = EffectiveNprocs(c, request.nprocs_override);
  if (mode == cluster::SLURM && plan.nprocs == 0) {
    const char* n = std::getenv("SLURM_NTASKS");
    plan.nprocs = n ? std::atoi(n) : 0;
  }
  if (plan.nprocs <= 0 && c.hostfile().empty()) {
    return InvalidArgumentError(cluster.path + ": cannot tell how many ranks to start; set nprocs or use --nprocs");
  }
  const int slots = mode == cluster::SLURM ? 0 : TotalSlots(c);
  if (slots > 0 && plan.nprocs > slots && !c.mpi().oversubscribe()) {
    return InvalidArgumentError(std::to_string(plan.nprocs) + " ranks requested but " + cluster.path + " provides " +
                                std::to_string(slots) + " slot(s)" +
                                (c.hosts_size() == 0 ? " (this host's cores)" : "") +
                                "; lower --nprocs, add slots, or set mpi { oversubscribe: true }");
  }
  LS_ASSIGN_OR_RETURN(std::string binary, ResolveBinary(c, request.binary));

  std::vector<std::string>& a = plan.argv;
  a.push_back(c.mpi().mpirun().empty() ? "mpirun" : c.mpi().mpirun());
  if (c.mpi().allow_run_as_root()) a.push_back("--allow-run-as-root");
  if (c.mpi().oversubscribe()) a.push_back("--oversubscribe");
  if (plan.nprocs > 0) {
    a.push_back("-np");
    a.push_back(std::to_string(plan.nprocs));
  }
  if (c.hosts_size() > 0 && mode == cluster::MPIRUN && !request.train.run_dir.empty()) {
    plan.hostfile_path = request.train.run_dir + "/hostfile";
    plan.hostfile_text = RenderHostfile(cluster);
    a.push_back("--hostfile");
    a.push_back(plan.hostfile_path);
  } else if (c.hosts_size() > 0 && mode != cluster::SLURM) {
    std::vector<std::string> hosts;
    for (const auto& h : c.hosts()) {
      int s = h.slots() > 0 ? h.slots() : (h.gpus() > 0 ? h.gpus() : 1);
      hosts.push_back(h.name() + ":" + std::to_string(s));
    }
    a.push_back("--host");
    a.push_back(Join(hosts, ","));
  } else if (!c.hostfile().empty()) {
    a.push_back("--hostfile");
    a.push_back(c.hostfile());
  }
  if (c.ranks_per_node() > 0) {
    a.push_back("--map-by");
    a.push_back("ppr:" + std::to_string(c.ranks_per_node()) + ":node");
  }
  if (!c.mpi().bind_to().empty()) {
    a.push_back("--bind-to");
    a.push_back(c.mpi().bind_to());
  }
  a.push_back("--tag-output");  // "[job,rank]<stdout>:" prefixes: the supervisor attributes log lines to ranks
  auto mca = [&](const std::string& k, const std::string& v) {
    a.push_back("--mca");
    a.push_back(k);
    a.push_back(v);
  };
  if (!c.mpi().if_include().empty()) {
    mca("btl_tcp_if_include", c.mpi().if_include());
    mca("oob_tcp_if_include", c.mpi().if_include());
  }
  if (!c.mpi().if_exclude().empty()) {
    mca("btl_tcp_if_exclude", c.mpi().if_exclude());
    mca("oob_tcp_if_exclude", c.mpi().if_exclude());
  }
  for (const auto& p : c.mpi().mca()) mca(p.name(), p.value());
  plan.env = RankEnvironment(c, request.control_env);
  std::vector<std::string> exported;
  for (const auto& [name, value] : plan.env) exported.push_back(name);
  for (const auto& name : c.env().passthrough()) exported.push_back(name);
  for (const auto& name : exported) {
    a.push_back("-x");
    a.push_back(name);
  }
  for (const auto& e : c.mpi().extra_args()) a.push_back(e);
  a.push_back(binary);
  std::vector<std::string> train = request.train.args;
  if (c.fault().collective_timeout_seconds() > 0) {
    std::ostringstream v;
    v << c.fault().collective_timeout_seconds();
    train.push_back("--set");
    train.push_back("distributed.collective_timeout_seconds=" + v.str());
  }
  a.insert(a.end(), train.begin(), train.end());
  return plan;
}

std::string RenderHostfile(const LoadedCluster& cluster) {
  std::ostringstream o;
  o << "# OpenMPI hostfile rendered by `lockstep launch` from " << cluster.path << "\n";
  for (const auto& h : cluster.config.hosts()) {
    const int slots = h.slots() > 0 ? h.slots() : (h.gpus() > 0 ? h.gpus() : 1);
    o << h.name() << " slots=" << slots << "\n";
  }
  return o.str();
}

Status WriteHostfile(const LaunchPlan& plan) {
  if (plan.hostfile_path.empty()) return Status::Ok();
  const std::string tmp = plan.hostfile_path + ".tmp" + std::to_string(getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << plan.hostfile_text;
    out.close();
    if (!out) return IoError("cannot write the hostfile " + tmp);
  }
  if (std::rename(tmp.c_str(), plan.hostfile_path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return IoError("cannot rename " + tmp + " to " + plan.hostfile_path);
  }
  return Status::Ok();
}

std::string DryRunText(const LaunchPlan& plan) {
  std::string out;
  if (!plan.hostfile_path.empty()) {
    const std::string dir = plan.hostfile_path.substr(0, plan.hostfile_path.rfind('/'));
    out += "mkdir -p " + ShellQuote(dir) + " && cat > " + ShellQuote(plan.hostfile_path) + " <<'HOSTFILE'\n" +
           plan.hostfile_text + "HOSTFILE\n";
  }
  for (const auto& [name, value] : plan.env) out += name + "=" + ShellQuote(value) + " ";
  return out + CommandLine(plan.argv) + "\n";
}

Result<std::string> RenderSbatchScript(const LoadedCluster& cluster, const SbatchRequest& request) {
  const cluster::ClusterConfig& c = cluster.config;
  if (EffectiveMode(c) != cluster::SLURM) {
    return InvalidArgumentError(cluster.path + ": `lockstep sbatch` needs a config with mode: SLURM");
  }
  const auto& s = c.slurm();
  if (!s.time_limit().empty()) {
    auto t = ParseSlurmTimeLimit(s.time_limit());
    if (!t.ok()) return InvalidArgumentError(cluster.path + ": slurm.time_limit: " + t.status().message());
  }
  LS_ASSIGN_OR_RETURN(std::string binary, ResolveBinary(c, request.binary));
  const int nodes = s.nodes() > 0 ? s.nodes() : 1;
  const int per_node = s.ntasks_per_node() > 0 ? s.ntasks_per_node() : (c.ranks_per_node() > 0 ? c.ranks_per_node() : 1);
  const std::string run_dir = request.train.run_dir.empty() ? "." : request.train.run_dir;
  char cwd[PATH_MAX];
  std::string here = getcwd(cwd, sizeof(cwd)) ? cwd : ".";

  std::ostringstream o;
  o << "#!/bin/bash\n";
  o << "# Rendered by `lockstep sbatch` from " << cluster.path << ". Preemption: Slurm sends SIGUSR1\n";
  o << "# " << SignalLeadSeconds(c) << " s before the time limit; the supervisor has the ranks checkpoint and exit 75;\n";
  o << "# this script then requeues the job, which resumes from that checkpoint (--resume auto).\n";
  o << "#SBATCH --job-name=" << (s.job_name().empty() ? "lockstep" : s.job_name()) << "\n";
  o << "#SBATCH --nodes=" << nodes << "\n";
  o << "#SBATCH --ntasks-per-node=" << per_node << "\n";
  if (s.gpus_per_node() > 0) o << "#SBATCH --gpus-per-node=" << s.gpus_per_node() << "\n";
  if (s.cpus_per_task() > 0) o << "#SBATCH --cpus-per-task=" << s.cpus_per_task() << "\n";
  if (!s.partition().empty()) o << "#SBATCH --partition=" << s.partition() << "\n";
  if (!s.account().empty()) o << "#SBATCH --account=" << s.account() << "\n";
  if (!s.time_limit().empty()) o << "#SBATCH --time=" << s.time_limit() << "\n";
  o << "#SBATCH --signal=B:USR1@" << SignalLeadSeconds(c) << "\n";
  o << (SlurmRequeue(c) ? "#SBATCH --requeue\n" : "#SBATCH --no-requeue\n");
  o << "#SBATCH --open-mode=append\n";
  o << "#SBATCH --output=" << (s.output().empty() ? run_dir + "/slurm-%j.out" : s.output()) << "\n";
  o << "#SBATCH --chdir=" << here << "\n";
  if (s.overcommit()) o << "#SBATCH --overcommit\n";
  for (const auto& line : s.extra_sbatch()) o << "#SBATCH " << line << "\n";
  o << "\nset -u\n";
  for (const auto& line : s.setup()) o << line << "\n";
  o << "mkdir -p " << ShellQuote(run_dir) << "\n";
  o << "echo \"lockstep: job ${SLURM_JOB_ID} (restart ${SLURM_RESTART_COUNT:-0}) on $(hostname) at $(date -Is)\"\n";
  std::vector<std::string> launch = {binary, "launch", "--cluster", request.cluster_path, "--"};
  launch.insert(launch.end(), request.train.args.begin(), request.train.args.end());
  o << "# The supervised launch runs in the background so this shell can forward signals to it.\n";
  o << CommandLine(launch) << " &\n";
  o << "pid=$!\n";
  o << "trap 'kill -USR1 $pid 2>/dev/null' USR1 TERM\n";
  o << "while :; do wait $pid; rc=$?; kill -0 $pid 2>/dev/null || break; done\n";
  if (SlurmRequeue(c)) {
    o << "if [ \"$rc\" -eq 75 ]; then\n";
    o << "  echo \"lockstep: preempted after a checkpoint; requeueing job ${SLURM_JOB_ID}\"\n";
    o << "  scontrol requeue \"${SLURM_JOB_ID}\"\n";
    o << "fi\n";
  }
  o << "exit $rc\n";
  return o.str();
}

}  // namespace lockstep
