// Checkpoint and resume with the real `lockstep` binary, real files and real
// processes (under real mpirun for several ranks):
// - exact resume: K steps, stop, a new process resumes, K more == 2K steps straight,
//   bitwise on the CPU backend (parameters and optimiser state);
// - resharding: 4 -> 2 -> 3 ranks match the uninterrupted run to 1e-5, with and
//   without ZeRO-1;
// - faults: kill -9 of a rank mid-save, a flipped byte, a truncated manifest, a full
//   disk, a checkpoint of another model.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <thread>

#include "checkpoints/checkpoint.h"
#include "tests/ddp/parameter_difference.h"
#include "tests/ddp/subprocess.h"
#include "tests/resume/run_dir_util.h"

namespace lockstep {
namespace {

using testing::MaxRelativeDifference;
using testing::Mpirun;
using testing::RunCommand;
using testing::Exists;
using testing::HaveDataset;
using testing::ReadBuffer;
using testing::StepDir;

std::string Lockstep() { return std::string(LOCKSTEP_TEST_BINARY_DIR) + "/bin/lockstep"; }

// This suite's run directories.
std::string RunDir(const std::string& name) { return testing::FreshDir("resume_" + name); }

// `lockstep train` on `ranks` ranks (1: no mpirun); returns the command's result.
testing::CommandResult Train(int ranks, const std::string& recipe, const std::string& run_dir,
                             const std::string& args, const std::string& env = "") {
  return RunCommand(env + " " + testing::TrainCommand(Lockstep(), ranks, recipe, run_dir, args), 600);
}


// ---------------------------------------------------------------- exactness

struct ExactCase {
  const char* name;
  const char* recipe;
  int ranks;
  const char* sets;
};

class ExactResume : public ::testing::TestWithParam<ExactCase> {};

TEST_P(ExactResume, StopAndResumeIsBitwiseTheUninterruptedRun) {
  if (!HaveDataset()) GTEST_SKIP() << "Fashion-MNIST not installed";
  const ExactCase& c = GetParam();
  const int k = 4;
  const std::string common = std::string("--max-steps ") + std::to_string(2 * k) + " " + c.sets;
  std::string straight = RunDir(std::string(c.name) + "_straight");
  auto r = Train(c.ranks, c.recipe, straight, common);
  ASSERT_EQ(r.exit_code, 0) << r.output;

  std::string resumed = RunDir(std::string(c.name) + "_resumed");
  r = Train(c.ranks, c.recipe, resumed, common + " --stop-at-step " + std::to_string(k));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(Exists(StepDir(resumed, k))) << "stopping saves a checkpoint\n" << r.output;
  ASSERT_FALSE(Exists(StepDir(resumed, 2 * k)));
  r = Train(c.ranks, c.recipe, resumed, common);  // --resume auto is the default
  ASSERT_EQ(r.exit_code, 0) << r.output;

  // Every buffer: parameters and the optimiser's state (Adam m, v or SGD momentum).
  auto reader = ckpt::CheckpointReader::Open(StepDir(straight, 2 * k));
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  ASSERT_GE((*reader)->meta().buffers.size(), 2u) << "parameters and optimiser state";
  for (const ckpt::BufferLayout& layout : (*reader)->meta().buffers) {
    const std::string& buffer = layout.name;
    std::vector<float> a = ReadBuffer(StepDir(straight, 2 * k), buffer);
    std::vector<float> b = ReadBuffer(StepDir(resumed, 2 * k), buffer);
    ASSERT_EQ(a.size(), b.size()) << buffer;
    ASSERT_FALSE(a.empty()) << buffer;
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)))
        << buffer << " differs; max relative difference " << MaxRelativeDifference(b, a);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Models, ExactResume,
    ::testing::Values(ExactCase{"mlp", "mlp48.pbtxt", 1, ""},
                      ExactCase{"cnn", "cnn48.pbtxt", 1, ""},
                      ExactCase{"charlm_transformer", "charlm48.pbtxt", 1, ""},
                      // Two models and two optimisers in one checkpoint.
                      ExactCase{"gan", "gan48.pbtxt", 1, ""},
                      ExactCase{"gan_2ranks_zero1", "gan48.pbtxt", 2, "--set distributed.zero_stage=1"},
                      ExactCase{"mlp_2ranks_zero1_sync", "mlp48.pbtxt", 2,
                                "--set distributed.zero_stage=1 --set checkpoint.async=false"}),
    [](const ::testing::TestParamInfo<ExactCase>& i) { return std::string(i.param.name); });

class Reshard : public ::testing::TestWithParam<const char*> {};

