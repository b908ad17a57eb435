// The GAN path of the trainer on real Fashion-MNIST (skips visibly when the dataset
// package is absent): noise statistics and purity, the quality proxy's arithmetic,
// the PNG sample grid (decoded back with zlib), a run that scores its samples with a
// classifier trained in the test, and clear errors for a bad classifier.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <zlib.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "checkpoints/checkpoint.h"
#include "runtime/data/fashion_mnist.h"
#include "training/gan_state.h"
#include "training/image_grid.h"
#include "training/quality_proxy.h"
#include "training/trainer.h"

namespace lockstep {
namespace {

bool HaveDataset() {
  struct stat st {};
  return stat((std::string(data::kFashionMnistDefaultDir) + "/train-images-idx3-ubyte.gz").c_str(), &st) == 0;
}

#define REQUIRE_DATASET() \
  if (!HaveDataset()) GTEST_SKIP() << "Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)"

const char* kClassifier = R"(model {
  layers { flatten {} }
  layers { dense { units: 32 activation: RELU } }
  layers { dense { units: 10 activation: SOFTMAX } }
}
optimizer { kind: ADAM learning_rate: 0.002 }
training { global_batch_size: 64 epochs: 1 max_steps: 60 seed: 3 }
)";

const char* kGan = R"(gan {
  noise_dim: 16
  generator {
    layers { dense { units: 32 activation: RELU } }
    layers { dense { units: 784 activation: TANH } }
  }
  discriminator {
    layers { flatten {} }
    layers { dense { units: 32 activation: RELU } }
    layers { dense { units: 1 } }
  }
  generator_optimizer { kind: ADAM learning_rate: 0.001 beta1: 0.5 }
  discriminator_optimizer { kind: ADAM learning_rate: 0.001 beta1: 0.5 }
  grid_rows: 4
  quality_samples: 300
}
data { train_samples: 960 }
training { global_batch_size: 48 epochs: 2 seed: 5 }
)";

std::string FreshDir(const std::string& name) {
  std::string dir = ::testing::TempDir() + "/gan_" + name + "_" + std::to_string(getpid());
  std::string cmd = "rm -rf '" + dir + "'";
  EXPECT_EQ(std::system(cmd.c_str()), 0);
  return dir;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

uint32_t BigEndian32(const std::string& s, size_t at) {
  return (static_cast<uint32_t>(static_cast<uint8_t>(s[at])) << 24) |
         (static_cast<uint32_t>(static_cast<uint8_t>(s[at + 1])) << 16) |
         (static_cast<uint32_t>(static_cast<uint8_t>(s[at + 2])) << 8) | static_cast<uint8_t>(s[at + 3]);
}

// Decodes an 8-bit greyscale, unfiltered PNG as WritePng writes it, checking every CRC.
GrayImage DecodePng(const std::string& png) {
  GrayImage image;
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  std::string idat;
  for (size_t at = 8; at + 12 <= png.size();) {
    const uint32_t length = BigEndian32(png, at);
    const std::string type = png.substr(at + 4, 4);
    const std::string data = png.substr(at + 8, length);
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, reinterpret_cast<const Bytef*>(png.data() + at + 4), length + 4);
    EXPECT_EQ(static_cast<uint32_t>(crc), BigEndian32(png, at + 8 + length)) << type << " chunk CRC";
    if (type == "IHDR") {
      image.width = BigEndian32(data, 0);
      image.height = BigEndian32(data, 4);
      EXPECT_EQ(data[8], 8) << "bit depth";
      EXPECT_EQ(data[9], 0) << "greyscale";
    } else if (type == "IDAT") {
      idat += data;
    }
    at += 12 + length;
  }
  uLongf raw_size = static_cast<uLongf>((image.width + 1) * image.height);
  std::string raw(raw_size, '\0');
  EXPECT_EQ(uncompress(reinterpret_cast<Bytef*>(&raw[0]), &raw_size, reinterpret_cast<const Bytef*>(idat.data()),
                       static_cast<uLong>(idat.size())),
            Z_OK);
  for (int64_t y = 0; y < image.height; ++y) {
    EXPECT_EQ(raw[static_cast<size_t>(y * (image.width + 1))], 0) << "filter type of row " << y;
    for (int64_t x = 0; x < image.width; ++x) {
      image.pixels.push_back(static_cast<uint8_t>(raw[static_cast<size_t>(y * (image.width + 1) + 1 + x)]));
    }
  }
  return image;
}

