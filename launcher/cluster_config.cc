#include "launcher/cluster_config.h"

#include <google/protobuf/text_format.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <sstream>

#include "runtime/core/text_format_errors.h"

namespace lockstep {
namespace {

namespace pb = google::protobuf;

constexpr const char* kEmbeddedLocal = R"pb(
name: "local"
description: "every rank on this host (the embedded default)"
mode: LOCAL
backend: CPU
fault { max_restarts: 3 }
)pb";

bool AllDigits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
}

Status Validate(const cluster::ClusterConfig& c, const std::string& name) {
  auto bad = [&](const std::string& what) { return InvalidArgumentError(name + ": " + what); };
  if (c.nprocs() < 0) return bad("nprocs must be >= 0, got " + std::to_string(c.nprocs()));
  if (c.ranks_per_node() < 0) return bad("ranks_per_node must be >= 0");
  for (int i = 0; i < c.hosts_size(); ++i) {
    const auto& h = c.hosts(i);
    if (h.name().empty()) return bad("hosts[" + std::to_string(i) + "] has no name");
    if (h.slots() < 0 || h.gpus() < 0) return bad("hosts[" + std::to_string(i) + "] (" + h.name() + "): slots and gpus must be >= 0");
  }
  if (!c.hostfile().empty() && c.hosts_size() > 0) return bad("set either hosts or hostfile, not both");
  if (!c.mpi().if_include().empty() && !c.mpi().if_exclude().empty()) {
    return bad("set either mpi.if_include or mpi.if_exclude, not both (OpenMPI refuses both)");
  }
  cluster::Mode mode = EffectiveMode(c);
  if (mode == cluster::MPIRUN && c.hosts_size() == 0 && c.hostfile().empty()) {
    return bad("mode MPIRUN needs hosts { name: ... slots: ... } or hostfile");
  }
  if (!c.slurm().time_limit().empty()) {
    auto t = ParseSlurmTimeLimit(c.slurm().time_limit());
    if (!t.ok()) return bad("slurm.time_limit: " + t.status().message());
  }
  if (c.slurm().nodes() < 0 || c.slurm().ntasks_per_node() < 0 || c.slurm().gpus_per_node() < 0 ||
      c.slurm().cpus_per_task() < 0 || c.slurm().signal_lead_seconds() < 0) {
    return bad("slurm: counts and signal_lead_seconds must be >= 0");
  }
  const auto& f = c.fault();
  if (f.has_max_restarts() && f.max_restarts() < 0) return bad("fault.max_restarts must be >= 0");
  for (double v : {f.backoff_seconds(), f.backoff_max_seconds(), f.heartbeat_interval_seconds(),
                   f.heartbeat_timeout_seconds(), f.startup_timeout_seconds(), f.stop_grace_seconds(),
                   f.collective_timeout_seconds(), f.preempt_grace_seconds(), f.exit_grace_seconds()}) {
    if (v < 0 || !std::isfinite(v)) return bad("fault: durations must be finite and >= 0");
  }
  if (HeartbeatTimeoutSeconds(c) <= HeartbeatIntervalSeconds(c)) {
    return bad("fault.heartbeat_timeout_seconds (" + std::to_string(HeartbeatTimeoutSeconds(c)) +
               ") must exceed heartbeat_interval_seconds (" + std::to_string(HeartbeatIntervalSeconds(c)) + ")");
  }
  if (c.control().port() < 0 || c.control().port() > 65535) return bad("control.port must be in 0..65535");
  for (const auto& e : c.env().set()) {
    if (e.name().empty() || e.name().find('=') != std::string::npos) return bad("env.set: bad variable name \"" + e.name() + "\"");
  }
  for (const auto& e : c.nccl().env()) {
    if (e.name().rfind("NCCL_", 0) != 0) return bad("nccl.env: \"" + e.name() + "\" is not an NCCL_* variable");
  }
  return Status::Ok();
}

}  // namespace

Result<long long> ParseSlurmTimeLimit(const std::string& text) {
  if (text == "UNLIMITED" || text == "unlimited" || text == "infinite" || text == "INFINITE") return -1LL;
  const std::string expected = "expected MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS, got \"" + text + "\"";
  long long days = 0;
  std::string rest = text;
  bool has_days = false;
  size_t dash = text.find('-');
  if (dash != std::string::npos) {
    if (!AllDigits(text.substr(0, dash))) return InvalidArgumentError(expected);
    days = std::stoll(text.substr(0, dash));
    rest = text.substr(dash + 1);
    has_days = true;
  }
  std::vector<std::string> parts;
  std::stringstream ss(rest);
  for (std::string p; std::getline(ss, p, ':');) parts.push_back(p);
  if (!rest.empty() && rest.back() == ':') return InvalidArgumentError(expected);
  if (parts.empty() || parts.size() > 3) return InvalidArgumentError(expected);
  for (const auto& p : parts) {
    if (!AllDigits(p) || p.size() > 9) return InvalidArgumentError(expected);
  }
  std::vector<long long> v;
  for (const auto& p : parts) v.push_back(std::stoll(p));
  long long h = 0, m = 0, s = 0;
  if (has_days) {
    h = v[0];
    if (v.size() > 1) m = v[1];
    if (v.size() > 2) s = v[2];
    if (h > 23) return InvalidArgumentError("hours must be 0..23 after a day count, got \"" + text + "\"");
  } else if (v.size() == 1) {
    m = v[0];
  } else if (v.size() == 2) {
    m = v[0];
    s = v[1];
  } else {
    h = v[0];
    m = v[1];
    s = v[2];
  }
  if ((has_days || v.size() == 3) && m > 59) {
    return InvalidArgumentError("minutes must be 0..59, got \"" + text + "\"");
  }
  if (s > 59) return InvalidArgumentError("seconds must be 0..59, got \"" + text + "\"");
  long long total = ((days * 24 + h) * 60 + m) * 60 + s;
  if (total <= 0) return InvalidArgumentError("the time limit must be positive, got \"" + text + "\"");
  return total;
}

