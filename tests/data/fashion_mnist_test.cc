// LoadFashionMnist: file lookup and the validation split on a crafted
// directory, and the real dataset when installed (a visible skip otherwise).
#include "runtime/data/fashion_mnist.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "tests/data/idx_test_util.h"

namespace lockstep {
namespace data {
namespace {

using testing::IdxBytes;
using testing::PatternPayload;
using testing::ScratchDir;
using testing::WriteGzip;
using testing::WritePlain;

// A tiny Fashion-MNIST look-alike: 12 train and 4 test images of 3x2. Train
// images use the .gz names, test images the plain names (the fallback).
void WriteTinyFashion(const ScratchDir& dir) {
  std::vector<uint8_t> train_labels(12), test_labels = {9, 0, 4, 4};
  for (int i = 0; i < 12; ++i) train_labels[i] = static_cast<uint8_t>(i % 10);
  WriteGzip(dir.File("train-images-idx3-ubyte.gz"),
            IdxBytes(0x08, {12, 3, 2}, PatternPayload(72, 1)));
  WriteGzip(dir.File("train-labels-idx1-ubyte.gz"), IdxBytes(0x08, {12}, train_labels));
  WritePlain(dir.File("t10k-images-idx3-ubyte"), IdxBytes(0x08, {4, 3, 2}, PatternPayload(24, 2)));
  WritePlain(dir.File("t10k-labels-idx1-ubyte"), IdxBytes(0x08, {4}, test_labels));
}

TEST(FashionMnist, LoadsCraftedDirectoryWithPlainFallback) {
  ScratchDir dir;
  WriteTinyFashion(dir);
  Result<FashionMnist> r = LoadFashionMnist(dir.path(), 3);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->train.count, 12);
  EXPECT_EQ(r->test.count, 4);
  EXPECT_EQ(r->test.labels, (std::vector<int32_t>{9, 0, 4, 4}));
  EXPECT_EQ(r->test.pixels, PatternPayload(24, 2));
  EXPECT_EQ(r->train.num_classes, 10);
}

TEST(FashionMnist, ValidationIsTheTailOfTrain) {
  ScratchDir dir;
  WriteTinyFashion(dir);
  Result<FashionMnist> r = LoadFashionMnist(dir.path(), 3);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->validation_count, 3);
  EXPECT_EQ(r->TrainRange().begin, 0);
  EXPECT_EQ(r->TrainRange().end, 9);
  EXPECT_EQ(r->ValidationRange().begin, 9);
  EXPECT_EQ(r->ValidationRange().end, 12);
}

TEST(FashionMnist, ValidationCountMustLeaveTrainingSamples) {
  ScratchDir dir;
  WriteTinyFashion(dir);
  Result<FashionMnist> all = LoadFashionMnist(dir.path(), 12);
  ASSERT_FALSE(all.ok());
  EXPECT_EQ(all.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(all.status().message().find("validation_count 12"), std::string::npos)
      << all.status().message();
  EXPECT_NE(all.status().message().find("12 training samples"), std::string::npos)
      << all.status().message();
  Result<FashionMnist> neg = LoadFashionMnist(dir.path(), -1);
  ASSERT_FALSE(neg.ok());
  EXPECT_EQ(neg.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(neg.status().message().find("-1"), std::string::npos) << neg.status().message();
}

TEST(FashionMnist, MissingDirectoryNamesTheFile) {
  ScratchDir dir;
  std::string missing = dir.File("nope");
  Result<FashionMnist> r = LoadFashionMnist(missing, 0);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find(missing + "/train-images-idx3-ubyte.gz"), std::string::npos)
      << r.status().message();
}

bool RealDatasetInstalled() {
  struct stat st;
  return stat(kFashionMnistDefaultDir, &st) == 0;
}

// One test for all facts of the real files: each TEST is its own process under
// ctest, and inflating the 30 MB takes a noticeable fraction of a second.
TEST(FashionMnist, RealDatasetShapesLabelsAndClassBalance) {
  if (!RealDatasetInstalled()) {
    GTEST_SKIP() << kFashionMnistDefaultDir << " not found (apt-get install dataset-fashion-mnist)";
  }
  Result<FashionMnist> r = LoadFashionMnist();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const FashionMnist& fm = *r;
  EXPECT_EQ(fm.train.count, 60000);
  EXPECT_EQ(fm.test.count, 10000);
  for (const ImageDataset* d : {&fm.train, &fm.test}) {
    EXPECT_EQ(d->height, 28);
    EXPECT_EQ(d->width, 28);
    EXPECT_EQ(d->channels, 1);
    EXPECT_EQ(static_cast<int64_t>(d->pixels.size()), d->count * 28 * 28);
    ASSERT_EQ(static_cast<int64_t>(d->labels.size()), d->count);
  }
  std::vector<int64_t> train_counts(10, 0), test_counts(10, 0);
  for (int32_t l : fm.train.labels) {
    ASSERT_TRUE(l >= 0 && l < 10) << l;
    ++train_counts[l];
  }
  for (int32_t l : fm.test.labels) {
    ASSERT_TRUE(l >= 0 && l < 10) << l;
    ++test_counts[l];
  }
  EXPECT_EQ(train_counts, std::vector<int64_t>(10, 6000));
  EXPECT_EQ(test_counts, std::vector<int64_t>(10, 1000));
  EXPECT_EQ(fm.validation_count, 5000);
  EXPECT_EQ(fm.TrainRange().end, 55000);
  EXPECT_EQ(fm.ValidationRange().begin, 55000);
  EXPECT_EQ(fm.ValidationRange().end, 60000);
}

}  // namespace
}  // namespace data
}  // namespace lockstep