TEST(GanNoise, StandardNormalAndAPureFunctionOfTheSamplePosition) {
  const int64_t rows = 400, dim = 50;
  std::vector<float> a(static_cast<size_t>(rows * dim));
  FillStandardNormal(7, 1, 3, 0, rows, dim, a.data());
  double mean = 0, square = 0;
  for (float v : a) {
    mean += v;
    square += static_cast<double>(v) * v;
  }
  mean /= static_cast<double>(a.size());
  const double variance = square / static_cast<double>(a.size()) - mean * mean;
  EXPECT_NEAR(mean, 0.0, 0.03);  // 5 standard errors of 20000 draws
  EXPECT_NEAR(variance, 1.0, 0.05);
  // Rows 100..109 drawn alone (as another rank would) are the same numbers.
  std::vector<float> part(static_cast<size_t>(10 * dim));
  FillStandardNormal(7, 1, 3, 100, 10, dim, part.data());
  EXPECT_EQ(0, std::memcmp(part.data(), a.data() + 100 * dim, part.size() * sizeof(float)));
  // Another stream, step or seed draws other numbers.
  for (auto [seed, stream, step] : {std::tuple<uint64_t, uint32_t, uint64_t>{7, 2, 3}, {7, 1, 4}, {8, 1, 3}}) {
    std::vector<float> other(part.size());
    FillStandardNormal(seed, stream, step, 100, 10, dim, other.data());
    EXPECT_NE(0, std::memcmp(part.data(), other.data(), part.size() * sizeof(float)))
        << "seed " << seed << " stream " << stream << " step " << step;
  }
}

TEST(QualityProxy, ScoresFromProbabilities) {
  // Ten confident samples, one per class: the best a generator can do.
  std::vector<double> one_hot(100, 0.0);
  for (int i = 0; i < 10; ++i) one_hot[static_cast<size_t>(i * 10 + i)] = 1.0;
  ClassifierScores best = ScoreProbabilities(one_hot, 10, 10);
  EXPECT_DOUBLE_EQ(best.confidence, 1.0);
  EXPECT_NEAR(best.class_entropy, std::log(10.0), 1e-12);
  EXPECT_NEAR(best.inception_score, 10.0, 1e-9);
  // Every sample the same confident class (mode collapse): entropy 0, score 1.
  std::vector<double> collapsed(100, 0.0);
  for (int i = 0; i < 10; ++i) collapsed[static_cast<size_t>(i * 10 + 3)] = 1.0;
  ClassifierScores mode = ScoreProbabilities(collapsed, 10, 10);
  EXPECT_DOUBLE_EQ(mode.confidence, 1.0);
  EXPECT_NEAR(mode.class_entropy, 0.0, 1e-12);
  EXPECT_NEAR(mode.inception_score, 1.0, 1e-12);
  // Unrecognisable samples (uniform probabilities): confidence 1/10, score 1.
  std::vector<double> unsure(100, 0.1);
  ClassifierScores noise = ScoreProbabilities(unsure, 10, 10);
  EXPECT_NEAR(noise.confidence, 0.1, 1e-12);
  EXPECT_NEAR(noise.class_entropy, std::log(10.0), 1e-12);
  EXPECT_NEAR(noise.inception_score, 1.0, 1e-12);
}

TEST(ImageGrid, PngRoundTripsThroughZlib) {
  // Two 3 x 2 images in a grid two wide: values -1 (black) .. 1 (white).
  std::vector<float> images = {-1, 1, 0, 0.5f, -1, 1, 1, 1, 1, -1, -1, -1};
  GrayImage grid = TileImages(images.data(), 2, 3, 2, 2, -1.0f, 1.0f);
  EXPECT_EQ(grid.width, 2 * (2 + 2) + 2);
  EXPECT_EQ(grid.height, 3 + 2 * 2);
  const std::string path = ::testing::TempDir() + "/grid_" + std::to_string(getpid()) + ".png";
  ASSERT_TRUE(WritePng(path, grid).ok());
  GrayImage back = DecodePng(ReadFile(path));
  EXPECT_EQ(back.width, grid.width);
  EXPECT_EQ(back.height, grid.height);
  EXPECT_EQ(back.pixels, grid.pixels);
  auto at = [&](int64_t x, int64_t y) { return back.pixels[static_cast<size_t>(y * back.width + x)]; };
  EXPECT_EQ(at(2, 2), 0);     // image 0, pixel (0, 0) = -1
  EXPECT_EQ(at(3, 2), 255);   // pixel (1, 0) = 1
  EXPECT_EQ(at(2, 3), 128);   // pixel (0, 1) = 0
  EXPECT_EQ(at(0, 0), 128);   // the border
  EXPECT_EQ(at(6, 2), 255);   // image 1, pixel (0, 0) = 1
  EXPECT_FALSE(WritePng("/nonexistent-dir/x.png", grid).ok());
}

