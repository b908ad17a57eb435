// `lockstep train --set training.device=CUDA` end to end on the CUDA emulator
// (bin/lockstep_cuda_emulated: the lockstep sources over the emulated runtime), with
// real files and real processes: checkpoints staged from device memory, resume into
// device memory, gradients of several ranks under mpirun. What a
// GPU run of the same commands must also show, checked here on every CI run:
// - stop and resume is bitwise the uninterrupted run;
// - the CUDA run matches the CPU backend's;
// - 2 ranks, then 3 ranks resuming their checkpoint, match the single-rank run, with
//   gradients through host memory or over NCCL.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "checkpoints/checkpoint.h"
#include "tests/ddp/parameter_difference.h"
#include "tests/ddp/subprocess.h"
#include "tests/resume/run_dir_util.h"

namespace lockstep {
namespace {

using testing::MaxRelativeDifference;
using testing::RunCommand;
using testing::Exists;
using testing::HaveDataset;
using testing::ReadBuffer;
using testing::StepDir;

std::string Lockstep() { return std::string(LOCKSTEP_TEST_BINARY_DIR) + "/bin/lockstep_cuda_emulated"; }

std::string RunDir(const std::string& name) { return testing::FreshDir("cuda_training_" + name); }

// `lockstep train` on `ranks` ranks (1: no mpirun), on the emulated GPU unless `device`
// says otherwise. OpenMPI keeps allocations until exit: no leak check under mpirun.
testing::CommandResult Train(int ranks, const std::string& recipe, const std::string& run_dir,
                             const std::string& args, const std::string& device = "CUDA") {
  const std::string env = ranks > 1 ? "ASAN_OPTIONS=detect_leaks=0 " : "";
  return RunCommand(env + testing::TrainCommand(Lockstep(), ranks, recipe, run_dir,
                                                "--set training.device=" + device + " " + args),
                    600);
}

std::vector<std::string> BufferNames(const std::string& dir) {
  std::vector<std::string> names;
  auto reader = ckpt::CheckpointReader::Open(dir);
  EXPECT_TRUE(reader.ok()) << reader.status().ToString();
  if (reader.ok()) {
    for (const ckpt::BufferLayout& layout : (*reader)->meta().buffers) names.push_back(layout.name);
  }
  return names;
}

class CudaResume : public ::testing::TestWithParam<const char*> {};

TEST_P(CudaResume, StopAndResumeIsBitwiseTheUninterruptedRun) {
  if (!HaveDataset()) GTEST_SKIP() << "Fashion-MNIST not installed";
  const std::string recipe = std::string(GetParam()) + ".pbtxt";
  const int k = 4;
  const std::string common = "--max-steps " + std::to_string(2 * k);
  const std::string straight = RunDir(std::string(GetParam()) + "_straight");
  auto r = Train(1, recipe, straight, common);
  ASSERT_EQ(r.exit_code, 0) << r.output;

  const std::string resumed = RunDir(std::string(GetParam()) + "_resumed");
  r = Train(1, recipe, resumed, common + " --stop-at-step " + std::to_string(k));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(Exists(StepDir(resumed, k))) << r.output;
  r = Train(1, recipe, resumed, common);
  ASSERT_EQ(r.exit_code, 0) << r.output;

  const std::vector<std::string> names = BufferNames(StepDir(straight, 2 * k));
  ASSERT_GE(names.size(), 2u) << "parameters and optimiser state";
  for (const std::string& buffer : names) {
    const std::vector<float> a = ReadBuffer(StepDir(straight, 2 * k), buffer);
    const std::vector<float> b = ReadBuffer(StepDir(resumed, 2 * k), buffer);
    ASSERT_EQ(a.size(), b.size()) << buffer;
    ASSERT_FALSE(a.empty()) << buffer;
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)))
        << buffer << " differs; max relative difference " << MaxRelativeDifference(b, a);
  }
}

INSTANTIATE_TEST_SUITE_P(Models, CudaResume, ::testing::Values("mlp48", "lstm48"));

TEST(CudaTraining, MatchesTheCpuBackend) {
  if (!HaveDataset()) GTEST_SKIP() << "Fashion-MNIST not installed";
  const std::string args = "--max-steps 8";
  const std::string cuda = RunDir("vs_cpu_cuda"), cpu = RunDir("vs_cpu_cpu");
  auto r = Train(1, "mlp48.pbtxt", cuda, args);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = Train(1, "mlp48.pbtxt", cpu, args, "CPU");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* buffer : {"params", "opt.m", "opt.v"}) {
    const std::vector<float> a = ReadBuffer(StepDir(cpu, 8), buffer);
    const std::vector<float> b = ReadBuffer(StepDir(cuda, 8), buffer);
    ASSERT_EQ(a.size(), b.size()) << buffer;
    const double rel = MaxRelativeDifference(b, a);
    EXPECT_LE(rel, 1e-4) << buffer;
    std::printf("[cuda-emulated] 8 MLP steps, CUDA vs CPU, %s: max relative difference %.3g\n", buffer, rel);
  }
}

// The gradients of several ranks through host memory and MPI (the default), or over
// NCCL (the emulated one: include/nccl.h), which the one GPU of a lent machine cannot
// run with more than one rank.
class CudaRanks : public ::testing::TestWithParam<const char*> {};

TEST_P(CudaRanks, TwoThenThreeRanksMatchTheSingleRankRun) {
  if (!HaveDataset()) GTEST_SKIP() << "Fashion-MNIST not installed";
  const int k = 3;
  const std::string collectives = GetParam();
  const std::string common = "--max-steps " + std::to_string(2 * k) +
                             " --set distributed.device_collectives=" + collectives;
  const std::string straight = RunDir("ranks_straight_" + collectives), run = RunDir("ranks_run_" + collectives);
  auto r = Train(1, "mlp48.pbtxt", straight, "--max-steps " + std::to_string(2 * k));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = Train(2, "mlp48.pbtxt", run, common + " --stop-at-step " + std::to_string(k));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const bool over_nccl = r.output.find("gradients and parameters over NCCL") != std::string::npos;
  EXPECT_EQ(over_nccl, collectives == "NCCL") << r.output;
  r = Train(3, "mlp48.pbtxt", run, common);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("saved by 2 rank(s), now 3"), std::string::npos) << r.output;
  for (const char* buffer : {"params", "opt.m", "opt.v"}) {
    const std::vector<float> a = ReadBuffer(StepDir(straight, 2 * k), buffer);
    const std::vector<float> b = ReadBuffer(StepDir(run, 2 * k), buffer);
    ASSERT_EQ(a.size(), b.size()) << buffer;
    const double rel = MaxRelativeDifference(b, a);
    EXPECT_LE(rel, 1e-5) << buffer;
    std::printf("[cuda-emulated] 2 then 3 ranks (%s) vs 1, %s: max relative difference %.3g\n",
                collectives.c_str(), buffer, rel);
  }
}

INSTANTIATE_TEST_SUITE_P(Collectives, CudaRanks, ::testing::Values("MPI_HOST_STAGED", "NCCL"));

}  // namespace
}  // namespace lockstep
