// Recipe parsing: syntax/type errors carry file:line:column, semantic errors the
// layer index and its line; overrides; every shipped recipe parses and builds;
// the sequence layers and Reshape: fields, shape errors with hints, defaults.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include "runtime/core/recipe.h"
#include "runtime/core/reshape_layer.h"

namespace lockstep {
namespace {

const char* kGood = R"(name: "t"
model {
  layers { flatten {} }
  layers { dense { units: 16 activation: RELU } }
  layers { dense { units: 10 activation: SOFTMAX } }
}
optimizer { kind: ADAM learning_rate: 0.001 }
training { global_batch_size: 32 epochs: 1 seed: 3 }
)";

std::string SourceDir() { return LOCKSTEP_TEST_SOURCE_DIR; }

TEST(Recipe, GoodRecipeParsesWithDefaults) {
  auto r = ParseRecipe(kGood, "good.pbtxt");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->recipe.data().validation_samples(), 5000);
  EXPECT_EQ(r->recipe.distributed().bucket_size_mb(), 25);
  EXPECT_EQ(r->recipe.training().eval_batch_size(), 256);
  EXPECT_TRUE(r->recipe.training().drop_last());
  EXPECT_EQ(r->layer_lines.at("model"), (std::vector<int>{3, 4, 5}));
}

TEST(Recipe, UnknownFieldNamesFileLineAndColumn) {
  std::string text = kGood;
  text.replace(text.find("units: 16"), 9, "unit: 16");
  auto r = ParseRecipe(text, "typo.pbtxt");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("typo.pbtxt:4:"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("unit"), std::string::npos) << r.status().message();
}

TEST(Recipe, WrongTypeNamesFileLineAndColumn) {
  std::string text = kGood;
  text.replace(text.find("global_batch_size: 32"), 21, "global_batch_size: \"many\"");
  auto r = ParseRecipe(text, "type.pbtxt");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("type.pbtxt:8:"), std::string::npos) << r.status().message();
}

TEST(Recipe, SemanticErrorsNameTheField) {
  std::string text = kGood;
  text.replace(text.find("global_batch_size: 32"), 21, "global_batch_size: 0");
  auto r = ParseRecipe(text, "zero.pbtxt");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("training.global_batch_size"), std::string::npos);
}

TEST(Recipe, SoftmaxOnlyOnTheLastLayer) {
  std::string text = kGood;
  text.replace(text.find("activation: RELU"), 16, "activation: SOFTMAX");
  auto r = ParseRecipe(text, "softmax.pbtxt");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("softmax.pbtxt:4:"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("model.layers[1]"), std::string::npos) << r.status().message();
}

TEST(Recipe, ImpossibleConvShapeNamesLayerAndLine) {
  const char* text = R"(model {
  layers { conv2d { filters: 8 kernel_size: 3 } }
  layers { maxpool2d { pool_size: 2 } }
  layers { conv2d { filters: 8 kernel_size: 30 } }
}
optimizer { learning_rate: 0.01 }
training { global_batch_size: 8 epochs: 1 }
)";
  auto r = ParseRecipe(text, "conv.pbtxt");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto be = CreateCpuBackend();
  auto model = BuildModel(*r, be.get(), {28, 28, 1});
  ASSERT_FALSE(model.ok());
  const std::string& m = model.status().message();
  EXPECT_NE(m.find("conv.pbtxt:4: model.layers[2]"), std::string::npos) << m;
  EXPECT_NE(m.find("empty output"), std::string::npos) << m;
}

TEST(Recipe, OverridesAreTypedAndChecked) {
  auto r = ParseRecipe(kGood, "good.pbtxt", {"training.epochs=7", "data.path=/tmp/x", "optimizer.kind=SGD"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->recipe.training().epochs(), 7);
  EXPECT_EQ(r->recipe.data().path(), "/tmp/x");
  EXPECT_EQ(r->recipe.optimizer().kind(), config::SGD);
  auto bad = ParseRecipe(kGood, "good.pbtxt", {"training.epoch=7"});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("no field named \"epoch\""), std::string::npos) << bad.status().message();
  auto bad_type = ParseRecipe(kGood, "good.pbtxt", {"training.epochs=seven"});
  ASSERT_FALSE(bad_type.ok());
  EXPECT_NE(bad_type.status().message().find("--set training.epochs=seven"), std::string::npos);
}

TEST(Recipe, MissingFileIsNotFound) {
  auto r = LoadRecipe("/nonexistent/recipe.pbtxt");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("/nonexistent/recipe.pbtxt"), std::string::npos);
}

