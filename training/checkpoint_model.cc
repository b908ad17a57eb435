#include "training/checkpoint_model.h"

namespace lockstep {

Result<std::unique_ptr<Model>> LoadCheckpointModel(const ckpt::CheckpointReader& reader, const LoadedRecipe& recipe,
                                                   Backend* backend, const Shape& input_shape,
                                                   int64_t dataset_vocab_size, const std::string& what) {
  LS_ASSIGN_OR_RETURN(std::unique_ptr<Model> model, BuildModel(recipe, backend, input_shape, dataset_vocab_size));
  const ckpt::BufferLayout* params = reader.FindBuffer("params");
  if (params == nullptr || params->elements != model->param_count()) {
    return CheckpointError(what + ": the parameters do not fit the model its recipe describes");
  }
  LS_RETURN_IF_ERROR(reader.Read("params", 0, model->param_count(), model->params().raw()));
  return model;
}

}  // namespace lockstep