// Trains a small classifier (a checkpoint in `dir`), as recipes/cnn.pbtxt's run would.
void TrainClassifier(const std::string& dir) {
  TrainOptions o;
  o.recipe_text = kClassifier;
  o.run_dir = dir;
  o.show_progress = false;
  auto t = Trainer::Create(o);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  ASSERT_TRUE((*t)->Run().ok());
}

TEST(GanTrainer, EpochsWriteSampleGridsAndQualityScores) {
  REQUIRE_DATASET();
  const std::string classifier = FreshDir("classifier");
  TrainClassifier(classifier);
  const std::string run = FreshDir("run");
  TrainOptions o;
  o.recipe_text = kGan;
  o.overrides = {"gan.quality_classifier=" + classifier};
  o.run_dir = run;
  o.show_progress = false;
  auto t = Trainer::Create(o);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  ASSERT_TRUE((*t)->is_gan());
  ASSERT_EQ((*t)->num_models(), 2);
  EXPECT_EQ((*t)->model_name(0), "generator");
  EXPECT_EQ((*t)->model_name(1), "discriminator");
  EXPECT_FALSE((*t)->Evaluate(0).ok()) << "a GAN has no evaluation split";
  auto m = (*t)->Run();
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->step, 40);  // 960 / 48 x 2 epochs
  EXPECT_GT(m->generator_loss, 0);
  EXPECT_GE(m->quality_confidence, 0.1);
  EXPECT_LE(m->quality_confidence, 1.0);
  EXPECT_GE(m->quality_class_entropy, 0.0);
  EXPECT_LE(m->quality_class_entropy, std::log(10.0) + 1e-9);
  EXPECT_GE(m->quality_inception_score, 1.0);

  for (const char* epoch : {"001", "002"}) {
    const std::string png = run + "/samples/epoch-" + epoch + ".png";
    GrayImage grid = DecodePng(ReadFile(png));
    EXPECT_EQ(grid.width, 4 * 30 + 2) << png;
    EXPECT_EQ(grid.height, 4 * 30 + 2) << png;
  }
  std::ifstream in(run + "/metrics.jsonl");
  std::string line, last;
  int lines = 0;
  while (std::getline(in, line)) {
    ++lines;
    last = line;
  }
  EXPECT_EQ(lines, 2);
  for (const char* key : {"\"generator_loss\":", "\"quality_confidence\":", "\"quality_class_entropy\":",
                          "\"quality_inception_score\":", "\"sample_grid\":", "\"train_loss\":"}) {
    EXPECT_NE(last.find(key), std::string::npos) << key << " missing in " << last;
  }
  EXPECT_EQ(last.find("val_loss"), std::string::npos) << last;

  // The checkpoint holds both models and both optimisers.
  auto reader = ckpt::CheckpointReader::Open(run + "/checkpoints/" + ckpt::StepDirName(40));
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  for (const char* buffer : {"generator.params", "generator.opt.m", "generator.opt.v", "discriminator.params",
                             "discriminator.opt.m", "discriminator.opt.v"}) {
    EXPECT_NE((*reader)->FindBuffer(buffer), nullptr) << buffer;
  }
  EXPECT_EQ((*reader)->FindBuffer("params"), nullptr) << "named per model";

  // `lockstep ckpt export` writes both models' tensors, named per model.
  const std::string exported = run + "/gan.safetensors";
  ASSERT_TRUE(ckpt::ExportSafetensors(run + "/checkpoints/" + ckpt::StepDirName(40), exported).ok());
  auto file = ckpt::ReadSafetensors(exported);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  size_t tensors = 0;
  for (int i = 0; i < (*t)->num_models(); ++i) {
    Model& model = (*t)->model(i);
    for (const ParamInfo& p : model.param_infos()) {
      const std::string name = (*t)->model_name(i) + "." + p.name;
      const ckpt::SafetensorsTensor* got = file->Find(name);
      ASSERT_NE(got, nullptr) << name;
      std::vector<float> values = got->AsFloats();
      ASSERT_EQ(static_cast<int64_t>(values.size()), NumElements(p.shape)) << name;
      EXPECT_EQ(0, std::memcmp(values.data(), model.params().data<float>() + p.offset, values.size() * 4)) << name;
      ++tensors;
    }
  }
  EXPECT_EQ(file->tensors.size(), tensors);
}