// ---- sequence layers and reshape ----

// A recipe around `layers` (one `layers { ... }` entry per line, starting on line 2).
std::string SequenceRecipe(const std::string& layers) {
  return "model {\n" + layers + "}\noptimizer { learning_rate: 0.001 }\ntraining { global_batch_size: 8 epochs: 1 }\n";
}

Result<std::unique_ptr<Model>> Build(const std::string& text, const std::string& name, const Shape& input,
                                     int64_t vocab = 0) {
  auto r = ParseRecipe(text, name);
  if (!r.ok()) return r.status();
  static std::unique_ptr<Backend> be = CreateCpuBackend();
  return BuildModel(*r, be.get(), input, vocab);
}

TEST(RecipeSequence, EverySequenceLayerParsesAndBuilds) {
  std::string text = SequenceRecipe(
      "  layers { reshape { shape: [28, -1] } }\n"
      "  layers { lstm { units: 16 return_sequences: true } }\n"
      "  layers { gru { units: 8 return_sequences: true } }\n"
      "  layers { layer_norm { epsilon: 0.001 } }\n"
      "  layers { positional_embedding { max_length: 32 } }\n"
      "  layers { self_attention { heads: 2 } }\n"
      "  layers { transformer_block { heads: 4 mlp_hidden: 16 } }\n"
      "  layers { time_distributed_dense { units: 4 activation: GELU } }\n"
      "  layers { flatten {} }\n"
      "  layers { dense { units: 10 activation: SOFTMAX } }\n");
  auto model = Build(text, "seq.pbtxt", {28, 28, 1});
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const Model& m = **model;
  std::vector<std::string> kinds;
  for (int i = 0; i < m.num_layers(); ++i) kinds.push_back(m.layer(i).Kind());
  // GELU is not fusable, so the time-distributed Dense is followed by an activation layer.
  std::vector<std::string> want = {"reshape", "lstm", "gru", "layer_norm", "positional_embedding",
                                   "causal_self_attention", "transformer_block", "time_distributed_dense",
                                   "activation", "flatten", "dense"};
  EXPECT_EQ(kinds, want);
  EXPECT_EQ(m.layer(0).output_shape(), (Shape{28, 28}));
  EXPECT_EQ(m.layer(1).output_shape(), (Shape{28, 16}));
  EXPECT_EQ(m.layer(7).output_shape(), (Shape{28, 4}));
  EXPECT_EQ(m.output_shape(), (Shape{10}));
}

TEST(RecipeSequence, LstmOnAnImageWithoutReshapeSuggestsOne) {
  std::string text = SequenceRecipe("  layers { lstm { units: 8 } }\n  layers { dense { units: 10 } }\n");
  auto model = Build(text, "img.pbtxt", {28, 28, 1});
  ASSERT_FALSE(model.ok());
  const std::string& m = model.status().message();
  EXPECT_NE(m.find("img.pbtxt:2: model.layers[0]"), std::string::npos) << m;
  EXPECT_NE(m.find("lstm needs a (T, features) input"), std::string::npos) << m;
  EXPECT_NE(m.find("(28, 28, 1)"), std::string::npos) << m;
  EXPECT_NE(m.find("reshape { shape: [28, 28] }"), std::string::npos) << m;
}

TEST(RecipeSequence, GruOnAFlatInputSaysThereIsNoTimeAxis) {
  std::string text = SequenceRecipe("  layers { flatten {} }\n  layers { gru { units: 8 } }\n");
  auto model = Build(text, "flat.pbtxt", {28, 28, 1});
  ASSERT_FALSE(model.ok());
  const std::string& m = model.status().message();
  EXPECT_NE(m.find("flat.pbtxt:3: model.layers[1]"), std::string::npos) << m;
  EXPECT_NE(m.find("no time axis"), std::string::npos) << m;
}

TEST(RecipeSequence, ReshapeElementCountMustMatch) {
  std::string text = SequenceRecipe("  layers { reshape { shape: [28, 27] } }\n");
  auto model = Build(text, "count.pbtxt", {28, 28, 1});
  ASSERT_FALSE(model.ok());
  const std::string& m = model.status().message();
  EXPECT_NE(m.find("count.pbtxt:2: model.layers[0] (reshape)"), std::string::npos) << m;
  EXPECT_NE(m.find("756 elements"), std::string::npos) << m;
  EXPECT_NE(m.find("784 elements"), std::string::npos) << m;
}

