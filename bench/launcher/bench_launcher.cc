// Launcher benchmark: `lockstep launch` on local ranks (MLP recipe, CPU).
//   launch latency   supervisor start -> every rank has finished its first step (1, 2, 4 ranks)
//   kill -9          a rank killed -> the supervisor notices (its control connection drops or
//                    mpirun exits) = detect; kill -> every rank of the restarted job has done a
//                    step after resuming = recover
//   SIGSTOP          a rank stopped -> heartbeat timeout fires (detect ~ the configured timeout)
// Times come from status.json (CLOCK_MONOTONIC, comparable between processes of one host).
// Prints a table and one JSON line per result. Never asserts on absolute time.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "launcher/control_server.h"

namespace {

const std::string kBin = std::string(LOCKSTEP_BINARY_DIR) + "/bin/lockstep";
const std::string kRecipe = std::string(LOCKSTEP_SOURCE_DIR) + "/tests/ddp/mlp48.pbtxt";

std::string Read(const std::string& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
bool Exists(const std::string& p) {
  struct stat st {};
  return stat(p.c_str(), &st) == 0;
}
double Field(const std::string& json, const std::string& name) {
  std::smatch m;
  std::regex re("\"" + name + "\": ([0-9.eE+-]+)");
  return std::regex_search(json, m, re) ? std::stod(m[1].str()) : 0;
}
int Sh(const std::string& cmd) { return std::system(cmd.c_str()); }

std::string Cluster(const std::string& dir, double timeout) {
  std::string path = dir + "/cluster.pbtxt";
  std::ofstream(path) << "mode: LOCAL\nmpi { allow_run_as_root: true oversubscribe: true mca { name: \"mpi_yield_when_idle\" value: \"1\" } }\n"
                         "control { progress_interval_seconds: -1 }\n"
                         "fault { max_restarts: 2 backoff_seconds: 0.1 heartbeat_interval_seconds: 0.2 heartbeat_timeout_seconds: "
                      << timeout << " stop_grace_seconds: 1 }\n";
  return path;
}

std::string Launch(const std::string& dir, int ranks, int steps, double timeout, bool background) {
  std::string cmd = kBin + " launch -q --cluster " + Cluster(dir, timeout) + " --nprocs " + std::to_string(ranks) +
                    " -- train --quiet --config " + kRecipe + " --run-dir " + dir + "/run --set training.epochs=40 " +
                    "--set training.global_batch_size=480 --set checkpoint.every_steps=100 --max-steps " +
                    std::to_string(steps) + " > " + dir + "/out 2>&1";
  return background ? "(" + cmd + "; echo $? > " + dir + "/rc) > /dev/null 2>&1 &" : cmd;
}

std::string Fresh(const std::string& name) {
  std::string d = "/tmp/bench_launcher_" + name + "_" + std::to_string(getpid());
  Sh("rm -rf " + d + " && mkdir -p " + d);
  return d;
}

struct Row {
  std::string what;
  int ranks;
  double ms;
  double ms2;
};

void WaitFile(const std::string& p, double seconds) {
  for (int i = 0; i < seconds * 50 && !Exists(p); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
}

// kill -9 (or SIGSTOP) one rank after the first checkpoint; returns {detect, recover} in ms.
std::pair<double, double> Fault(const std::string& sig, double timeout) {
  std::string d = Fresh("fault_" + sig);
  Sh(Launch(d, 4, 1000, timeout, true));
  WaitFile(d + "/run/checkpoints/step-00000100", 120);
  double t_kill = lockstep::MonotonicSeconds();
  Sh("kill -" + sig + " $(pgrep -f '^" + kBin + " train .*--run-dir " + d + "/run ' | sort -n | tail -1)");
  WaitFile(d + "/rc", 300);
  std::string s = Read(d + "/run/status.json");
  double detected = Field(s, "detected_mono"), resumed = Field(s, "all_ranks_first_step_mono");
  Sh("rm -rf " + d);
  return {(detected - t_kill) * 1e3, (resumed - t_kill) * 1e3};
}

}  // namespace

int main(int argc, char** argv) {
  int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 3;
  std::vector<Row> rows;
  for (int ranks : {1, 2, 4}) {
    std::vector<double> v;
    for (int r = 0; r < reps; ++r) {
      std::string d = Fresh("latency");
      if (Sh(Launch(d, ranks, 20, 10, false)) != 0) {
        std::fprintf(stderr, "launch failed:\n%s\n", Read(d + "/out").c_str());
        return 1;
      }
      std::string s = Read(d + "/run/status.json");
      v.push_back((Field(s, "all_ranks_first_step_mono") - Field(s, "supervisor_started_mono")) * 1e3);
      Sh("rm -rf " + d);
    }
    std::sort(v.begin(), v.end());
    rows.push_back({"launch latency (median of " + std::to_string(reps) + ")", ranks, v[v.size() / 2], v.back()});
  }
  auto kill9 = Fault("KILL", 5);
  rows.push_back({"kill -9: detect", 4, kill9.first, 0});
  rows.push_back({"kill -9: recover", 4, kill9.second, 0});
  auto stop = Fault("STOP", 2);
  rows.push_back({"SIGSTOP (timeout 2 s): detect", 4, stop.first, 0});
  rows.push_back({"SIGSTOP (timeout 2 s): recover", 4, stop.second, 0});

  std::printf("# lockstep launch on this host (MLP recipe, CPU ranks under mpirun)\n");
  std::printf("%-36s %6s %12s %12s\n", "measurement", "ranks", "time", "max");
  std::printf("%-36s %6s %12s %12s\n", "", "", "(ms)", "(ms)");
  bool ok = true;
  for (const auto& r : rows) {
    std::printf("%-36s %6d %12.1f %12.1f\n", r.what.c_str(), r.ranks, r.ms, r.ms2);
    ok &= r.ms > 0;
  }
  for (const auto& r : rows) {
    std::printf("{\"bench\": \"launcher\", \"what\": \"%s\", \"ranks\": %d, \"ms\": %.1f, \"max_ms\": %.1f}\n", r.what.c_str(),
                r.ranks, r.ms, r.ms2);
  }
  std::printf("%s\n", ok ? "OK" : "FAILED (a measurement is missing)");
  return ok ? 0 : 1;
}
