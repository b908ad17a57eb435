// `lockstep ckpt`: list, verify, inspect and export checkpoints (list RUN_DIR,
// verify DIR, inspect DIR, export --format safetensors DIR FILE). Exit code 4
// (kExitCheckpointError) on any checkpoint defect. Single-threaded.
#pragma once

#include <CLI/CLI.hpp>

namespace lockstep {

// Adds the subcommand; its callbacks store the exit code in *exit_code.
void AddCkptCommand(CLI::App& app, int* exit_code);

}  // namespace lockstep
