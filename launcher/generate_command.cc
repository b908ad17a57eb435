#include "launcher/generate_command.h"

#include <iostream>
#include <memory>

#include "common/exit_codes.h"
#include "training/generate.h"

namespace lockstep {

void AddGenerateCommand(CLI::App& app, int* exit_code) {
  auto options = std::make_shared<GenerateOptions>();
  CLI::App* cmd = app.add_subcommand("generate", "Sample text from a language-model checkpoint");
  cmd->add_option("--checkpoint", options->checkpoint_dir, "Checkpoint directory (RUN_DIR/checkpoints/step-NNNNNNNN)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--prompt", options->prompt, "Text to continue (characters must be in the model's vocabulary)")
      ->required();
  cmd->add_option("--tokens", options->tokens, "Characters to generate")->capture_default_str();
  cmd->add_option("--temperature", options->temperature, "Sampling temperature; 0 = most likely character")
      ->capture_default_str();
  cmd->add_option("--seed", options->seed, "Sampling seed (same seed, same text)")->capture_default_str();
  cmd->callback([options, exit_code] {
    auto text = GenerateText(*options);
    if (!text.ok()) {
      std::cerr << "lockstep generate: " << text.status().message() << "\n";
      *exit_code = ExitCodeFor(text.status());
      return;
    }
    std::cout << *text << "\n";
    *exit_code = kExitOk;
  });
}

}  // namespace lockstep
