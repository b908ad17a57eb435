#include "launcher/train_command.h"

#include <unistd.h>

#include <iostream>
#include <memory>

#include "common/log.h"
#include "common/exit_codes.h"
#include "training/trainer.h"

namespace lockstep {
namespace {

struct TrainFlags {
  std::string config;
  std::string run_dir;
  int64_t epochs = 0;
  int64_t max_steps = 0;
  std::vector<std::string> sets;
  bool quiet = false;
  std::string resume = "auto";
  int64_t stop_at_step = 0;
};

int RunTrain(const TrainFlags& f) {
  TrainOptions options;
  options.recipe_path = f.config;
  options.run_dir = f.run_dir;
  options.overrides = f.sets;
  if (f.epochs > 0) options.overrides.push_back("training.epochs=" + std::to_string(f.epochs));
  if (f.max_steps > 0) options.overrides.push_back("training.max_steps=" + std::to_string(f.max_steps));
  options.show_progress = !f.quiet;
  options.resume = f.resume;
  options.stop_at_step = f.stop_at_step;
  auto trainer = Trainer::Create(options);
  if (!trainer.ok()) {
    std::cerr << "lockstep train: " << trainer.status().message() << "\n";
    return ExitCodeFor(trainer.status());
  }
  auto result = (*trainer)->Run();
  if (!result.ok()) {
    std::cerr << "lockstep train: " << result.status().message() << "\n";
    return ExitCodeFor(result.status());
  }
  return kExitOk;
}

}  // namespace

void AddTrainCommand(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<TrainFlags>();
  CLI::App* train = app.add_subcommand("train", "Train a model from a recipe (on this rank; run under mpirun/srun for data parallelism)");
  train->add_option("-c,--config", flags->config, "Recipe file (protobuf text, e.g. recipes/cnn.pbtxt)")
      ->required()
      ->check(CLI::ExistingFile);
  train->add_option("-r,--run-dir", flags->run_dir, "Directory for metrics.jsonl, the effective recipe and checkpoints");
  train->add_option("--epochs", flags->epochs, "Override training.epochs")->check(CLI::PositiveNumber);
  train->add_option("--max-steps", flags->max_steps, "Stop after this many optimiser steps")->check(CLI::PositiveNumber);
  train->add_option("--set", flags->sets, "Override a recipe field: --set training.seed=7 (repeatable)")
      ->take_all()
      ->allow_extra_args(false);
  train->add_flag("-q,--quiet", flags->quiet, "No progress output");
  train->add_option("--resume", flags->resume,
                    "auto: the newest checkpoint under RUN_DIR/checkpoints that verifies (fresh start when "
                    "none); none: start fresh; or a checkpoint directory (step-NNNNNNNN)")
      ->capture_default_str();
  train->add_option("--stop-at-step", flags->stop_at_step,
                    "Stop after this many optimiser steps in total, saving a checkpoint, without changing the "
                    "recipe's schedule (time-sliced jobs; resume with --resume auto)")
      ->check(CLI::PositiveNumber);
  train->callback([flags, exit_code] { *exit_code = RunTrain(*flags); });
}

}  // namespace lockstep
