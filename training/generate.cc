#include "training/generate.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "checkpoints/checkpoint.h"
#include "training/checkpoint_model.h"
#include "runtime/core/recipe.h"
#include "runtime/data/text_dataset.h"

namespace lockstep {

Result<std::string> GenerateText(const GenerateOptions& o) {
  if (o.tokens < 0) return InvalidArgumentError("--tokens must be >= 0");
  if (o.temperature < 0) return InvalidArgumentError("--temperature must be >= 0");
  auto reader = ckpt::CheckpointReader::Open(o.checkpoint_dir);
  if (!reader.ok()) return CheckpointError(reader.status().message());
  const ckpt::CheckpointMeta& meta = (*reader)->meta();
  auto vocab_blob = meta.extras.find("vocabulary");
  if (vocab_blob == meta.extras.end()) {
    return CheckpointError(o.checkpoint_dir + " is not a language-model checkpoint (it holds no vocabulary)");
  }
  LS_ASSIGN_OR_RETURN(data::Vocabulary vocab, data::Vocabulary::Deserialize(vocab_blob->second));
  LS_ASSIGN_OR_RETURN(LoadedRecipe recipe, ParseRecipe(meta.recipe_text, o.checkpoint_dir + "/manifest recipe"));
  const int64_t window = recipe.recipe.data().sequence_length();
  if (window <= 0) return CheckpointError(o.checkpoint_dir + ": the recipe has no data.sequence_length");

  // The numerics it was trained with (BF16: bf16 GEMMs here, bf16 activations by BuildModel).
  std::unique_ptr<Backend> backend = CreateCpuBackend(ToGemmPrecision(recipe.recipe));
  LS_ASSIGN_OR_RETURN(std::unique_ptr<Model> model,
                      LoadCheckpointModel(**reader, recipe, backend.get(), {window}, vocab.size(), o.checkpoint_dir));

  LS_ASSIGN_OR_RETURN(std::vector<int32_t> context, vocab.EncodeUtf8Text(o.prompt, "--prompt"));
  if (context.empty()) return InvalidArgumentError("--prompt must hold at least one character");
  std::vector<int32_t> generated;
  std::mt19937_64 rng(o.seed);
  Tensor x = Tensor::Empty(*backend, {1, window}, DType::kFloat32);
  std::vector<float> host(static_cast<size_t>(window));
  std::vector<float> logits(static_cast<size_t>(window * vocab.size()));
  StepContext ctx;
  ctx.backend = backend.get();
  ctx.training = false;
  for (int64_t i = 0; i < o.tokens; ++i) {
    // The last `window` characters; a shorter context sits at the window's start.
    const int64_t used = std::min<int64_t>(window, static_cast<int64_t>(context.size()));
    std::fill(host.begin(), host.end(), 0.0f);
    for (int64_t t = 0; t < used; ++t) {
      host[static_cast<size_t>(t)] = static_cast<float>(context[context.size() - static_cast<size_t>(used - t)]);
    }
    backend->CopyFromHost(x.raw(), host.data(), x.nbytes());
    Tensor out = model->Forward(ctx, x);
    backend->CopyToHost(logits.data(), out.raw(), out.nbytes());
    const float* row = logits.data() + (used - 1) * vocab.size();
    int32_t next = 0;
    if (o.temperature == 0) {
      next = static_cast<int32_t>(std::max_element(row, row + vocab.size()) - row);
    } else {
      std::vector<double> p(static_cast<size_t>(vocab.size()));
      const double top = *std::max_element(row, row + vocab.size());
      for (int64_t v = 0; v < vocab.size(); ++v) p[static_cast<size_t>(v)] = std::exp((row[v] - top) / o.temperature);
      next = static_cast<int32_t>(std::discrete_distribution<int64_t>(p.begin(), p.end())(rng));
    }
    context.push_back(next);
    generated.push_back(next);
  }
  return o.prompt + vocab.Decode(generated);
}

}  // namespace lockstep