TEST_P(Reshard, FourThenTwoThenThreeRanksMatchTheUninterruptedRun) {
  if (!HaveDataset()) GTEST_SKIP() << "Fashion-MNIST not installed";
  const std::string sets = GetParam();
  const int k = 3;
  const std::string common = "--max-steps " + std::to_string(3 * k) + " " + sets;
  std::string straight = RunDir("reshard_straight");
  auto r = Train(1, "mlp48.pbtxt", straight, common);
  ASSERT_EQ(r.exit_code, 0) << r.output;

  std::string run = RunDir("reshard_run");
  r = Train(4, "mlp48.pbtxt", run, common + " --stop-at-step " + std::to_string(k));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = Train(2, "mlp48.pbtxt", run, common + " --stop-at-step " + std::to_string(2 * k));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("saved by 4 rank(s), now 2"), std::string::npos) << r.output;
  r = Train(3, "mlp48.pbtxt", run, common);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("saved by 2 rank(s), now 3"), std::string::npos) << r.output;

  for (const char* buffer : {"params", "opt.m", "opt.v"}) {
    std::vector<float> a = ReadBuffer(StepDir(straight, 3 * k), buffer);
    std::vector<float> b = ReadBuffer(StepDir(run, 3 * k), buffer);
    ASSERT_EQ(a.size(), b.size());
    double rel = MaxRelativeDifference(b, a);
    EXPECT_LE(rel, 1e-5) << buffer;
    std::printf("[resume] reshard 4->2->3 %s %s: max relative difference %.3g\n", sets.c_str(), buffer, rel);
  }
}

INSTANTIATE_TEST_SUITE_P(Zero, Reshard, ::testing::Values("", "--set distributed.zero_stage=1"),
                         [](const ::testing::TestParamInfo<const char*>& i) {
                           return std::string(i.index == 0 ? "replicated" : "zero1");
                         });

// ---------------------------------------------------------------- faults

// Sends `signal` to the newest rank process of the run in `run_dir`. The pattern is
// anchored at the binary, so neither mpirun nor this command's own shell matches.
std::string SignalOneRank(const std::string& run_dir, const std::string& signal) {
  return "pid=$(pgrep -f '^" + Lockstep() + " train .*--run-dir " + run_dir +
         " ' | sort -n | tail -1); [ -n \"$pid\" ] && kill -" + signal + " $pid";
}