// Mean absolute difference between the mean generated image (500 samples, in the
// data's [0, 1] scale) and the mean of the real training images.
double DistanceToRealMeanImage(Trainer& t) {
  const int64_t n = 500, noise_dim = t.recipe().recipe.gan().noise_dim();
  std::vector<float> noise(static_cast<size_t>(n * noise_dim));
  FillStandardNormal(99, 7, 0, 0, n, noise_dim, noise.data());
  Model& generator = t.model(0);
  Tensor z = Tensor::View(noise.data(), {n, noise_dim}, DType::kFloat32, generator.backend()->device());
  StepContext ctx;
  ctx.backend = generator.backend();
  Tensor out = generator.Forward(ctx, z);
  const int64_t pixels = out.numel() / n;
  std::vector<double> generated(static_cast<size_t>(pixels), 0.0), real(static_cast<size_t>(pixels), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t p = 0; p < pixels; ++p) generated[static_cast<size_t>(p)] += 0.5 * (out.data<float>()[i * pixels + p] + 1.0);
  }
  std::vector<int64_t> ids(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) ids[static_cast<size_t>(i)] = i;
  std::vector<float> images(static_cast<size_t>(n * pixels));
  std::vector<int32_t> labels(static_cast<size_t>(n));
  t.data().GatherTrain(ids.data(), n, images.data(), labels.data());
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t p = 0; p < pixels; ++p) real[static_cast<size_t>(p)] += images[static_cast<size_t>(i * pixels + p)];
  }
  double distance = 0;
  for (int64_t p = 0; p < pixels; ++p) {
    distance += std::fabs(generated[static_cast<size_t>(p)] - real[static_cast<size_t>(p)]) / static_cast<double>(n);
  }
  return distance / static_cast<double>(pixels);
}

// The adversarial updates point the right way: within a few hundred steps the
// generator's samples move towards the data (their mean image approaches the real
// one), which a sign error in either model's update would undo.
TEST(GanTrainer, GeneratedImagesMoveTowardsTheData) {
  REQUIRE_DATASET();
  TrainOptions o;
  o.recipe_text = kGan;
  o.overrides = {"data.train_samples=0", "training.global_batch_size=64", "gan.generator_optimizer.learning_rate=0.003",
                 "gan.discriminator_optimizer.learning_rate=0.003"};
  o.show_progress = false;
  auto t = Trainer::Create(o);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  const double before = DistanceToRealMeanImage(**t);
  ASSERT_TRUE((*t)->TrainSteps(400).ok());
  const double after = DistanceToRealMeanImage(**t);
  std::printf("[gan] mean-image distance to the data: %.4f before, %.4f after 400 steps\n", before, after);
  EXPECT_LT(after, 0.6 * before);  // measured: 0.238 -> 0.114
}

TEST(GanTrainer, QualityClassifierErrorsNameThePath) {
  REQUIRE_DATASET();
  for (const auto& [path, expect] : std::vector<std::pair<std::string, std::string>>{
           {"/nonexistent/cnn-run", "gan.quality_classifier /nonexistent/cnn-run: no such directory"},
           {::testing::TempDir(), "holds no valid checkpoint"}}) {
    std::string dir = path;
    if (path == ::testing::TempDir()) {  // a run directory without checkpoints
      dir = FreshDir("empty_run");
      ASSERT_EQ(std::system(("mkdir -p '" + dir + "/checkpoints'").c_str()), 0);
    }
    TrainOptions o;
    o.recipe_text = kGan;
    o.overrides = {"gan.quality_classifier=" + dir};
    o.show_progress = false;
    auto t = Trainer::Create(o);
    ASSERT_FALSE(t.ok()) << dir;
    EXPECT_NE(t.status().message().find(expect), std::string::npos) << t.status().message();
  }
}

TEST(GanTrainer, GeneratorMustFitTheImage) {
  REQUIRE_DATASET();
  std::string text = kGan;
  text.replace(text.find("units: 784"), 10, "units: 700");
  TrainOptions o;
  o.recipe_text = text;
  o.show_progress = false;
  auto t = Trainer::Create(o);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("gan.generator outputs (700) per sample, but an image of the dataset is "
                                      "(28, 28, 1) (784 values)"),
            std::string::npos)
      << t.status().message();
}

}  // namespace
}  // namespace lockstep
