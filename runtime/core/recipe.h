// Loading a recipe (protobuf text) with errors a user can act on: syntax and
// type errors as file:line:column, semantic errors with the layer index and
// its line. `--set a.b=value` overrides are applied through the same parser.
// Thread-compatible.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "runtime/core/loss.h"
#include "runtime/core/model.h"
#include "runtime/core/optimizer.h"
#include "runtime/core/proto/recipe.pb.h"

namespace lockstep {

struct LoadedRecipe {
  config::Recipe recipe;
  std::string path;
  std::string text;  // the effective recipe (after overrides), in text format
  // 1-based line of each layers entry (0 = unknown) of each model the recipe
  // describes: "model", or a GAN's "gan.generator" and "gan.discriminator".
  std::map<std::string, std::vector<int>> layer_lines;
};

// Parses `path`, applies overrides ("training.epochs=3"), fills defaults and validates
// everything that does not need the dataset.
Result<LoadedRecipe> LoadRecipe(const std::string& path, const std::vector<std::string>& overrides = {});
// Parses recipe text (for tests); `display_name` is used in messages.
Result<LoadedRecipe> ParseRecipe(const std::string& text, const std::string& display_name,
                                 const std::vector<std::string>& overrides = {});

// Builds the model the recipe describes on `backend` for a per-sample input shape.
// `dataset_vocab_size` (> 0 for text datasets) fills embedding { vocab_size: 0 };
// with 0 such an embedding is an error naming the layer.
Result<std::unique_ptr<Model>> BuildModel(const LoadedRecipe& recipe, Backend* backend,
                                          const Shape& input_shape, int64_t dataset_vocab_size = 0);

// The same for one named model of the recipe: "model", "gan.generator" or
// "gan.discriminator" (whose output must be one logit). Only "model" is checked
// against the recipe's loss.
Result<std::unique_ptr<Model>> BuildModel(const LoadedRecipe& recipe, const std::string& field, Backend* backend,
                                          const Shape& input_shape, int64_t dataset_vocab_size = 0);

// training.precision's GEMM part: bf16 inputs for BF16_GEMM and BF16 (BF16's bf16
// activations are set on the model by BuildModel).
GemmPrecision ToGemmPrecision(const config::Recipe& r);

OptimizerConfig ToOptimizerConfig(const config::Optimizer& o);
// total_training_steps fills a cosine schedule's total_steps when the recipe leaves it 0.
ScheduleConfig ToScheduleConfig(const config::Recipe& r, int64_t total_training_steps);
// The same schedule driving `optimizer`'s learning rate (a GAN's two optimisers).
ScheduleConfig ToScheduleConfig(const config::Recipe& r, const config::Optimizer& optimizer,
                                int64_t total_training_steps);
LossKind ToLossKind(config::LossFunction loss);

}  // namespace lockstep
