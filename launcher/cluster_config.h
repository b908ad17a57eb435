// Cluster configs (launcher/proto/cluster.proto): loading protobuf text with
// file:line:column errors, validation with messages a user can act on, and the
// effective values behind proto3's "0 = default" fields. Pure functions; thread-safe.
#pragma once

#include <string>

#include "common/status.h"
#include "launcher/proto/cluster.pb.h"

namespace lockstep {

struct LoadedCluster {
  cluster::ClusterConfig config;
  std::string path;  // the file, or "<embedded local>"
};

// Parses and validates a cluster config file.
Result<LoadedCluster> LoadClusterConfig(const std::string& path);
// Parses and validates text; `display_name` is used in messages.
Result<LoadedCluster> ParseClusterConfig(const std::string& text, const std::string& display_name);
// The embedded default (cluster-configs/local.pbtxt's content): local ranks on this host.
LoadedCluster DefaultLocalCluster();

// Checks a Slurm time limit ("MM", "MM:SS", "HH:MM:SS", "D-HH", "D-HH:MM",
// "D-HH:MM:SS", "UNLIMITED"); returns the limit in seconds (-1 for unlimited).
Result<long long> ParseSlurmTimeLimit(const std::string& text);

// Effective values (defaults applied).
cluster::Mode EffectiveMode(const cluster::ClusterConfig& c);
int TotalSlots(const cluster::ClusterConfig& c);  // 0 when unknown (hostfile)
int EffectiveNprocs(const cluster::ClusterConfig& c, int override_nprocs);
int MaxRestarts(const cluster::ClusterConfig& c);
double BackoffSeconds(const cluster::ClusterConfig& c, int restart);  // restart = 1, 2, ...
double HeartbeatIntervalSeconds(const cluster::ClusterConfig& c);
double HeartbeatTimeoutSeconds(const cluster::ClusterConfig& c);
double StartupTimeoutSeconds(const cluster::ClusterConfig& c);
double StopGraceSeconds(const cluster::ClusterConfig& c);
double PreemptGraceSeconds(const cluster::ClusterConfig& c);
double ExitGraceSeconds(const cluster::ClusterConfig& c);
double ProgressIntervalSeconds(const cluster::ClusterConfig& c);
int SignalLeadSeconds(const cluster::ClusterConfig& c);
bool SlurmRequeue(const cluster::ClusterConfig& c);

}  // namespace lockstep
