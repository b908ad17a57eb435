// The training loop on real Fashion-MNIST (skips visibly when the dataset
// package is absent): determinism, loss going down, metrics output.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstring>
#include <fstream>

#include "runtime/data/fashion_mnist.h"
#include "training/trainer.h"

namespace lockstep {
namespace {

const char* kSmallMlp = R"(name: "small-mlp"
model {
  layers { flatten {} }
  layers { dense { units: 32 activation: RELU } }
  layers { dropout { rate: 0.1 } }
  layers { dense { units: 10 activation: SOFTMAX } }
}
optimizer { kind: ADAM learning_rate: 0.002 }
training { global_batch_size: 32 epochs: 1 seed: 11 }
)";

bool HaveDataset() {
  struct stat st {};
  return stat((std::string(data::kFashionMnistDefaultDir) + "/train-images-idx3-ubyte.gz").c_str(), &st) == 0;
}

#define REQUIRE_DATASET() \
  if (!HaveDataset()) GTEST_SKIP() << "Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)"

std::unique_ptr<Trainer> MakeTrainer(const std::vector<std::string>& overrides = {}) {
  TrainOptions o;
  o.recipe_text = kSmallMlp;
  o.overrides = overrides;
  o.show_progress = false;
  auto t = Trainer::Create(o);
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return t.ok() ? std::move(t).value() : nullptr;
}

TEST(Trainer, SameSeedTwiceGivesBitwiseIdenticalParameters) {
  REQUIRE_DATASET();
  auto a = MakeTrainer(), b = MakeTrainer();
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->TrainSteps(25).ok());
  ASSERT_TRUE(b->TrainSteps(25).ok());
  ASSERT_EQ(a->model().param_count(), b->model().param_count());
  EXPECT_EQ(0, std::memcmp(a->model().params().raw(), b->model().params().raw(), a->model().params().nbytes()));
  auto c = MakeTrainer({"training.seed=12"});
  ASSERT_TRUE(c->TrainSteps(25).ok());
  EXPECT_NE(0, std::memcmp(a->model().params().raw(), c->model().params().raw(), a->model().params().nbytes()));
}

TEST(Trainer, ShortRunLowersTheLoss) {
  REQUIRE_DATASET();
  auto t = MakeTrainer();
  ASSERT_TRUE(t);
  EvalResult before = *t->Evaluate(0);
  ASSERT_TRUE(t->TrainSteps(150).ok());
  EvalResult after = *t->Evaluate(0);
  EXPECT_LT(after.loss, 0.6 * before.loss) << "before " << before.loss << " after " << after.loss;
  EXPECT_GT(after.accuracy, 0.65);
  EXPECT_EQ(after.samples, 5000);
}

TEST(Trainer, RunWritesOneMetricsLinePerEpoch) {
  REQUIRE_DATASET();
  std::string dir = ::testing::TempDir() + "/lockstep_trainer_run";
  std::remove((dir + "/metrics.jsonl").c_str());
  TrainOptions o;
  o.recipe_text = kSmallMlp;
  o.overrides = {"training.max_steps=60", "training.epochs=1"};
  o.run_dir = dir;
  o.show_progress = false;
  o.resume = "none";  // an earlier run's checkpoints in this directory must not count
  auto t = Trainer::Create(o);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  auto m = (*t)->Run();
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->step, 60);
  std::ifstream in(dir + "/metrics.jsonl");
  std::string line, last;
  int lines = 0;
  while (std::getline(in, line)) {
    ++lines;
    last = line;
  }
  EXPECT_EQ(lines, 1);
  for (const char* key : {"\"epoch\":1", "\"step\":60", "\"train_loss\":", "\"train_accuracy\":",
                          "\"val_loss\":", "\"val_accuracy\":", "\"test_loss\":", "\"test_accuracy\":",
                          "\"samples_per_sec\":", "\"wall_seconds\":", "\"peak_rss_mb\":", "\"world_size\":1"}) {
    EXPECT_NE(last.find(key), std::string::npos) << key << " missing in " << last;
  }
  std::ifstream recipe(dir + "/recipe.pbtxt");
  EXPECT_TRUE(recipe.good()) << "the effective recipe is saved in the run directory";
}

TEST(Trainer, BatchLargerThanDatasetIsAClearError) {
  REQUIRE_DATASET();
  TrainOptions o;
  o.recipe_text = kSmallMlp;
  o.overrides = {"training.global_batch_size=100000"};
  o.show_progress = false;
  auto t = Trainer::Create(o);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("100000"), std::string::npos) << t.status().message();
}

TEST(Trainer, MissingDatasetDirectoryNamesThePath) {
  TrainOptions o;
  o.recipe_text = kSmallMlp;
  o.dataset_dir_override = "/nonexistent/fashion";
  o.show_progress = false;
  auto t = Trainer::Create(o);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("/nonexistent/fashion"), std::string::npos) << t.status().message();
}

}  // namespace
}  // namespace lockstep
