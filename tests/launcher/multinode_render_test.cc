// Multi-node launches without a cluster: the OpenMPI hostfile and mpirun arguments
// rendered from `hosts` (slots, GPUs) and the interface settings, `--dry-run`'s text,
// the control plane's address on the MPI network, and the supervisor's evidence of a
// lost node (every rank of one host silent). The real thing runs in tests/multinode.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "launcher/cluster_config.h"
#include "launcher/netif.h"
#include "launcher/render.h"
#include "launcher/silent_hosts.h"

namespace lockstep {
namespace {

std::string Source(const std::string& rel) { return std::string(LOCKSTEP_TEST_SOURCE_DIR) + "/" + rel; }

LaunchRequest Request(const std::string& run_dir) {
  std::vector<std::string> words = {"train", "--config", Source("tests/ddp/mlp48.pbtxt")};
  if (!run_dir.empty()) words.insert(words.end(), {"--run-dir", run_dir});
  auto t = ParseTrainInvocation(words);
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  LaunchRequest req;
  req.binary = "/bin/true";
  req.train = *t;
  req.control_env = {{"LOCKSTEP_SUPERVISOR", "10.0.0.1:1234"}};
  return req;
}

LoadedCluster Cluster(const std::string& text) {
  auto c = ParseClusterConfig(text, "c.pbtxt");
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? *c : LoadedCluster{};
}

constexpr const char* kTwoNodes = R"pb(
mode: MPIRUN
ranks_per_node: 2
hosts { name: "10.77.0.1" slots: 2 }
hosts { name: "node-b" gpus: 4 }
hosts { name: "node-c" }
mpi { if_include: "10.77.0.0/24" }
)pb";

TEST(Hostfile, OneLinePerHostWithSlotsElseGpusElseOne) {
  LoadedCluster c = Cluster(kTwoNodes);
  std::string text = RenderHostfile(c);
  EXPECT_EQ(text.substr(0, 2), "# ") << "a comment naming the config first";
  EXPECT_NE(text.find("c.pbtxt"), std::string::npos) << text;
  EXPECT_NE(text.find("\n10.77.0.1 slots=2\nnode-b slots=4\nnode-c slots=1\n"), std::string::npos) << text;
}

TEST(Hostfile, MpirunModeWithARunDirectoryGetsTheHostfileAndInterfaces) {
  auto plan = RenderLaunch(Cluster(kTwoNodes), Request("/runs/x"));
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  std::string cmd = CommandLine(plan->argv);
  EXPECT_EQ(plan->nprocs, 7) << "nprocs defaults to the sum of the slots";
  EXPECT_EQ(plan->hostfile_path, "/runs/x/hostfile");
  EXPECT_EQ(plan->hostfile_text, RenderHostfile(Cluster(kTwoNodes)));
  for (const char* s : {"-np 7 --hostfile /runs/x/hostfile --map-by ppr:2:node", "--mca btl_tcp_if_include 10.77.0.0/24",
                        "--mca oob_tcp_if_include 10.77.0.0/24", "-x LOCKSTEP_SUPERVISOR"}) {
    EXPECT_NE(cmd.find(s), std::string::npos) << s << "\n" << cmd;
  }
  EXPECT_EQ(cmd.find("--host "), std::string::npos) << cmd;
}

TEST(Hostfile, WithoutARunDirectoryTheHostsGoOnTheCommandLine) {
  auto plan = RenderLaunch(Cluster(kTwoNodes), Request(""));
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  EXPECT_TRUE(plan->hostfile_path.empty());
  EXPECT_NE(CommandLine(plan->argv).find("--host 10.77.0.1:2,node-b:4,node-c:1"), std::string::npos)
      << CommandLine(plan->argv);
}

TEST(Hostfile, AUserHostfileIsPassedThrough) {
  auto plan = RenderLaunch(Cluster("mode: MPIRUN\nnprocs: 8\nhostfile: \"/etc/ompi/hosts\"\n"), Request("/runs/x"));
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  EXPECT_TRUE(plan->hostfile_path.empty()) << "nothing rendered";
  EXPECT_NE(CommandLine(plan->argv).find("--hostfile /etc/ompi/hosts"), std::string::npos) << CommandLine(plan->argv);
}

TEST(Hostfile, InterfaceExcludeRendersForBothTransports) {
  auto plan = RenderLaunch(Cluster("mode: MPIRUN\nhosts { name: \"a\" slots: 1 }\nmpi { if_exclude: \"docker0,lo\" }\n"),
                           Request("/runs/x"));
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  std::string cmd = CommandLine(plan->argv);
  EXPECT_NE(cmd.find("--mca btl_tcp_if_exclude docker0,lo --mca oob_tcp_if_exclude docker0,lo"), std::string::npos) << cmd;
  EXPECT_EQ(cmd.find("if_include"), std::string::npos) << cmd;
}

TEST(Hostfile, IncludeAndExcludeTogetherIsAnError) {
  auto c = ParseClusterConfig("mode: MPIRUN\nhosts { name: \"a\" }\nmpi { if_include: \"eth0\" if_exclude: \"lo\" }\n", "ie.pbtxt");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("either mpi.if_include or mpi.if_exclude"), std::string::npos) << c.status().message();
}

