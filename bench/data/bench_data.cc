// bench_data: cost of the sampler's epoch permutation (vs std::shuffle with
// std::mt19937_64 as an in-run baseline) and of GatherBatch (uint8 -> float).
// Prints a fixed-width table with a units row and one JSON line per result.
// Correctness check: each permutation is verified; exit 1 on a wrong result.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <numeric>
#include <random>
#include <vector>

#include "runtime/data/image_dataset.h"
#include "runtime/data/sampler.h"

namespace {

using Clock = std::chrono::steady_clock;

double MedianMs(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

bool IsPermutation(std::vector<int64_t> v) {
  std::sort(v.begin(), v.end());
  for (size_t i = 0; i < v.size(); ++i)
    if (v[i] != static_cast<int64_t>(i)) return false;
  return true;
}

}  // namespace

int main() {
  using namespace lockstep::data;
  const int kReps = 21;
  int wrong = 0;
  std::printf("%-14s %10s %12s %12s %12s %7s\n", "op", "n", "ours", "baseline", "ratio", "#wrong");
  std::printf("%-14s %10s %12s %12s %12s %7s\n", "", "(items)", "(ms)", "(ms)", "(ours/base)", "");
  for (int64_t n : {10000, 55000, 1000000}) {
    std::vector<double> ours, base;
    int bad = 0;
    for (int r = 0; r < kReps; ++r) {
      auto t0 = Clock::now();
      std::vector<int64_t> order = ComputeEpochOrder(0, n, 1234, r, true);
      auto t1 = Clock::now();
      std::vector<int64_t> ref(static_cast<size_t>(n));
      std::iota(ref.begin(), ref.end(), 0);
      std::mt19937_64 gen(static_cast<uint64_t>(r));
      std::shuffle(ref.begin(), ref.end(), gen);
      auto t2 = Clock::now();
      ours.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      base.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
      if (!IsPermutation(order)) ++bad;
    }
    wrong += bad;
    double o = MedianMs(ours), b = MedianMs(base);
    std::printf("%-14s %10lld %12.3f %12.3f %12.2f %7d\n", "epoch_order", static_cast<long long>(n),
                o, b, o / b, bad);
    std::printf(
        "{\"bench\":\"data\",\"op\":\"epoch_order\",\"n\":%lld,\"ms\":%.4f,\"std_shuffle_ms\":%.4f,"
        "\"ratio\":%.3f,"
        "\"wrong\":%d}\n",
        static_cast<long long>(n), o, b, o / b, bad);
  }
  // GatherBatch of 256 random 28x28 samples; baseline: a plain memcpy of the same bytes.
  ImageDataset d;
  d.count = 60000;
  d.height = d.width = 28;
  d.num_classes = 10;
  d.pixels.resize(static_cast<size_t>(d.count * 784));
  for (size_t i = 0; i < d.pixels.size(); ++i)
    d.pixels[i] = static_cast<uint8_t>(i * 131 + (i >> 9));
  d.labels.assign(static_cast<size_t>(d.count), 3);
  const int64_t batch = 256;
  std::vector<int64_t> idx = ComputeEpochOrder(0, d.count, 7, 0, true);
  std::vector<float> out(static_cast<size_t>(batch * 784));
  std::vector<uint8_t> raw(static_cast<size_t>(batch * 784));
  std::vector<int32_t> labels(static_cast<size_t>(batch));
  std::vector<double> ours, base;
  int bad = 0;
  for (int r = 0; r < kReps; ++r) {
    const int64_t* p = idx.data() + r * batch;
    auto t0 = Clock::now();
    GatherBatch(d, p, batch, out.data(), labels.data());
    auto t1 = Clock::now();
    for (int64_t i = 0; i < batch; ++i)
      std::copy_n(d.pixels.data() + p[i] * 784, 784, raw.data() + i * 784);
    auto t2 = Clock::now();
    ours.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    base.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
    for (size_t e = 0; e < raw.size(); ++e)
      if (out[e] != static_cast<float>(raw[e]) / 255.0f) {
        ++bad;
        break;
      }
  }
  wrong += bad;
  double o = MedianMs(ours), b = MedianMs(base);
  std::printf("%-14s %10lld %12.3f %12.3f %12.2f %7d\n", "gather_batch",
              static_cast<long long>(batch), o, b, o / b, bad);
  std::printf(
      "{\"bench\":\"data\",\"op\":\"gather_batch\",\"n\":%lld,\"ms\":%.4f,\"memcpy_ms\":%.4f,"
      "\"ratio\":%.3f,"
      "\"wrong\":%d}\n",
      static_cast<long long>(batch), o, b, o / b, bad);
  std::printf("%s\n", wrong == 0 ? "OK" : "FAILED");
  return wrong == 0 ? 0 : 1;
}