TEST(ResumeFaults, KillNineMidSaveKeepsThePreviousCheckpoint) {
  if (!HaveDataset()) GTEST_SKIP() << "Fashion-MNIST not installed";
  std::string run = RunDir("kill9");
  // Rank 1 writes slowly, so the second save (step 6) is still writing when rank 1
  // is killed; the first (step 3) has committed by then.
  std::string cmd = "LOCKSTEP_CKPT_FAULT=rank=1,write_delay_ms=700 " + Mpirun(2) + " -x LOCKSTEP_CKPT_FAULT " +
                    Lockstep() + " train --quiet --config " + testing::DdpRecipe("mlp48.pbtxt") + " --run-dir " + run +
                    " --max-steps 6 --set checkpoint.every_steps=3 > " + run + ".log 2>&1 & echo started";
  RunCommand("mkdir -p " + run + " && " + cmd, 30);
  const std::string tmp = StepDir(run, 6) + ".tmp";
  bool killed = false;
  for (int i = 0; i < 600 && !killed; ++i) {
    if (Exists(StepDir(run, 3)) && Exists(tmp)) {
      // Kill one rank (the newest process of this run) while the save is in flight.
      auto k = RunCommand(SignalOneRank(run, "KILL"), 10);
      killed = k.exit_code == 0;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(killed) << "never saw step 3 committed and step 6 being written";
  RunCommand("for i in $(seq 100); do pgrep -f -- '--run-dir " + run + " ' >/dev/null || exit 0; sleep 0.1; done", 30);
  EXPECT_TRUE(Exists(tmp)) << "the killed save left its temporary directory";
  EXPECT_FALSE(Exists(StepDir(run, 6))) << "an incomplete save must never look committed";
  auto verify = RunCommand(Lockstep() + " ckpt verify " + StepDir(run, 3), 60);
  EXPECT_EQ(verify.exit_code, 0) << verify.output;

  auto r = Train(2, "mlp48.pbtxt", run, "--max-steps 6 --set checkpoint.every_steps=3");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_FALSE(Exists(tmp)) << "stale .tmp removed at start-up";
  EXPECT_TRUE(Exists(StepDir(run, 6)));
}

// Two committed checkpoints (steps 3 and 6) of the MLP, synchronous saves.
std::string TwoCheckpoints(const std::string& name) {
  std::string run = RunDir(name);
  auto r = Train(1, "mlp48.pbtxt", run, "--max-steps 6 --set checkpoint.every_steps=3");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(Exists(StepDir(run, 3)) && Exists(StepDir(run, 6)));
  return run;
}

TEST(ResumeFaults, FlippedByteIsNamedAndResumeFallsBack) {
  if (!HaveDataset()) GTEST_SKIP() << "Fashion-MNIST not installed";
  std::string run = TwoCheckpoints("flip");
  const std::string shard = StepDir(run, 6) + "/" + ckpt::ShardFileName(0, 1);
  {
    std::fstream f(shard, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(1000);
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x10);
    f.seekp(1000);
    f.write(&c, 1);
  }
  auto verify = RunCommand(Lockstep() + " ckpt verify " + StepDir(run, 6) + " 2>&1", 60);
  EXPECT_EQ(verify.exit_code, 4) << verify.output;
  EXPECT_NE(verify.output.find(ckpt::ShardFileName(0, 1)), std::string::npos) << verify.output;

  auto r = Train(1, "mlp48.pbtxt", run, "--max-steps 8");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find(ckpt::StepDirName(6)), std::string::npos) << "the bad one is named\n" << r.output;
  EXPECT_NE(r.output.find("resumed from " + StepDir(run, 3)), std::string::npos) << r.output;
}

TEST(ResumeFaults, TruncatedManifestFallsBack) {
  if (!HaveDataset()) GTEST_SKIP() << "Fashion-MNIST not installed";
  std::string run = TwoCheckpoints("truncated");
  const std::string manifest = StepDir(run, 6) + "/manifest.pb";
  struct stat st {};
  ASSERT_EQ(stat(manifest.c_str(), &st), 0);
  ASSERT_EQ(truncate(manifest.c_str(), st.st_size / 2), 0);
  auto r = Train(1, "mlp48.pbtxt", run, "--max-steps 8");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resumed from " + StepDir(run, 3)), std::string::npos) << r.output;
}

TEST(ResumeFaults, DiskFullKeepsThePreviousCheckpointAndFollowsThePolicy) {
  if (!HaveDataset()) GTEST_SKIP() << "Fashion-MNIST not installed";
  // One MLP checkpoint is ~305 KB (parameters + Adam m and v): the first fits, the second does not.
  const std::string fault = "LOCKSTEP_CKPT_FAULT=enospc_after_bytes=400000";
  std::string run = RunDir("diskfull_continue");
  auto r = Train(1, "mlp48.pbtxt", run, "--max-steps 6 --set checkpoint.every_steps=3", fault);
  EXPECT_EQ(r.exit_code, 0) << "on_failure: CONTINUE (default) keeps training\n" << r.output;
  EXPECT_NE(r.output.find("No space left on device"), std::string::npos) << r.output;
  EXPECT_TRUE(Exists(StepDir(run, 3)));
  EXPECT_FALSE(Exists(StepDir(run, 6)));
  EXPECT_FALSE(Exists(StepDir(run, 6) + ".tmp")) << "a failed save cleans up after itself";
  EXPECT_EQ(RunCommand(Lockstep() + " ckpt verify " + StepDir(run, 3), 60).exit_code, 0);

  run = RunDir("diskfull_stop");
  r = Train(1, "mlp48.pbtxt", run,
            "--max-steps 9 --set checkpoint.every_steps=3 --set checkpoint.on_failure=STOP", fault);
  EXPECT_EQ(r.exit_code, 4) << "on_failure: STOP ends with the checkpoint exit code\n" << r.output;
  EXPECT_NE(r.output.find("No space left on device"), std::string::npos) << r.output;
  EXPECT_TRUE(Exists(StepDir(run, 3)));
  EXPECT_FALSE(Exists(StepDir(run, 9))) << "training stopped at the failure";
}

TEST(ResumeFaults, CheckpointOfAnotherModelIsAClearError) {
  if (!HaveDataset()) GTEST_SKIP() << "Fashion-MNIST not installed";
  std::string run = RunDir("other_model");
  auto r = Train(1, "mlp48.pbtxt", run, "--max-steps 2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::string other = RunDir("other_model_cnn");
  r = Train(1, "cnn48.pbtxt", other, "--max-steps 2 --resume " + StepDir(run, 2));
  EXPECT_EQ(r.exit_code, 4) << r.output;
  EXPECT_NE(r.output.find("does not fit this model"), std::string::npos) << r.output;
  // --resume auto into a run directory holding another model's checkpoint: also an error.
  r = Train(1, "cnn48.pbtxt", run, "--max-steps 2");
  EXPECT_EQ(r.exit_code, 4) << r.output;
}

TEST(ResumeFaults, ChangedHyperparameterResumesWithAWarning) {
  if (!HaveDataset()) GTEST_SKIP() << "Fashion-MNIST not installed";
  std::string run = RunDir("changed_lr");
  auto r = Train(1, "mlp48.pbtxt", run, "--max-steps 2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = Train(1, "mlp48.pbtxt", run, "--max-steps 4 --set optimizer.learning_rate=0.002");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resumed from"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("learning_rate"), std::string::npos) << "the warning names the change\n" << r.output;
}

TEST(ResumeTriggers, PreemptionSignalOnOneRankSavesEveryRankAndExitsForRequeue) {
  if (!HaveDataset()) GTEST_SKIP() << "Fashion-MNIST not installed";
  std::string run = RunDir("preempt");
  // Batch 480 and 4000 steps (~10 s): long enough to signal mid-run. Periodic
  // checkpoints every 100 steps, all kept, show when training is under way.
  const std::string args =
      "--set training.epochs=40 --set training.global_batch_size=480 --set checkpoint.every_steps=100 "
      "--set checkpoint.keep_every_steps=100 --max-steps 4000";
  RunCommand("mkdir -p " + run + " && (" + Mpirun(2) + Lockstep() + " train --quiet --config " +
                 testing::DdpRecipe("mlp48.pbtxt") + " --run-dir " + run + " " + args + " > " + run +
                 ".log 2>&1; echo $? > " + run + ".rc) > /dev/null 2>&1 & echo started",  // off our pipe
             30);
  // Once training has saved its first checkpoint, SIGUSR1 to one rank only (a
  // signal may reach a single process first).
  for (int i = 0; i < 1200 && !Exists(StepDir(run, 100)); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(Exists(StepDir(run, 100))) << RunCommand("cat " + run + ".log", 10).output;
  auto k = RunCommand(SignalOneRank(run, "USR1"), 10);
  ASSERT_EQ(k.exit_code, 0);
  auto waited = RunCommand("for i in $(seq 600); do [ -f " + run + ".rc ] && cat " + run + ".rc && exit 0; sleep 0.1; done; exit 1", 90);
  ASSERT_EQ(waited.exit_code, 0) << "the job did not end";
  auto log = RunCommand("cat " + run + ".log", 10).output;
  EXPECT_EQ(std::stoi(waited.output), 75) << "the requeue exit code\n" << log;
  EXPECT_NE(log.find("preempted by a signal after step"), std::string::npos) << log;
  auto list = ckpt::ListCheckpoints(run);
  ASSERT_TRUE(list.ok() && !list->empty()) << log;
  const int64_t saved = list->back().step;
  EXPECT_GT(saved, 0);
  EXPECT_LT(saved, 4000) << "stopped early";
  const std::string marker = "preempted by a signal after step ";
  size_t at = log.find(marker);
  ASSERT_NE(at, std::string::npos) << log;
  EXPECT_EQ(std::stoll(log.substr(at + marker.size())), saved) << "the newest checkpoint is the preemption's";
  // Requeued: resumes from the preemption checkpoint and completes the planned steps.
  auto r = Train(2, "mlp48.pbtxt", run, args);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resumed from " + StepDir(run, saved)), std::string::npos) << r.output;
  EXPECT_TRUE(Exists(StepDir(run, 4000)));
}

TEST(ResumeTriggers, EverySecondsAndRetention) {
  if (!HaveDataset()) GTEST_SKIP() << "Fashion-MNIST not installed";
  std::string run = RunDir("seconds");
  // A nanosecond: always past between one step's save and the next step's check (a
  // microsecond was not, once, on a loaded CI machine: step 7 went unsaved).
  auto r = Train(1, "mlp48.pbtxt", run,
                 "--max-steps 8 --resume none --set checkpoint.every_seconds=0.000000001 --set checkpoint.keep_last=2 "
                 "--set checkpoint.keep_every_steps=3");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto list = ckpt::ListCheckpoints(run);
  ASSERT_TRUE(list.ok());
  std::vector<int64_t> steps;
  for (const auto& e : *list) steps.push_back(e.step);
  // Every step saved; kept: the last two (7, 8) and the multiples of 3 (3, 6).
  EXPECT_EQ(steps, (std::vector<int64_t>{3, 6, 7, 8}));
}

}  // namespace
}  // namespace lockstep
