#include "launcher/child_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

extern char** environ;

namespace lockstep {

std::string DescribeWaitStatus(int s) {
  if (WIFEXITED(s)) return "exit code " + std::to_string(WEXITSTATUS(s));
  if (WIFSIGNALED(s)) return "signal " + std::to_string(WTERMSIG(s)) + " (" + strsignal(WTERMSIG(s)) + ")";
  return "status " + std::to_string(s);
}

Result<std::unique_ptr<ChildProcess>> ChildProcess::Spawn(const std::vector<std::string>& argv, const EnvList& env,
                                                          LineHandler on_line) {
  if (argv.empty()) return InvalidArgumentError("empty command");
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    return IoError(std::string("pipe: ") + std::strerror(errno));
  }
  // Everything the child needs, prepared before fork (only async-signal-safe calls after it).
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    bool replaced = false;
    for (const auto& [name, value] : env) replaced |= kv.compare(0, name.size() + 1, name + "=") == 0;
    if (!replaced) env_strings.push_back(kv);
  }
  for (const auto& [name, value] : env) env_strings.push_back(name + "=" + value);
  std::vector<char*> envp, args;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = argv;
  for (auto& a : argv_copy) args.push_back(a.data());
  args.push_back(nullptr);

  pid_t pid = fork();
  if (pid < 0) return IoError(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    setpgid(0, 0);
    dup2(out[1], STDOUT_FILENO);
    dup2(out[1], STDERR_FILENO);
    int null_in = open("/dev/null", O_RDONLY);
    if (null_in >= 0) dup2(null_in, STDIN_FILENO);
    // Default signal dispositions for the child (the supervisor catches some).
    for (int sig : {SIGUSR1, SIGUSR2, SIGTERM, SIGINT, SIGHUP, SIGPIPE}) signal(sig, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execvpe(args[0], args.data(), envp.data());
    int e = errno;
    ssize_t ignored = write(err[1], &e, sizeof(e));
    (void)ignored;
    _exit(127);
  }
  setpgid(pid, pid);  // also here, so the group exists before we ever signal it
  close(out[1]);
  close(err[1]);
  int exec_errno = 0;
  ssize_t n = read(err[0], &exec_errno, sizeof(exec_errno));
  close(err[0]);
  if (n == static_cast<ssize_t>(sizeof(exec_errno))) {
    close(out[0]);
    waitpid(pid, nullptr, 0);
    return NotFoundError("cannot run " + argv[0] + ": " + std::strerror(exec_errno) +
                         (exec_errno == ENOENT ? " (is it installed and on PATH? set mpi { mpirun: ... })" : ""));
  }
  std::unique_ptr<ChildProcess> child(new ChildProcess());
  child->pid_ = pid;
  child->out_fd_ = out[0];
  child->on_line_ = std::move(on_line);
  ChildProcess* raw = child.get();
  child->reader_ = std::thread([raw] { raw->ReadLoop(); });
  return child;
}

void ChildProcess::ReadLoop() {
  std::string pending;
  char buf[4096];
  while (!stop_.load()) {
    pollfd p{out_fd_, POLLIN, 0};
    int r = poll(&p, 1, 100);
    if (r <= 0) continue;
    ssize_t n = read(out_fd_, buf, sizeof(buf));
    if (n <= 0) break;
    pending.append(buf, static_cast<size_t>(n));
    size_t nl;
    while ((nl = pending.find('\n')) != std::string::npos) {
      if (on_line_) on_line_(pending.substr(0, nl));
      pending.erase(0, nl + 1);
    }
  }
  if (!pending.empty() && on_line_) on_line_(pending);
  eof_.store(true);
}

void ChildProcess::DrainOutput(double seconds) {
  auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!eof_.load() && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

bool ChildProcess::Poll(int* wait_status) {
  if (!exited_) {
    int s = 0;
    pid_t r = waitpid(pid_, &s, WNOHANG);
    if (r == pid_) {
      exited_ = true;
      status_ = s;
    }
  }
  if (exited_ && wait_status) *wait_status = status_;
  return exited_;
}

void ChildProcess::SignalGroup(int sig) const {
  if (pid_ > 0) {
    kill(-pid_, sig);
    if (!exited_) kill(pid_, sig);
  }
}

ChildProcess::~ChildProcess() {
  if (!exited_ && pid_ > 0) {
    SignalGroup(SIGKILL);
    waitpid(pid_, &status_, 0);
  }
  stop_.store(true);
  if (reader_.joinable()) reader_.join();
  if (out_fd_ >= 0) close(out_fd_);
}

}  // namespace lockstep
