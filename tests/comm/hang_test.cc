// Launches comm_hang_probe under mpirun -np 3 with rank 1's 3rd all-reduce hung by
// fault injection and a 3 s deadline; checks that the job exits non-zero, names the
// collective, its step/bucket tag and rank 1 as not arrived, and ends well before a
// generous bound. An outer `timeout -s KILL` and a process-group kill keep CI from hanging.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <tuple>
#include <thread>

extern char** environ;

namespace {

struct RunResult {
  int exit_code = -1;  // -1 when killed by a signal
  std::string output;
  double seconds = 0;
};

// Runs `command` with /bin/sh in its own process group, stdout+stderr captured; kills
// the group after `limit`.
RunResult RunWithLimit(const std::string& command, std::chrono::seconds limit) {
  RunResult result;
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) return result;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 1);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 2);
  posix_spawn_file_actions_addclose(&actions, pipe_fds[0]);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  const char* argv[] = {"/bin/sh", "-c", command.c_str(), nullptr};
  auto start = std::chrono::steady_clock::now();
  pid_t pid = 0;
  int rc = posix_spawn(&pid, "/bin/sh", &actions, &attr, const_cast<char**>(argv), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  close(pipe_fds[1]);
  if (rc != 0) {
    close(pipe_fds[0]);
    return result;
  }
  std::thread reader([&] {
    char buf[4096];
    ssize_t n;
    while ((n = read(pipe_fds[0], buf, sizeof(buf))) > 0) result.output.append(buf, n);
  });
  int status = 0;
  for (;;) {
    pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    if (std::chrono::steady_clock::now() - start > limit) {
      kill(-pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  kill(-pid, SIGKILL);  // leftovers of the group, if any, must not keep the pipe open
  reader.join();
  close(pipe_fds[0]);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

// The hung collective's index: early, and after more than two of the comm thread's
// arrival drains (every 64th collective), so queued announcements are counted right;
// and whether the all-reduces are caller-polled (issued on the calling thread, as the
// overlapping DDP reducer's are) or run on the comm thread.
class CommHang : public ::testing::TestWithParam<std::tuple<int, bool>> {};

TEST_P(CommHang, DeadlineNamesCollectiveTagAndMissingRankAndEveryRankExits) {
  constexpr int kDeadlineMs = 3000;
  const int hung = std::get<0>(GetParam());
  const bool polled = std::get<1>(GetParam());
  const std::string command = std::string("exec timeout -s KILL 60 ") + LOCKSTEP_COMM_MPIRUN +
                              " -x LOCKSTEP_FAULT_INJECT=rank=1,op=allreduce,index=" + std::to_string(hung) +
                              ",action=hang -np 3 " + LOCKSTEP_COMM_HANG_PROBE + " " + std::to_string(kDeadlineMs) +
                              " " + std::to_string(hung + 2) + (polled ? " polled" : "");
  RunResult run = RunWithLimit(command, std::chrono::seconds(90));
  SCOPED_TRACE(run.output);
  EXPECT_NE(run.exit_code, 0);
  EXPECT_NE(run.output.find("allreduce 'grad_bucket' step " + std::to_string(hung) + " bucket 0"),
            std::string::npos);
  EXPECT_NE(run.output.find("did not complete within 3000 ms"), std::string::npos);
  EXPECT_NE(run.output.find("Ranks that did not arrive at collective #" + std::to_string(hung) + ": [1] of 3"),
            std::string::npos);
  EXPECT_LT(run.seconds, kDeadlineMs / 1000.0 + 15.0);  // a generous bound, not a speed check
}

INSTANTIATE_TEST_SUITE_P(HungIndex, CommHang, ::testing::Combine(::testing::Values(3, 150), ::testing::Bool()),
                         [](const ::testing::TestParamInfo<std::tuple<int, bool>>& info) {
                           return "collective" + std::to_string(std::get<0>(info.param)) +
                                  (std::get<1>(info.param) ? "_polled" : "_comm_thread");
                         });

}  // namespace
