// Cluster configs: every file under cluster-configs/ parses and renders (mpirun
// command or sbatch script); bad input is an error a user can act on
// (file:line:column, the numbers of ranks and slots, the missing file).
#include <gtest/gtest.h>
#include <dirent.h>

#include <algorithm>

#include "launcher/cluster_config.h"
#include "launcher/render.h"

namespace lockstep {
namespace {

std::string Source(const std::string& rel) { return std::string(LOCKSTEP_TEST_SOURCE_DIR) + "/" + rel; }

std::vector<std::string> ConfigFiles() {
  std::vector<std::string> out;
  DIR* d = opendir(Source("cluster-configs").c_str());
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n.size() > 6 && n.substr(n.size() - 6) == ".pbtxt") out.push_back(Source("cluster-configs/" + n));
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

TrainInvocation Train() {
  auto t = ParseTrainInvocation({"train", "--config", Source("tests/ddp/mlp48.pbtxt"), "--run-dir", "/tmp/run"});
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return *t;
}

bool Has(const std::vector<std::string>& v, const std::string& s) { return std::find(v.begin(), v.end(), s) != v.end(); }

TEST(ClusterConfigs, EveryFileParsesAndRenders) {
  std::vector<std::string> files = ConfigFiles();
  ASSERT_GE(files.size(), 5u) << "local, local-gpus, mpirun-2x8-gpu, slurm-4x8-gpu, slurm-test";
  for (const std::string& f : files) {
    SCOPED_TRACE(f);
    auto c = LoadClusterConfig(f);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    if (EffectiveMode(c->config) == cluster::SLURM) {
      SbatchRequest req;
      req.cluster_path = f;
      req.binary = "/bin/true";
      req.train = Train();
      auto script = RenderSbatchScript(*c, req);
      ASSERT_TRUE(script.ok()) << script.status().ToString();
      for (const char* line : {"#!/bin/bash", "#SBATCH --signal=B:USR1@", "#SBATCH --requeue", "#SBATCH --open-mode=append",
                               "#SBATCH --ntasks-per-node=", "launch --cluster", "scontrol requeue", "-- train --config"}) {
        EXPECT_NE(script->find(line), std::string::npos) << line << "\n" << *script;
      }
    } else {
      LaunchRequest req;
      req.binary = "/bin/true";
      req.train = Train();
      req.control_env = {{"LOCKSTEP_JOB_TOKEN", "t"}};
      auto plan = RenderLaunch(*c, req);
      ASSERT_TRUE(plan.ok()) << plan.status().ToString();
      EXPECT_TRUE(Has(plan->argv, "-np")) << CommandLine(plan->argv);
      EXPECT_TRUE(Has(plan->argv, "LOCKSTEP_JOB_TOKEN")) << "exported with -x";
      EXPECT_TRUE(Has(plan->argv, "/bin/true"));
      EXPECT_EQ(CommandLine(plan->argv).find("=t "), std::string::npos) << "the token never appears on the command line";
      EXPECT_GT(plan->nprocs, 0);
    }
  }
}

TEST(ClusterConfigs, MultiNodeRendersHostsInterfacesAndNcclEnvironment) {
  auto c = LoadClusterConfig(Source("cluster-configs/mpirun-2x8-gpu.pbtxt"));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  LaunchRequest req;
  req.binary = "/bin/true";
  req.train = Train();
  auto plan = RenderLaunch(*c, req);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  std::string cmd = CommandLine(plan->argv);
  for (const char* s : {"-np 16", "--hostfile /tmp/run/hostfile", "--map-by ppr:8:node", "--mca btl_tcp_if_include eth0",
                        "--mca oob_tcp_if_include eth0", "-x NCCL_IB_HCA", "-x NCCL_SOCKET_IFNAME", "-x LD_LIBRARY_PATH",
                        "distributed.collective_timeout_seconds=600"}) {
    EXPECT_NE(cmd.find(s), std::string::npos) << s << "\n" << cmd;
  }
  EXPECT_EQ(cmd.find("--allow-run-as-root"), std::string::npos) << "only where configured";
  EXPECT_EQ(cmd.find("--oversubscribe"), std::string::npos) << "only where configured";
  EXPECT_EQ(plan->hostfile_path, "/tmp/run/hostfile");
  EXPECT_NE(plan->hostfile_text.find("\nnode01 slots=8\nnode02 slots=8\n"), std::string::npos) << plan->hostfile_text;
}

TEST(ClusterConfigErrors, UnknownFieldNamesFileLineColumn) {
  auto c = ParseClusterConfig("mode: LOCAL\nfault {\n  max_restart: 3\n}\n", "bad.pbtxt");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("bad.pbtxt:3:14"), std::string::npos) << c.status().message();
  EXPECT_NE(c.status().message().find("max_restart"), std::string::npos) << c.status().message();
}

TEST(ClusterConfigErrors, WrongTypeNamesFileLineColumn) {
  auto c = ParseClusterConfig("mode: LOCAL\nnprocs: \"four\"\n", "bad.pbtxt");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("bad.pbtxt:2:"), std::string::npos) << c.status().message();
}

