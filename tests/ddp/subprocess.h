// Running a shell command from a test with an outer time limit, capturing its
// combined output and exit status. Test-only helper.
#pragma once

#include <string>

namespace lockstep::testing {

struct CommandResult {
  int exit_code = -1;   // -1 when it did not exit normally
  std::string output;   // stdout + stderr
  double seconds = 0;
};

// Runs `command` under `timeout -s KILL limit_seconds` via /bin/sh.
CommandResult RunCommand(const std::string& command, int limit_seconds);

// mpirun as these machines need it (root allowed, oversubscription allowed).
std::string Mpirun(int ranks);

}  // namespace lockstep::testing
