// A child process (mpirun, usually) in its own process group, with its stdout and
// stderr merged into one pipe that a reader thread splits into lines for a handler.
// Owned and driven by one thread (the supervisor's); the handler runs on the reader
// thread.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "launcher/render.h"

namespace lockstep {

class ChildProcess {
 public:
  using LineHandler = std::function<void(const std::string&)>;
  // Starts argv[0] (looked up on PATH) with `env` added to this process's environment.
  static Result<std::unique_ptr<ChildProcess>> Spawn(const std::vector<std::string>& argv, const EnvList& env,
                                                     LineHandler on_line);
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  // Non-blocking: true once the child has exited; *wait_status gets waitpid's status.
  bool Poll(int* wait_status);
  // Sends `sig` to the child's process group.
  void SignalGroup(int sig) const;
  // Waits up to `seconds` for the output of the child (and of its children) to end.
  void DrainOutput(double seconds);

 private:
  ChildProcess() = default;
  void ReadLoop();

  pid_t pid_ = -1;
  int out_fd_ = -1;
  bool exited_ = false;
  int status_ = 0;
  LineHandler on_line_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> eof_{false};
  std::thread reader_;
};

// "exit code 3", "signal 9 (Killed)" for a waitpid status.
std::string DescribeWaitStatus(int wait_status);

}  // namespace lockstep
