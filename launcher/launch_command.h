// `lockstep launch`, `lockstep sbatch` and `lockstep status`: register their flags
// on a CLI11 app; their callbacks store the exit code in *exit_code. Main thread only.
#pragma once

#include <CLI/CLI.hpp>

namespace lockstep {

void AddLaunchCommand(CLI::App& app, int* exit_code);
void AddSbatchCommand(CLI::App& app, int* exit_code);
void AddStatusCommand(CLI::App& app, int* exit_code);

}  // namespace lockstep
