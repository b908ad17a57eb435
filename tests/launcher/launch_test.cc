// `lockstep launch` with real processes: 4 local ranks under mpirun, supervised.
// - kill -9 of one rank -> restart with --resume auto -> completion, and the final
//   parameters equal an uninterrupted run's (resume is exact);
// - SIGSTOP of one rank -> heartbeat timeout -> the job is stopped and restarted;
// - a job that keeps failing -> max restarts exhausted -> clear error, exit code 6;
// - mpirun killed after a preemption signal -> no restart, exit 1;
// - a foreign TCP client without the token -> rejected and logged, the job unaffected;
// - bad input on the command line -> exit 2 with a message naming the problem.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "checkpoints/checkpoint.h"
#include "tests/ddp/subprocess.h"

namespace lockstep {
namespace {

using testing::RunCommand;

std::string Lockstep() { return std::string(LOCKSTEP_TEST_BINARY_DIR) + "/bin/lockstep"; }
std::string Recipe() { return std::string(LOCKSTEP_TEST_SOURCE_DIR) + "/tests/ddp/mlp48.pbtxt"; }
bool HaveDataset() {
  struct stat st {};
  return stat("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", &st) == 0;
}
bool Exists(const std::string& p) {
  struct stat st {};
  return stat(p.c_str(), &st) == 0;
}
std::string Read(const std::string& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
// Run directories of this process's tests: removed at the end when every test passed,
// kept (their logs and checkpoints) to look at when one failed.
std::vector<std::string>& CreatedDirs() {
  static std::vector<std::string> dirs;
  return dirs;
}
class RemoveDirsWhenPassed : public ::testing::Environment {
 public:
  void TearDown() override {
    if (!::testing::UnitTest::GetInstance()->Passed()) return;
    for (const std::string& dir : CreatedDirs()) RunCommand("rm -rf '" + dir + "'", 60);
  }
};
[[maybe_unused]] ::testing::Environment* const kRemoveDirs = ::testing::AddGlobalTestEnvironment(new RemoveDirsWhenPassed);

std::string FreshDir(const std::string& name) {
  std::string dir = ::testing::TempDir() + "/launch_" + name + "_" + std::to_string(getpid());
  RunCommand("rm -rf '" + dir + "' && mkdir -p '" + dir + "'", 30);
  CreatedDirs().push_back(dir);
  return dir;
}

// A fast-reacting local cluster config written next to the run.
std::string WriteCluster(const std::string& dir, int max_restarts) {
  std::string path = dir + "/cluster.pbtxt";
  std::ofstream(path) << "mode: LOCAL\n"
                         "mpi { allow_run_as_root: true oversubscribe: true mca { name: \"mpi_yield_when_idle\" value: \"1\" } }\n"
                         "control { progress_interval_seconds: 2 }\n"
                         "fault { max_restarts: " << max_restarts
                      << " backoff_seconds: 0.5 heartbeat_interval_seconds: 0.3 heartbeat_timeout_seconds: 4 "
                         "stop_grace_seconds: 2 }\n";
  return path;
}

// Batch 480 over 40 epochs: long enough (several seconds on 4 ranks) to act mid-run.
std::string TrainArgs(const std::string& run, int steps, const std::string& extra = "") {
  return "train --quiet --config " + Recipe() + " --run-dir " + run + " --set training.epochs=40 "
         "--set training.global_batch_size=480 --set checkpoint.every_steps=100 --max-steps " + std::to_string(steps) +
         " " + extra;
}

// Starts `lockstep launch` in the background; its output goes to DIR/out, its exit code to DIR/rc.
void StartLaunch(const std::string& dir, const std::string& cluster, const std::string& train) {
  RunCommand("(" + Lockstep() + " launch -q --cluster " + cluster + " --nprocs 4 -- " + train + " > " + dir +
                 "/out 2>&1; echo $? > " + dir + "/rc) > /dev/null 2>&1 & echo started",
             30);
}

int WaitForExit(const std::string& dir, int seconds) {
  for (int i = 0; i < seconds * 10; ++i) {
    if (Exists(dir + "/rc")) {
      std::string rc = Read(dir + "/rc");
      if (!rc.empty()) return std::stoi(rc);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return -1;
}

bool WaitFor(const std::string& path, int seconds) {
  for (int i = 0; i < seconds * 20 && !Exists(path); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  return Exists(path);
}

// Signals the newest rank process of the run (anchored at the binary: never mpirun or the supervisor).
int SignalOneRank(const std::string& run, const std::string& sig) {
  return RunCommand("pid=$(pgrep -f '^" + Lockstep() + " train .*--run-dir " + run + " ' | sort -n | tail -1); [ -n \"$pid\" ] && kill -" +
                        sig + " $pid",
                    10)
      .exit_code;
}

std::vector<float> Params(const std::string& step_dir) {
  auto reader = ckpt::CheckpointReader::Open(step_dir);
  EXPECT_TRUE(reader.ok()) << reader.status().ToString();
  if (!reader.ok()) return {};
  const ckpt::BufferLayout* layout = (*reader)->FindBuffer("params");
  if (layout == nullptr) return {};
  std::vector<float> out(static_cast<size_t>(layout->elements));
  EXPECT_TRUE((*reader)->Read("params", 0, layout->elements, out.data()).ok());
  return out;
}

TEST(LaunchFaults, KillNineOfOneRankRestartsAndCompletesExactly) {
  if (!HaveDataset()) GTEST_SKIP() << "Fashion-MNIST not installed";
  const int steps = 1000;
  std::string dir = FreshDir("kill9"), run = dir + "/run";
  StartLaunch(dir, WriteCluster(dir, 2), TrainArgs(run, steps));
  ASSERT_TRUE(WaitFor(run + "/checkpoints/" + ckpt::StepDirName(100), 120)) << Read(dir + "/out");
  ASSERT_EQ(SignalOneRank(run, "KILL"), 0);
  int rc = WaitForExit(dir, 180);
  std::string out = Read(dir + "/out"), status = Read(run + "/status.json");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("killed by signal 9"), std::string::npos) << "root cause named\n" << out;
  EXPECT_NE(out.find("restarting (1/2) with --resume auto"), std::string::npos) << out;
  EXPECT_NE(status.find("\"restarts_done\": 1"), std::string::npos) << status;
  EXPECT_NE(status.find("\"signal\": 9"), std::string::npos) << status;
  EXPECT_NE(status.find("\"state\": \"succeeded\""), std::string::npos) << status;
  EXPECT_NE(Read(run + "/launch.log").find("resumed from"), std::string::npos) << "the restart resumed";

  // Resume is exact, so the restarted job ends with the uninterrupted run's parameters.
  std::string straight = FreshDir("kill9_straight");
  auto r = RunCommand(testing::Mpirun(4) + Lockstep() + " " + TrainArgs(straight + "/run", steps), 300);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::vector<float> a = Params(run + "/checkpoints/" + ckpt::StepDirName(steps));
  std::vector<float> b = Params(straight + "/run/checkpoints/" + ckpt::StepDirName(steps));
  ASSERT_FALSE(a.empty());
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float))) << "final parameters differ";
}

TEST(LaunchFaults, SigstopOfOneRankIsCaughtByTheHeartbeatTimeout) {
  if (!HaveDataset()) GTEST_SKIP() << "Fashion-MNIST not installed";
  std::string dir = FreshDir("sigstop"), run = dir + "/run";
  StartLaunch(dir, WriteCluster(dir, 2), TrainArgs(run, 1000));
  ASSERT_TRUE(WaitFor(run + "/checkpoints/" + ckpt::StepDirName(100), 120)) << Read(dir + "/out");
  ASSERT_EQ(SignalOneRank(run, "STOP"), 0);
  int rc = WaitForExit(dir, 180);
  std::string out = Read(dir + "/out"), status = Read(run + "/status.json");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("sent no heartbeat for"), std::string::npos) << out;
  EXPECT_NE(status.find("hung or stopped"), std::string::npos) << status;
  EXPECT_NE(status.find("\"restarts_done\": 1"), std::string::npos) << status;
  EXPECT_TRUE(Exists(run + "/checkpoints/" + ckpt::StepDirName(1000)));
}

TEST(LaunchFaults, MaxRestartsExhaustedIsAClearErrorWithItsExitCode) {
  if (!HaveDataset()) GTEST_SKIP() << "Fashion-MNIST not installed";
  std::string dir = FreshDir("exhausted"), run = dir + "/run";
  // A learning rate that makes the loss non-finite: every attempt fails (exit 1).
  StartLaunch(dir, WriteCluster(dir, 1), TrainArgs(run, 200, "--set optimizer.learning_rate=1e30"));
  int rc = WaitForExit(dir, 180);
  std::string out = Read(dir + "/out"), status = Read(run + "/status.json");
  EXPECT_EQ(rc, 6) << out;
  EXPECT_NE(out.find("giving up: the job failed 2 time(s) and max_restarts is 1"), std::string::npos) << out;
  EXPECT_NE(status.find("\"state\": \"failed\""), std::string::npos) << status;
  EXPECT_NE(status.find("\"exit_code\": 6"), std::string::npos) << status;
  EXPECT_NE(out.find("exited with code 1"), std::string::npos) << out;
}

// Told to stop, the supervisor never restarts: here mpirun dies by a signal after the
// preemption request (as when Slurm kills a job whose node failed).
TEST(LaunchFaults, NoRestartAfterAPreemptionSignal) {
  if (!HaveDataset()) GTEST_SKIP() << "Fashion-MNIST not installed";
  std::string dir = FreshDir("preempt_kill"), run = dir + "/run";
  StartLaunch(dir, WriteCluster(dir, 2), TrainArgs(run, 3000));
  ASSERT_TRUE(WaitFor(run + "/checkpoints/" + ckpt::StepDirName(100), 120)) << Read(dir + "/out");
  std::smatch m;
  std::string status = Read(run + "/status.json");
  ASSERT_TRUE(std::regex_search(status, m, std::regex("\"supervisor_pid\": (\\d+)"))) << status;
  const std::string sup = m[1].str();
  ASSERT_EQ(RunCommand("kill -USR1 " + sup, 10).exit_code, 0);
  for (int i = 0; i < 100 && Read(dir + "/out").find("received User defined signal 1") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  RunCommand("pid=$(pgrep -P " + sup + " -x mpirun); [ -n \"$pid\" ] && kill -9 $pid", 10);
  int rc = WaitForExit(dir, 120);
  std::string out = Read(dir + "/out");
  // The ranks mpirun left behind (they exit by themselves after the checkpoint): by their pids.
  const std::string final_status = Read(run + "/status.json");
  static const std::regex rank_pid("\\{\"rank\": \\d+, \"host\": \"[^\"]*\", \"pid\": (\\d+)");
  for (auto it = std::sregex_iterator(final_status.begin(), final_status.end(), rank_pid); it != std::sregex_iterator(); ++it) {
    if (std::stoi((*it)[1].str()) > 0) kill(std::stoi((*it)[1].str()), SIGKILL);
  }
  EXPECT_EQ(rc, 1) << out;
  EXPECT_EQ(out.find("restarting (1/2)"), std::string::npos) << out;
  EXPECT_NE(out.find("not restarting after a preemption signal"), std::string::npos) << out;
  EXPECT_NE(Read(run + "/status.json").find("\"state\": \"failed\""), std::string::npos);
}

// "127.0.0.1:PORT" from status.json's supervisor field.
int SupervisorPort(const std::string& status) {
  std::smatch m;
  static const std::regex re("\"supervisor\": \"[^\"]*:(\\d+)\"");
  return std::regex_search(status, m, re) ? std::stoi(m[1].str()) : 0;
}

std::string Exchange(int port, const std::string& message) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  std::string reply;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    ssize_t ignored = write(fd, message.data(), message.size());
    (void)ignored;
    char buf[256];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0) reply.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return reply;
}

