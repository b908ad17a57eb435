// lockstep: the command-line entry point. Each subcommand lives in its own file.
#include <CLI/CLI.hpp>

#include "common/blas_env.h"
#include "common/exit_codes.h"
#include "launcher/ckpt_command.h"
#include "launcher/generate_command.h"
#include "launcher/launch_command.h"
#include "launcher/train_command.h"

int main(int argc, char** argv) {
  lockstep::EnsureBlasThreadTimeout(argv);
  CLI::App app{"lockstep: synchronous data-parallel training of neural networks"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("lockstep ") + LOCKSTEP_VERSION);
  int exit_code = lockstep::kExitOk;
  lockstep::AddTrainCommand(app, &exit_code);
  lockstep::AddCkptCommand(app, &exit_code);
  lockstep::AddGenerateCommand(app, &exit_code);
  lockstep::AddLaunchCommand(app, &exit_code);
  lockstep::AddSbatchCommand(app, &exit_code);
  lockstep::AddStatusCommand(app, &exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : lockstep::kExitUsage;
  }
  return exit_code;
}