TEST(RecipeSequence, ReshapeInfersOneDimension) {
  std::string text = SequenceRecipe("  layers { reshape { shape: [-1, 7] } }\n  layers { lstm { units: 4 } }\n"
                                    "  layers { dense { units: 10 activation: SOFTMAX } }\n");
  auto model = Build(text, "infer.pbtxt", {28, 28, 1});
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_EQ((*model)->layer(0).output_shape(), (Shape{112, 7}));
  auto bad = Build(SequenceRecipe("  layers { reshape { shape: [-1, 5] } }\n"), "five.pbtxt", {28, 28, 1});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("not a multiple of 5"), std::string::npos) << bad.status().message();
}

TEST(RecipeSequence, ReshapeCopiesForwardAndBackward) {
  auto be = CreateCpuBackend();
  auto layer = MakeReshape({3, -1});
  auto out = layer->Build({2, 3, 1});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(*out, (Shape{3, 2}));
  std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, y(12), dx(12, -1);
  StepContext ctx;
  ctx.backend = be.get();
  layer->Forward(ctx, x.data(), y.data(), 2);
  EXPECT_EQ(y, x);
  layer->Backward(ctx, x.data(), y.data(), x.data(), dx.data(), 2);
  EXPECT_EQ(dx, x);
}

TEST(RecipeSequence, HeadsMustDivideTheModelDim) {
  std::string text = SequenceRecipe("  layers { reshape { shape: [28, 28] } }\n"
                                    "  layers { self_attention { heads: 3 } }\n");
  auto model = Build(text, "heads.pbtxt", {28, 28, 1});
  ASSERT_FALSE(model.ok());
  const std::string& m = model.status().message();
  EXPECT_NE(m.find("heads.pbtxt:3: model.layers[1]"), std::string::npos) << m;
  EXPECT_NE(m.find("self_attention.heads 3 must divide the model dim 28"), std::string::npos) << m;

  text = SequenceRecipe("  layers { reshape { shape: [28, 28] } }\n"
                        "  layers { transformer_block { heads: 8 } }\n");
  model = Build(text, "block.pbtxt", {28, 28, 1});
  ASSERT_FALSE(model.ok());
  EXPECT_NE(model.status().message().find("transformer_block.heads 8 must divide the model dim 28"),
            std::string::npos)
      << model.status().message();
}

TEST(RecipeSequence, TransformerMlpHiddenDefaultsToFourTimesDim) {
  std::string text = SequenceRecipe("  layers { reshape { shape: [28, 28] } }\n"
                                    "  layers { transformer_block { heads: 4 } }\n"
                                    "  layers { flatten {} }\n  layers { dense { units: 10 } }\n");
  auto model = Build(text, "mlp.pbtxt", {28, 28, 1});
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_NE((*model)->layer(1).Describe().find("mlp_hidden=112"), std::string::npos) << (*model)->layer(1).Describe();
}

TEST(RecipeSequence, PositionalEmbeddingShorterThanTheSequenceFails) {
  std::string text = SequenceRecipe("  layers { reshape { shape: [28, 28] } }\n"
                                    "  layers { positional_embedding { max_length: 16 } }\n");
  auto model = Build(text, "pos.pbtxt", {28, 28, 1});
  ASSERT_FALSE(model.ok());
  EXPECT_NE(model.status().message().find("pos.pbtxt:3: model.layers[1]"), std::string::npos);
  EXPECT_NE(model.status().message().find("max_length 16 is shorter"), std::string::npos)
      << model.status().message();
}

TEST(RecipeSequence, EmbeddingVocabularyFromTheDataset) {
  std::string text = SequenceRecipe("  layers { embedding { dim: 8 } }\n"
                                    "  layers { lstm { units: 4 } }\n"
                                    "  layers { dense { units: 10 activation: SOFTMAX } }\n");
  auto missing = Build(text, "emb.pbtxt", {16});
  ASSERT_FALSE(missing.ok());
  const std::string& m = missing.status().message();
  EXPECT_NE(m.find("emb.pbtxt:2: model.layers[0]"), std::string::npos) << m;
  EXPECT_NE(m.find("embedding.vocab_size is 0"), std::string::npos) << m;
  auto model = Build(text, "emb.pbtxt", {16}, /*vocab=*/50);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_EQ((*model)->param_infos().front().shape.size(), 2u);
  // embeddings 50 x 8, LSTM 8x16 + 4x16 + 16, Dense 4x10 + 10.
  EXPECT_EQ((*model)->param_count(), 50 * 8 + (8 * 16 + 4 * 16 + 16) + (4 * 10 + 10));
}

