// Sampling text from a character language-model checkpoint: the checkpoint holds
// the effective recipe (to rebuild the model), the vocabulary and the parameters,
// so it is usable on its own. Causal models predict position p from positions
// <= p only, so a prompt shorter than the window is placed at its start and the
// prediction is read at the prompt's last position; longer contexts slide.
// Not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"

namespace lockstep {

struct GenerateOptions {
  std::string checkpoint_dir;
  std::string prompt;        // UTF-8; every character must be in the vocabulary
  int64_t tokens = 200;      // characters to generate
  double temperature = 1.0;  // 0 = always the most likely character
  uint64_t seed = 0;         // sampling is a pure function of (checkpoint, prompt, seed)
};

// The prompt followed by the generated characters.
Result<std::string> GenerateText(const GenerateOptions& options);

}  // namespace lockstep