TEST(LaunchControlPlane, ForeignClientWithoutTheTokenIsRejectedAndTheJobUnaffected) {
  if (!HaveDataset()) GTEST_SKIP() << "Fashion-MNIST not installed";
  std::string dir = FreshDir("foreign"), run = dir + "/run";
  StartLaunch(dir, WriteCluster(dir, 0), TrainArgs(run, 1000));
  ASSERT_TRUE(WaitFor(run + "/checkpoints/" + ckpt::StepDirName(100), 120)) << Read(dir + "/out");
  int port = SupervisorPort(Read(run + "/status.json"));
  ASSERT_GT(port, 0) << Read(run + "/status.json");
  EXPECT_EQ(Exchange(port, "HELLO not-the-token 0 1 4 1 intruder\n"), "DENIED\n");
  EXPECT_EQ(Exchange(port, "GET / HTTP/1.0\r\n\r\n"), "DENIED\n");
  int rc = WaitForExit(dir, 180);
  std::string out = Read(dir + "/out"), status = Read(run + "/status.json");
  EXPECT_EQ(rc, 0) << "max_restarts 0: the job ran through untouched\n" << out;
  EXPECT_NE(out.find("rejected a control connection from 127.0.0.1"), std::string::npos) << out;
  EXPECT_NE(out.find("wrong job token"), std::string::npos) << out;
  EXPECT_NE(status.find("\"rejected_connections\": 2"), std::string::npos) << status;
  EXPECT_NE(status.find("\"restarts_done\": 0"), std::string::npos) << status;
  auto shown = RunCommand(Lockstep() + " status " + run, 30);
  EXPECT_EQ(shown.exit_code, 0);
  EXPECT_NE(shown.output.find("succeeded"), std::string::npos) << shown.output;
  EXPECT_NE(shown.output.find("1000"), std::string::npos) << shown.output;
}

