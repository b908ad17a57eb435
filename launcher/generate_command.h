// `lockstep generate`: samples text from a character language-model checkpoint.
#pragma once

#include <CLI/CLI.hpp>

namespace lockstep {

void AddGenerateCommand(CLI::App& app, int* exit_code);

}  // namespace lockstep