Result<LoadedCluster> ParseClusterConfig(const std::string& text, const std::string& display_name) {
  LoadedCluster out;
  out.path = display_name;
  pb::TextFormat::Parser parser;
  FirstParseError errors(display_name);
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text, &out.config)) {
    return InvalidArgumentError(errors.first().empty() ? display_name + ": cannot parse the cluster config"
                                                       : errors.first());
  }
  LS_RETURN_IF_ERROR(Validate(out.config, display_name));
  return out;
}

Result<LoadedCluster> LoadClusterConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) return InvalidArgumentError("cannot read the cluster config " + path + " (does the file exist?)");
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseClusterConfig(ss.str(), path);
}

LoadedCluster DefaultLocalCluster() {
  auto r = ParseClusterConfig(kEmbeddedLocal, "<embedded local>");
  return std::move(r).value();
}

cluster::Mode EffectiveMode(const cluster::ClusterConfig& c) {
  return c.mode() == cluster::MODE_UNSPECIFIED ? cluster::LOCAL : c.mode();
}

int TotalSlots(const cluster::ClusterConfig& c) {
  if (!c.hostfile().empty()) return 0;
  if (c.hosts_size() == 0) {
    if (EffectiveMode(c) == cluster::LOCAL) {
      long n = sysconf(_SC_NPROCESSORS_ONLN);
      return n > 0 ? static_cast<int>(n) : 1;
    }
    return 0;
  }
  int total = 0;
  for (const auto& h : c.hosts()) total += h.slots() > 0 ? h.slots() : (h.gpus() > 0 ? h.gpus() : 1);
  return total;
}

int EffectiveNprocs(const cluster::ClusterConfig& c, int override_nprocs) {
  if (override_nprocs > 0) return override_nprocs;
  if (c.nprocs() > 0) return c.nprocs();
  if (EffectiveMode(c) == cluster::LOCAL && c.hosts_size() == 0) return 1;
  return TotalSlots(c);
}

int MaxRestarts(const cluster::ClusterConfig& c) { return c.fault().has_max_restarts() ? c.fault().max_restarts() : 3; }

double BackoffSeconds(const cluster::ClusterConfig& c, int restart) {
  double base = c.fault().backoff_seconds() > 0 ? c.fault().backoff_seconds() : 5.0;
  double cap = c.fault().backoff_max_seconds() > 0 ? c.fault().backoff_max_seconds() : 60.0;
  return std::min(cap, base * std::pow(2.0, std::max(0, restart - 1)));
}

static double Or(double v, double fallback) { return v > 0 ? v : fallback; }
double HeartbeatIntervalSeconds(const cluster::ClusterConfig& c) { return Or(c.fault().heartbeat_interval_seconds(), 1.0); }
double HeartbeatTimeoutSeconds(const cluster::ClusterConfig& c) { return Or(c.fault().heartbeat_timeout_seconds(), 30.0); }
double StartupTimeoutSeconds(const cluster::ClusterConfig& c) { return Or(c.fault().startup_timeout_seconds(), 300.0); }
double StopGraceSeconds(const cluster::ClusterConfig& c) { return Or(c.fault().stop_grace_seconds(), 10.0); }
double PreemptGraceSeconds(const cluster::ClusterConfig& c) { return Or(c.fault().preempt_grace_seconds(), 120.0); }
double ExitGraceSeconds(const cluster::ClusterConfig& c) { return Or(c.fault().exit_grace_seconds(), 10.0); }
double ProgressIntervalSeconds(const cluster::ClusterConfig& c) {
  double v = c.control().progress_interval_seconds();
  return v < 0 ? -1 : Or(v, 10.0);
}
int SignalLeadSeconds(const cluster::ClusterConfig& c) {
  return c.slurm().signal_lead_seconds() > 0 ? c.slurm().signal_lead_seconds() : 120;
}
bool SlurmRequeue(const cluster::ClusterConfig& c) { return !c.slurm().has_requeue() || c.slurm().requeue(); }

}  // namespace lockstep
