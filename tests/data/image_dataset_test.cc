// LoadIdxImageDataset validation and GatherBatch against a naive reference.
#include "runtime/data/image_dataset.h"

#include <gtest/gtest.h>

#include "tests/data/idx_test_util.h"

namespace lockstep {
namespace data {
namespace {

using testing::IdxBytes;
using testing::PatternPayload;
using testing::ScratchDir;
using testing::WriteGzip;
using testing::WritePlain;

bool Has(const Status& s, const std::string& w) { return s.message().find(w) != std::string::npos; }

TEST(ImageDataset, LoadsImagesAndLabels) {
  ScratchDir dir;
  std::vector<uint8_t> pixels = PatternPayload(5 * 3 * 2);
  WriteGzip(dir.File("img.gz"), IdxBytes(0x08, {5, 3, 2}, pixels));
  WritePlain(dir.File("lbl"), IdxBytes(0x08, {5}, {3, 0, 1, 3, 2}));
  Result<ImageDataset> r = LoadIdxImageDataset(dir.File("img.gz"), dir.File("lbl"), 4);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->count, 5);
  EXPECT_EQ(r->height, 3);
  EXPECT_EQ(r->width, 2);
  EXPECT_EQ(r->channels, 1);
  EXPECT_EQ(r->num_classes, 4);
  EXPECT_EQ(r->pixels, pixels);
  EXPECT_EQ(r->labels, (std::vector<int32_t>{3, 0, 1, 3, 2}));
}

TEST(ImageDataset, GatherBatchNormalisesAndFollowsIndexOrder) {
  ImageDataset d;
  d.count = 4;
  d.height = 2;
  d.width = 3;
  d.num_classes = 10;
  d.pixels = PatternPayload(4 * 6, 7);
  d.pixels[0] = 0;
  d.pixels[1] = 255;
  d.labels = {9, 8, 7, 6};
  const int64_t idx[] = {3, 0, 0, 2};
  std::vector<float> images(4 * 6, -1.0f);
  std::vector<int32_t> labels(4, -1);
  GatherBatch(d, idx, 4, images.data(), labels.data());
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(labels[i], d.labels[idx[i]]);
    for (int e = 0; e < 6; ++e) {
      float want = static_cast<float>(d.pixels[idx[i] * 6 + e]) / 255.0f;
      EXPECT_EQ(images[i * 6 + e], want) << "sample " << i << " element " << e;
    }
  }
  EXPECT_EQ(images[6], 0.0f);  // sample 0 sits at batch position 1
  EXPECT_EQ(images[7], 1.0f);
}

TEST(ImageDataset, GatherBatchWithoutLabels) {
  ImageDataset d;
  d.count = 2;
  d.height = d.width = 1;
  d.pixels = {51, 102};
  d.labels = {0, 1};
  const int64_t idx[] = {1};
  float out = -1;
  GatherBatch(d, idx, 1, &out, nullptr);
  EXPECT_EQ(out, 102.0f / 255.0f);
}

TEST(ImageDataset, ImagesMustBeThreeDimensional) {
  ScratchDir dir;
  WritePlain(dir.File("img"), IdxBytes(0x08, {4, 6}, PatternPayload(24)));
  WritePlain(dir.File("lbl"), IdxBytes(0x08, {4}, {0, 1, 0, 1}));
  Result<ImageDataset> r = LoadIdxImageDataset(dir.File("img"), dir.File("lbl"), 2);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Has(r.status(), dir.File("img"))) << r.status().message();
  EXPECT_TRUE(Has(r.status(), "(4, 6)")) << r.status().message();
  EXPECT_TRUE(Has(r.status(), "expected 3 dimensions")) << r.status().message();
}

TEST(ImageDataset, LabelsMustBeOneDimensional) {
  ScratchDir dir;
  WritePlain(dir.File("img"), IdxBytes(0x08, {4, 1, 1}, PatternPayload(4)));
  WritePlain(dir.File("lbl"), IdxBytes(0x08, {4, 1}, {0, 1, 0, 1}));
  Result<ImageDataset> r = LoadIdxImageDataset(dir.File("img"), dir.File("lbl"), 2);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Has(r.status(), dir.File("lbl"))) << r.status().message();
  EXPECT_TRUE(Has(r.status(), "expected 1 dimension")) << r.status().message();
}

TEST(ImageDataset, CountMismatchNamesBothFilesAndCounts) {
  ScratchDir dir;
  WritePlain(dir.File("img"), IdxBytes(0x08, {6, 2, 2}, PatternPayload(24)));
  WritePlain(dir.File("lbl"), IdxBytes(0x08, {5}, {0, 1, 0, 1, 0}));
  Result<ImageDataset> r = LoadIdxImageDataset(dir.File("img"), dir.File("lbl"), 2);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  for (const char* w : {"count mismatch", "6 images", "5 labels"})
    EXPECT_TRUE(Has(r.status(), w)) << w;
  EXPECT_TRUE(Has(r.status(), dir.File("img") + " holds")) << r.status().message();
  EXPECT_TRUE(Has(r.status(), dir.File("lbl") + " holds")) << r.status().message();
}

TEST(ImageDataset, OutOfRangeLabelNamesFirstBadIndexAndValue) {
  ScratchDir dir;
  WritePlain(dir.File("img"), IdxBytes(0x08, {5, 1, 1}, PatternPayload(5)));
  WritePlain(dir.File("lbl"), IdxBytes(0x08, {5}, {0, 2, 10, 11, 1}));
  Result<ImageDataset> r = LoadIdxImageDataset(dir.File("img"), dir.File("lbl"), 10);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  for (const std::string& w :
       {dir.File("lbl"), std::string("label at index 2 is 10"), std::string("0..9")}) {
    EXPECT_TRUE(Has(r.status(), w)) << r.status().message() << " lacks " << w;
  }
}

TEST(ImageDataset, ReaderErrorNamesTheBadFile) {
  ScratchDir dir;
  WritePlain(dir.File("img"), IdxBytes(0x08, {2, 1, 1}, PatternPayload(2)));
  Result<ImageDataset> r = LoadIdxImageDataset(dir.File("img"), dir.File("missing"), 2);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(Has(r.status(), dir.File("missing"))) << r.status().message();
}

}  // namespace
}  // namespace data
}  // namespace lockstep