struct FieldError {
  const char* layer;
  const char* message;
};

class RecipeSequenceFieldError : public ::testing::TestWithParam<FieldError> {};

// Field checks run at parse time and point at the layer's line and column.
TEST_P(RecipeSequenceFieldError, NamesLineLayerAndField) {
  std::string text = SequenceRecipe("  layers { flatten {} }\n  layers { " + std::string(GetParam().layer) + " }\n");
  auto r = ParseRecipe(text, "field.pbtxt");
  ASSERT_FALSE(r.ok()) << GetParam().layer;
  const std::string& m = r.status().message();
  EXPECT_NE(m.find("field.pbtxt:3:3: model.layers[1]: "), std::string::npos) << m;
  EXPECT_NE(m.find(GetParam().message), std::string::npos) << m;
}

INSTANTIATE_TEST_SUITE_P(
    All, RecipeSequenceFieldError,
    ::testing::Values(FieldError{"reshape {}", "reshape.shape is empty"},
                      FieldError{"reshape { shape: [-1, -1] }", "at most one -1"},
                      FieldError{"reshape { shape: [28, 0] }", "entries must be > 0 or -1"},
                      FieldError{"embedding { vocab_size: 10 }", "embedding.dim must be > 0"},
                      FieldError{"embedding { vocab_size: -1 dim: 4 }", "embedding.vocab_size must be >= 0"},
                      FieldError{"lstm { return_sequences: true }", "lstm.units must be > 0 (got 0)"},
                      FieldError{"gru { units: -2 }", "gru.units must be > 0 (got -2)"},
                      FieldError{"layer_norm { epsilon: 0 }", "layer_norm.epsilon must be > 0"},
                      FieldError{"positional_embedding { max_length: -1 }",
                                 "positional_embedding.max_length must be >= 0"},
                      FieldError{"self_attention {}", "self_attention.heads must be > 0"},
                      FieldError{"transformer_block { heads: 2 mlp_hidden: -4 }",
                                 "transformer_block.mlp_hidden must be >= 0"},
                      FieldError{"time_distributed_dense { units: -3 activation: RELU }",
                                 "time_distributed_dense.units must be >= 0"}));

TEST(RecipeSequence, SoftmaxOnATimeDistributedDenseOnlyLast) {
  std::string text = SequenceRecipe("  layers { reshape { shape: [28, 28] } }\n"
                                    "  layers { time_distributed_dense { units: 4 activation: SOFTMAX } }\n"
                                    "  layers { flatten {} }\n");
  auto r = ParseRecipe(text, "tdd.pbtxt");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("tdd.pbtxt:3:3: model.layers[1]: softmax is only allowed on the last layer"),
            std::string::npos)
      << r.status().message();
}

// ---------------------------------------------------------------- GAN recipes

const char* kGanRecipe = R"(gan {
  noise_dim: 8
  generator {
    layers { dense { units: 16 activation: RELU } }
    layers { dense { units: 784 activation: TANH } }
  }
  discriminator {
    layers { flatten {} }
    layers { dense { units: 16 activation: RELU } }
    layers { dense { units: 1 } }
  }
  generator_optimizer { kind: ADAM learning_rate: 0.0002 beta1: 0.5 }
  discriminator_optimizer { kind: SGD learning_rate: 0.01 }
}
training { global_batch_size: 8 epochs: 1 }
)";

TEST(RecipeGan, ParsesWithDefaultsAndBuildsBothModels) {
  auto r = ParseRecipe(kGanRecipe, "gan.pbtxt");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->recipe.gan().quality_samples(), 1000);
  EXPECT_EQ(r->recipe.gan().grid_rows(), 10);
  EXPECT_FLOAT_EQ(r->recipe.gan().real_label(), 1.0f);
  EXPECT_EQ(r->layer_lines.at("gan.generator"), (std::vector<int>{4, 5}));
  EXPECT_EQ(r->layer_lines.at("gan.discriminator"), (std::vector<int>{8, 9, 10}));
  auto be = CreateCpuBackend();
  auto g = BuildModel(*r, "gan.generator", be.get(), {8});
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_EQ((*g)->output_shape(), (Shape{784}));
  auto d = BuildModel(*r, "gan.discriminator", be.get(), {28, 28, 1});
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ((*d)->output_shape(), (Shape{1}));
}

