// A model rebuilt from a checkpoint on its own: the checkpoint's recipe describes
// the architecture and its "params" buffer holds the weights. Used by `lockstep
// generate` and by the GAN's quality classifier. Not thread-safe.
#pragma once

#include <memory>
#include <string>

#include "checkpoints/checkpoint.h"
#include "common/status.h"
#include "runtime/core/model.h"
#include "runtime/core/recipe.h"

namespace lockstep {

// Builds `recipe`'s model for `input_shape` (dataset_vocab_size as in BuildModel) and
// reads the checkpoint's "params" into it; a checkpoint whose parameters do not fit
// is a checkpoint error starting with `what`.
Result<std::unique_ptr<Model>> LoadCheckpointModel(const ckpt::CheckpointReader& reader, const LoadedRecipe& recipe,
                                                   Backend* backend, const Shape& input_shape,
                                                   int64_t dataset_vocab_size, const std::string& what);

}  // namespace lockstep
