#include "tests/ddp/subprocess.h"

#include <sys/wait.h>

#include <chrono>
#include <cstdio>

namespace lockstep::testing {

CommandResult RunCommand(const std::string& command, int limit_seconds) {
  CommandResult r;
  // Single-quote the command for sh -c; each ' inside becomes '\'' (close, escaped, reopen).
  std::string quoted;
  for (char c : command) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  std::string full = "timeout -s KILL " + std::to_string(limit_seconds) + " sh -c '" + quoted + "' 2>&1";
  auto t0 = std::chrono::steady_clock::now();
  FILE* p = popen(full.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.output.append(buf, n);
  int status = pclose(p);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  return r;
}

std::string Mpirun(int ranks) {
  return "mpirun --allow-run-as-root --oversubscribe --mca mpi_yield_when_idle 1 -np " + std::to_string(ranks) + " ";
}

}  // namespace lockstep::testing