TEST(Hostfile, DryRunTextWritesTheHostfileThenRunsMpirun) {
  auto plan = RenderLaunch(Cluster(kTwoNodes), Request("/runs/x"));
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  std::string text = DryRunText(*plan);
  std::string want_head = "mkdir -p /runs/x && cat > /runs/x/hostfile <<'HOSTFILE'\n" + plan->hostfile_text + "HOSTFILE\n";
  EXPECT_EQ(text.substr(0, want_head.size()), want_head) << text;
  EXPECT_NE(text.find("LOCKSTEP_SUPERVISOR=10.0.0.1:1234 mpirun "), std::string::npos) << text;
  EXPECT_EQ(text.back(), '\n');
}

TEST(Hostfile, WrittenAtomicallyWithTheRenderedText) {
  std::string dir = ::testing::TempDir() + "/hostfile_" + std::to_string(getpid());
  ASSERT_EQ(std::system(("rm -rf '" + dir + "' && mkdir -p '" + dir + "'").c_str()), 0);
  auto plan = RenderLaunch(Cluster(kTwoNodes), Request(dir));
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  ASSERT_TRUE(WriteHostfile(*plan).ok());
  std::ifstream in(dir + "/hostfile");
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_EQ(ss.str(), plan->hostfile_text);
  LaunchPlan bad = *plan;
  bad.hostfile_path = dir + "/no/such/dir/hostfile";
  EXPECT_FALSE(WriteHostfile(bad).ok());
  EXPECT_TRUE(WriteHostfile(LaunchPlan{}).ok()) << "no hostfile: nothing to write";
}

TEST(ControlAddress, PicksTheAddressOnTheMpiNetwork) {
  std::vector<NetInterface> nics = {{"lo", "127.0.0.1"}, {"eth0", "192.168.1.5"}, {"ib0", "10.77.0.2"}};
  EXPECT_EQ(PickAddress(nics, "10.77.0.0/24"), "10.77.0.2");
  EXPECT_EQ(PickAddress(nics, "10.77.0.0/16"), "10.77.0.2");
  EXPECT_EQ(PickAddress(nics, "eth0"), "192.168.1.5");
  EXPECT_EQ(PickAddress(nics, "docker0,eth0"), "192.168.1.5") << "first item that matches";
  EXPECT_EQ(PickAddress(nics, "10.77.0.0/24,eth0"), "10.77.0.2");
  EXPECT_EQ(PickAddress(nics, "10.78.0.0/24"), "");
  EXPECT_EQ(PickAddress(nics, "10.77.0.0/33"), "") << "not a CIDR block";
  EXPECT_EQ(PickAddress(nics, "0.0.0.0/0"), "127.0.0.1");
  EXPECT_EQ(PickAddress(nics, ""), "");
}

TEST(ControlAddress, ThisHostHasItsLoopback) {
  EXPECT_EQ(PickAddress(LocalInterfaces(), "127.0.0.0/8"), "127.0.0.1");
}

RankState Rank(int rank, const std::string& host, double last, bool connected = true, bool bye = false) {
  RankState r;
  r.rank = rank;
  r.host = host;
  r.last_heartbeat = last;
  r.connected = connected;
  r.said_bye = bye;
  return r;
}

TEST(SilentHosts, AWholeSilentHostComesFirstAndIsNamed) {
  // t = 100: node-b's ranks last spoke at 91 and 92; node-a's rank 1 is slow but one of two.
  std::vector<RankState> ranks = {Rank(0, "node-a", 99.8), Rank(1, "node-a", 97.0), Rank(2, "node-b", 91.0),
                                  Rank(3, "node-b", 92.0)};
  auto silent = FindSilentHosts(ranks, 100.0, 1.5);
  ASSERT_EQ(silent.size(), 2u);
  EXPECT_EQ(silent[0].host, "node-b");
  EXPECT_TRUE(silent[0].whole_host);
  EXPECT_EQ(silent[0].ranks, (std::vector<int>{2, 3}));
  EXPECT_DOUBLE_EQ(silent[0].silent_seconds, 8.0) << "the shortest silence of the host";
  EXPECT_EQ(DescribeSilentHost(silent[0]), "every rank on node-b (2, 3) silent for 8.0 s");
  EXPECT_FALSE(silent[1].whole_host);
  EXPECT_EQ(DescribeSilentHost(silent[1]), "rank 1 on node-a silent for 3.0 s");
}

TEST(SilentHosts, RanksThatLeftOrNeverConnectedAreNotSilent) {
  std::vector<RankState> ranks = {Rank(0, "a", 10.0, /*connected=*/false), Rank(1, "a", 10.0, true, /*bye=*/true),
                                  RankState{}, Rank(3, "b", 99.9)};
  EXPECT_TRUE(FindSilentHosts(ranks, 100.0, 1.5).empty());
}

}  // namespace
}  // namespace lockstep