TEST(LaunchBadInput, ErrorsNameTheProblemAndExitTwo) {
  std::string dir = FreshDir("bad");
  std::ofstream(dir + "/typo.pbtxt") << "mode: LOCAL\nfault {\n  heartbeat_timout_seconds: 3\n}\n";
  auto r = RunCommand(Lockstep() + " launch --cluster " + dir + "/typo.pbtxt -- train --config " + Recipe(), 30);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("typo.pbtxt:3:"), std::string::npos) << r.output;

  std::ofstream(dir + "/slots.pbtxt") << "mode: MPIRUN\nhosts { name: \"localhost\" slots: 2 }\n";
  r = RunCommand(Lockstep() + " launch --dry-run --nprocs 4 --cluster " + dir + "/slots.pbtxt -- train --config " + Recipe(), 30);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("4 ranks requested but"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("2 slot(s)"), std::string::npos) << r.output;

  r = RunCommand(Lockstep() + " launch -- train --config /no/such/recipe.pbtxt", 30);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("/no/such/recipe.pbtxt not found"), std::string::npos) << r.output;

  std::ofstream(dir + "/time.pbtxt") << "mode: SLURM\nslurm { time_limit: \"25:99:00\" }\n";
  r = RunCommand(Lockstep() + " sbatch --dry-run --cluster " + dir + "/time.pbtxt -- train --config " + Recipe(), 30);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("slurm.time_limit"), std::string::npos) << r.output;

  std::string slurm = std::string(LOCKSTEP_TEST_SOURCE_DIR) + "/cluster-configs/slurm-test.pbtxt";
  r = RunCommand("PATH=/nonexistent " + Lockstep() + " sbatch --cluster " + slurm + " -- train --config " + Recipe() +
                     " --run-dir " + dir + "/run",
                 30);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("sbatch not found on PATH"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace lockstep
