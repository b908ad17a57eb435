// DiscoverWorld against fake environments (no real variables are read).
#include "runtime/comm/world.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

namespace lockstep::comm {
namespace {

using Env = std::map<std::string, std::string>;

Result<WorldInfo> Discover(const Env& env) {
  return DiscoverWorld([&env](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  });
}

TEST(DiscoverWorld, EmptyEnvironmentIsSingleProcess) {
  auto w = Discover({});
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_EQ(w->source, "single");
  EXPECT_EQ(w->rank, 0);
  EXPECT_EQ(w->world_size, 1);
  EXPECT_EQ(w->local_rank, 0);
  EXPECT_EQ(w->local_size, 1);
}

TEST(DiscoverWorld, OpenMpiVariables) {
  auto w = Discover({{"OMPI_COMM_WORLD_RANK", "5"}, {"OMPI_COMM_WORLD_SIZE", "8"},
                     {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"}});
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_EQ(w->source, "mpi");
  EXPECT_EQ(w->rank, 5);
  EXPECT_EQ(w->world_size, 8);
  EXPECT_EQ(w->local_rank, 1);
  EXPECT_EQ(w->local_size, 4);
}

TEST(DiscoverWorld, PmixRankWithSlurmSizeUnderSrun) {
  auto w = Discover({{"PMIX_RANK", "3"}, {"SLURM_NTASKS", "4"}, {"SLURM_PROCID", "3"}, {"SLURM_STEP_ID", "0"},
                     {"SLURM_LOCALID", "1"}});
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_EQ(w->source, "mpi");
  EXPECT_EQ(w->rank, 3);
  EXPECT_EQ(w->world_size, 4);
  EXPECT_EQ(w->local_rank, 1);
}

TEST(DiscoverWorld, PmixRankWithoutAnySizeIsAnError) {
  auto w = Discover({{"PMIX_RANK", "0"}});
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(w.status().message().find("PMIX_SIZE"), std::string::npos) << w.status().message();
}

TEST(DiscoverWorld, MpiRankWinsOverSbatchBatchStepVariables) {
  // mpirun inside an sbatch allocation: every rank sees SLURM_PROCID=0.
  auto w = Discover({{"OMPI_COMM_WORLD_RANK", "2"}, {"OMPI_COMM_WORLD_SIZE", "4"}, {"SLURM_PROCID", "0"},
                     {"SLURM_NTASKS", "4"}, {"SLURM_LOCALID", "0"}, {"SLURM_JOB_ID", "17"}});
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_EQ(w->source, "mpi");
  EXPECT_EQ(w->rank, 2);
  EXPECT_EQ(w->world_size, 4);
}

TEST(DiscoverWorld, SlurmSrunStepWithNtasksPerNode) {
  auto w = Discover({{"SLURM_PROCID", "6"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "2"},
                     {"SLURM_NTASKS_PER_NODE", "4"}, {"SLURM_STEP_ID", "0"}});
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_EQ(w->source, "slurm");
  EXPECT_EQ(w->rank, 6);
  EXPECT_EQ(w->world_size, 8);
  EXPECT_EQ(w->local_rank, 2);
  EXPECT_EQ(w->local_size, 4);
}

TEST(DiscoverWorld, SlurmLocalSizeDerivedFromTasksPerNodeList) {
  // 3 nodes with 2 tasks, then one with 1; node 3 is the last one.
  auto w = Discover({{"SLURM_PROCID", "6"}, {"SLURM_NTASKS", "7"}, {"SLURM_LOCALID", "0"}, {"SLURM_NODEID", "3"},
                     {"SLURM_STEP_TASKS_PER_NODE", "2(x3),1"}, {"SLURM_STEPID", "1"}});
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_EQ(w->local_size, 1);
  auto w2 = Discover({{"SLURM_PROCID", "3"}, {"SLURM_NTASKS", "7"}, {"SLURM_LOCALID", "1"}, {"SLURM_NODEID", "1"},
                      {"SLURM_TASKS_PER_NODE", "2(x3),1"}, {"SLURM_STEP_ID", "0"}});
  ASSERT_TRUE(w2.ok()) << w2.status().ToString();
  EXPECT_EQ(w2->local_size, 2);
}

TEST(DiscoverWorld, SlurmBatchScriptWithoutStepIsSingleProcess) {
  auto w = Discover({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "4"}, {"SLURM_JOB_ID", "9"}});
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_EQ(w->source, "single");
  EXPECT_EQ(w->world_size, 1);
}

TEST(DiscoverWorld, MalformedTasksPerNodeNamesTheVariable) {
  auto w = Discover({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"SLURM_STEP_ID", "0"},
                     {"SLURM_TASKS_PER_NODE", "2(y3)"}});
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.status().message().find("SLURM_TASKS_PER_NODE"), std::string::npos) << w.status().message();
}

TEST(DiscoverWorld, TorchrunVariables) {
  auto w = Discover({{"RANK", "3"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"}, {"LOCAL_WORLD_SIZE", "2"},
                     {"MASTER_ADDR", "10.0.0.1"}, {"MASTER_PORT", "29500"}});
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_EQ(w->source, "torchrun");
  EXPECT_EQ(w->rank, 3);
  EXPECT_EQ(w->world_size, 4);
  EXPECT_EQ(w->local_rank, 1);
  EXPECT_EQ(w->local_size, 2);
  EXPECT_EQ(w->master_addr, "10.0.0.1");
  EXPECT_EQ(w->master_port, 29500);
}

TEST(DiscoverWorld, ContradictoryTorchrunAndMpiSizesNameBothSources) {
  auto w = Discover({{"WORLD_SIZE", "4"}, {"RANK", "0"}, {"OMPI_COMM_WORLD_SIZE", "2"}, {"OMPI_COMM_WORLD_RANK", "0"}});
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), StatusCode::kInvalidArgument);
  const std::string& m = w.status().message();
  EXPECT_NE(m.find("WORLD_SIZE=4"), std::string::npos) << m;
  EXPECT_NE(m.find("MPI world size=2"), std::string::npos) << m;
}

TEST(DiscoverWorld, AgreeingTorchrunAndMpiAreAccepted) {
  auto w = Discover({{"WORLD_SIZE", "2"}, {"RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "2"}, {"OMPI_COMM_WORLD_RANK", "1"}});
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_EQ(w->source, "mpi");
  EXPECT_EQ(w->rank, 1);
}

TEST(DiscoverWorld, MalformedNumberNamesTheVariable) {
  auto w = Discover({{"OMPI_COMM_WORLD_RANK", "1x"}, {"OMPI_COMM_WORLD_SIZE", "2"}});
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(w.status().message().find("OMPI_COMM_WORLD_RANK='1x'"), std::string::npos) << w.status().message();
}

TEST(DiscoverWorld, MalformedTorchrunPortNamesTheVariable) {
  auto w = Discover({{"MASTER_PORT", "http"}});
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.status().message().find("MASTER_PORT"), std::string::npos) << w.status().message();
}

TEST(DiscoverWorld, RankOutsideWorldIsAnError) {
  auto w = Discover({{"OMPI_COMM_WORLD_RANK", "4"}, {"OMPI_COMM_WORLD_SIZE", "4"}});
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.status().message().find("rank 4 is outside [0, 4)"), std::string::npos) << w.status().message();
}

TEST(DiscoverWorld, RankWithoutWorldSizeIsAnError) {
  auto w = Discover({{"RANK", "1"}});
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.status().message().find("WORLD_SIZE is not"), std::string::npos) << w.status().message();
}

}  // namespace
}  // namespace lockstep::comm