TEST(ClusterConfigErrors, InvalidSlurmTimeLimit) {
  for (const char* bad : {"1:2:3:4", "25:61:00", "abc", "1-25:00", "00:00:00", "10:99"}) {
    auto c = ParseClusterConfig(std::string("mode: SLURM\nslurm { time_limit: \"") + bad + "\" }\n", "t.pbtxt");
    EXPECT_FALSE(c.ok()) << bad;
    if (!c.ok()) {
      EXPECT_NE(c.status().message().find("time_limit"), std::string::npos) << c.status().message();
    }
  }
  for (const char* good : {"30", "30:00", "12:00:00", "1-00:00:00", "2-12", "UNLIMITED"}) {
    EXPECT_TRUE(ParseSlurmTimeLimit(good).ok()) << good;
  }
  EXPECT_EQ(*ParseSlurmTimeLimit("1-02:03:04"), ((24 + 2) * 60 + 3) * 60 + 4);
}

TEST(ClusterConfigErrors, MoreRanksThanSlotsWithoutOversubscription) {
  auto c = ParseClusterConfig("mode: MPIRUN\nhosts { name: \"a\" slots: 2 }\nhosts { name: \"b\" slots: 2 }\n", "s.pbtxt");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  LaunchRequest req;
  req.binary = "/bin/true";
  req.train = Train();
  req.nprocs_override = 6;
  auto plan = RenderLaunch(*c, req);
  ASSERT_FALSE(plan.ok());
  EXPECT_NE(plan.status().message().find("6 ranks requested"), std::string::npos) << plan.status().message();
  EXPECT_NE(plan.status().message().find("4 slot(s)"), std::string::npos) << plan.status().message();
  c->config.mutable_mpi()->set_oversubscribe(true);
  EXPECT_TRUE(RenderLaunch(*c, req).ok());
}

TEST(ClusterConfigErrors, MissingBinaryOrRecipe) {
  auto c = ParseClusterConfig("mode: LOCAL\nbinary: \"/no/such/lockstep\"\n", "b.pbtxt");
  ASSERT_TRUE(c.ok());
  LaunchRequest req;
  req.train = Train();
  auto plan = RenderLaunch(*c, req);
  ASSERT_FALSE(plan.ok());
  EXPECT_NE(plan.status().message().find("/no/such/lockstep"), std::string::npos) << plan.status().message();

  auto t = ParseTrainInvocation({"train", "--config", "/no/such/recipe.pbtxt"});
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("/no/such/recipe.pbtxt"), std::string::npos);
  EXPECT_FALSE(ParseTrainInvocation({"--config", "x"}).ok()) << "must start with train";
}

TEST(ClusterConfigErrors, RestartsResumeAutomatically) {
  auto args = WithResumeAuto({"train", "--config", "r", "--resume", "none", "--max-steps", "3"});
  std::vector<std::string> want = {"train", "--config", "r", "--max-steps", "3", "--resume", "auto"};
  EXPECT_EQ(args, want);
}

}  // namespace
}  // namespace lockstep
