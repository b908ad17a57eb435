// `lockstep train`: registers its flags on a CLI11 app and runs the training loop.
#pragma once

#include <CLI/CLI.hpp>

namespace lockstep {

// Adds the subcommand; its callback stores the exit code in *exit_code.
void AddTrainCommand(CLI::App& app, int* exit_code);

}  // namespace lockstep
