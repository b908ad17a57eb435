// Recipe parsing: syntax/type errors carry file:line:column, semantic errors the
// layer index and its line; overrides; every shipped recipe parses and builds.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include "runtime/core/recipe.h"

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
  EXPECT_EQ(r->layer_lines, (std::vector<int>{3, 4, 5}));
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

INSTANTIATE_TEST_SUITE_P(All, ShippedRecipe, ::testing::Values("mlp.pbtxt", "mlp-deep.pbtxt", "cnn.pbtxt"),
                         [](const ::testing::TestParamInfo<const char*>& i) {
                           std::string n = i.param;
                           for (char& c : n) if (c == '-' || c == '.') c = '_';
                           return n;
                         });

}  // namespace
}  // namespace lockstep
