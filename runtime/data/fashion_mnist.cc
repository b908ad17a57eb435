// Fashion-MNIST: locate the four IDX files and load them as two datasets.
#include "runtime/data/fashion_mnist.h"

#include <sys/stat.h>

namespace lockstep {
namespace data {
namespace {

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

// "<dir>/<base>.gz" when it exists, else "<dir>/<base>" when that exists, else
// the .gz name (so that the NotFound error names the canonical file).
std::string Locate(const std::string& dir, const std::string& base) {
  std::string prefix = dir.empty() || dir.back() == '/' ? dir : dir + "/";
  std::string gz = prefix + base + ".gz";
  if (Exists(gz)) return gz;
  std::string plain = prefix + base;
  if (Exists(plain)) return plain;
  return gz;
}

}  // namespace

Result<FashionMnist> LoadFashionMnist(const std::string& dir, int64_t validation_count) {
  if (validation_count < 0) {
    return InvalidArgumentError("Fashion-MNIST validation_count must be >= 0, got " +
                                std::to_string(validation_count));
  }
  std::string where =
      " (Fashion-MNIST directory " + dir + "; apt-get install dataset-fashion-mnist)";
  FashionMnist fm;
  Result<ImageDataset> train =
      LoadIdxImageDataset(Locate(dir, "train-images-idx3-ubyte"),
                          Locate(dir, "train-labels-idx1-ubyte"), kFashionMnistClasses);
  if (!train.ok()) return train.status().WithContext("loading Fashion-MNIST train split" + where);
  fm.train = std::move(train).value();
  Result<ImageDataset> test =
      LoadIdxImageDataset(Locate(dir, "t10k-images-idx3-ubyte"),
                          Locate(dir, "t10k-labels-idx1-ubyte"), kFashionMnistClasses);
  if (!test.ok()) return test.status().WithContext("loading Fashion-MNIST test split" + where);
  fm.test = std::move(test).value();
  if (validation_count >= fm.train.count) {
    return InvalidArgumentError("Fashion-MNIST validation_count " +
                                std::to_string(validation_count) + " must be smaller than the " +
                                std::to_string(fm.train.count) + " training samples in " + dir +
                                " (some must be left for training)");
  }
  if (fm.test.height != fm.train.height || fm.test.width != fm.train.width) {
    return InvalidArgumentError(
        "Fashion-MNIST in " + dir + ": test images are " + std::to_string(fm.test.height) + "x" +
        std::to_string(fm.test.width) + " but train images are " + std::to_string(fm.train.height) +
        "x" + std::to_string(fm.train.width));
  }
  fm.validation_count = validation_count;
  return fm;
}

}  // namespace data
}  // namespace lockstep