TEST(RecipeGan, DiscriminatorMustOutputOneLogit) {
  std::string text = kGanRecipe;
  text.replace(text.find("units: 1 }"), 10, "units: 2 }");
  auto r = ParseRecipe(text, "gan.pbtxt");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto be = CreateCpuBackend();
  auto d = BuildModel(*r, "gan.discriminator", be.get(), {28, 28, 1});
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("gan.discriminator must output one logit per image, shape (1)"),
            std::string::npos)
      << d.status().message();
}

TEST(RecipeGan, ShippedGanRecipeBuilds) {
  auto r = LoadRecipe(SourceDir() + "/recipes/gan-fashion.pbtxt");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto be = CreateCpuBackend();
  auto g = BuildModel(*r, "gan.generator", be.get(), {r->recipe.gan().noise_dim()});
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_EQ(NumElements((*g)->output_shape()), 784);
  auto d = BuildModel(*r, "gan.discriminator", be.get(), {28, 28, 1});
  ASSERT_TRUE(d.ok()) << d.status().ToString();
}

struct GanRecipeError {
  const char* name;
  const char* edit_from;  // replaced in kGanRecipe (appended when empty)
  const char* edit_to;
  const char* expect;
};

class RecipeGanError : public ::testing::TestWithParam<GanRecipeError> {};

TEST_P(RecipeGanError, NamesTheField) {
  const GanRecipeError& e = GetParam();
  std::string text = kGanRecipe;
  if (std::string(e.edit_from).empty()) {
    text += e.edit_to;
  } else {
    ASSERT_NE(text.find(e.edit_from), std::string::npos);
    text.replace(text.find(e.edit_from), std::string(e.edit_from).size(), e.edit_to);
  }
  auto r = ParseRecipe(text, "gan.pbtxt");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(e.expect), std::string::npos) << r.status().message();
}

INSTANTIATE_TEST_SUITE_P(
    Fields, RecipeGanError,
    ::testing::Values(
        GanRecipeError{"model_too", "", "model { layers { flatten {} } }\n",
                       "model: a GAN recipe describes its models in gan.generator and gan.discriminator"},
        GanRecipeError{"optimizer_too", "", "optimizer { learning_rate: 0.1 }\n",
                       "optimizer: a GAN recipe sets gan.generator_optimizer"},
        GanRecipeError{"no_generator_layers", "    layers { dense { units: 16 activation: RELU } }\n    layers { dense { units: 784 activation: TANH } }\n", "",
                       "gan.generator.layers: the model has no layers"},
        GanRecipeError{"softmax_in_discriminator", "units: 1 }", "units: 1 activation: SOFTMAX }",
                       "gan.pbtxt:10:5: gan.discriminator.layers[2]: softmax is only allowed on the last layer"},
        GanRecipeError{"no_generator_rate", "kind: ADAM learning_rate: 0.0002 beta1: 0.5", "kind: ADAM",
                       "gan.generator_optimizer/schedule"},
        GanRecipeError{"bad_real_label", "noise_dim: 8", "noise_dim: 8 real_label: 1.5",
                       "gan.real_label must be in (0, 1]"},
        GanRecipeError{"text_data", "", "data { dataset: \"text\" sequence_length: 8 }\n",
                       "a GAN trains on images (fashion_mnist)"},
        GanRecipeError{"accumulation", "", "distributed { gradient_accumulation_steps: 2 }\n",
                       "not supported for GAN recipes"}),
    [](const ::testing::TestParamInfo<GanRecipeError>& i) { return std::string(i.param.name); });

class ShippedRecipe : public ::testing::TestWithParam<const char*> {};

TEST_P(ShippedRecipe, ParsesAndBuilds) {
  auto r = LoadRecipe(SourceDir() + "/recipes/" + GetParam());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_LE(r->recipe.training().epochs(), 15);
  auto be = CreateCpuBackend();
  auto model = BuildModel(*r, be.get(), {28, 28, 1});
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_EQ((*model)->output_shape(), (Shape{10}));
}

INSTANTIATE_TEST_SUITE_P(All, ShippedRecipe, ::testing::Values("mlp.pbtxt", "mlp-deep.pbtxt", "cnn.pbtxt",
                                                                   "lstm-fashion.pbtxt"),
                         [](const ::testing::TestParamInfo<const char*>& i) {
                           std::string n = i.param;
                           for (char& c : n) if (c == '-' || c == '.') c = '_';
                           return n;
                         });

}  // namespace
}  // namespace lockstep
