// bench_kernels_cpu: sgemm 2048^3 GFLOP/s and the CNN recipe's conv layers
// (forward, backward-data, backward-filter, im2col included) as a fraction of
// that sgemm rate, all measured in one run. Prints a table and JSON lines.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/conv.h"
#include "kernels/cpu/gemm.h"

namespace lockstep::kernels::cpu {
namespace {

using Clock = std::chrono::steady_clock;

// Best-of-iters seconds for f (after one warm-up call); the minimum is the
// least noisy estimate on a shared machine.
double BestSeconds(int iters, const std::function<void()>& f) {
  f();
  double best = 1e30;
  for (int i = 0; i < iters; ++i) {
    const auto t0 = Clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return best;
}

std::vector<float> RandomVector(size_t n, std::mt19937* gen) {
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>((*gen)() >> 8) * (1.0f / 16777216.0f) - 0.5f;
  return v;
}

struct Row {
  std::string name;
  double gflop, seconds;
};

void Print(const Row& r, double peak) {
  const double rate = r.gflop / r.seconds;
  std::printf("%-26s %10.2f %10.3f %10.1f %9.3f\n", r.name.c_str(), r.gflop * 1e3, r.seconds * 1e3,
              rate, rate / peak);
}

void PrintJson(const Row& r, double peak, int threads) {
  const double rate = r.gflop / r.seconds;
  std::printf(
      "{\"bench\":\"kernels_cpu\",\"op\":\"%s\",\"mflop\":%.3f,\"ms\":%.4f,\"gflops\":%.2f,"
      "\"fraction_of_sgemm\":%.4f,\"blas_threads\":%d}\n",
      r.name.c_str(), r.gflop * 1e3, r.seconds * 1e3, rate, rate / peak, threads);
}

int Main(int argc, char** argv) {
  CLI::App app{"CPU kernel benchmark: sgemm peak vs conv layers of the CNN recipe"};
  int iters = 10, threads = 0, gemm_n = 2048, batch = 64;
  app.add_option("-n,--iters", iters, "timed repetitions per op (best is reported)")
      ->check(CLI::PositiveNumber);
  app.add_option("-t,--threads", threads, "OpenBLAS threads (0: leave the default)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("-g,--gemm-size", gemm_n, "m = n = k of the reference sgemm")
      ->check(CLI::PositiveNumber);
  app.add_option("-b,--batch", batch, "batch size of the conv layers")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  if (threads > 0) SetBlasThreads(threads);
  threads = BlasThreads();

  std::mt19937 gen(2024);
  std::vector<Row> rows;
  {
    const size_t nn = static_cast<size_t>(gemm_n) * gemm_n;
    std::vector<float> a = RandomVector(nn, &gen), b = RandomVector(nn, &gen), c(nn);
    const double s = BestSeconds(std::max(3, iters / 3), [&] {
      Sgemm(false, false, gemm_n, gemm_n, gemm_n, 1.0f, a.data(), gemm_n, b.data(), gemm_n, 0.0f,
            c.data(), gemm_n);
    });
    rows.push_back({"sgemm_" + std::to_string(gemm_n), 2.0 * gemm_n * gemm_n * double(gemm_n) * 1e-9, s});
  }
  const double peak = rows[0].gflop / rows[0].seconds;

  struct Layer {
    const char* name;
    Conv2dShape s;
  };
  std::vector<Layer> layers(2);
  layers[0].name = "conv1_28x28x1_32";
  layers[0].s.in_h = layers[0].s.in_w = 28;
  layers[0].s.in_c = 1;
  layers[0].s.out_c = 32;
  layers[1].name = "conv2_13x13x32_64";
  layers[1].s.in_h = layers[1].s.in_w = 13;
  layers[1].s.in_c = 32;
  layers[1].s.out_c = 64;
  double total_flop = 0.0, total_s = 0.0;
  for (Layer& l : layers) {
    Conv2dShape& s = l.s;
    s.batch = batch;
    s.kernel_h = s.kernel_w = 3;
    std::vector<float> x = RandomVector(s.batch * s.in_h * s.in_w * s.in_c, &gen);
    std::vector<float> w = RandomVector(s.col_cols() * s.out_c, &gen);
    std::vector<float> y(s.col_rows() * s.out_c), dy = RandomVector(y.size(), &gen);
    std::vector<float> dx(x.size()), dw(w.size()), ws(Conv2dWorkspaceFloats(s));
    const double gflop = 2.0 * s.col_rows() * s.col_cols() * s.out_c * 1e-9;
    const std::string base = l.name;
    Row f{base + "_fwd", gflop,
          BestSeconds(iters, [&] { Conv2dForward(s, x.data(), w.data(), y.data(), ws.data()); })};
    Row bd{base + "_bwd_data", gflop, BestSeconds(iters, [&] {
             Conv2dBackwardData(s, dy.data(), w.data(), dx.data(), ws.data());
           })};
    Row bf{base + "_bwd_filter", gflop, BestSeconds(iters, [&] {
             Conv2dBackwardFilter(s, x.data(), dy.data(), 0.0f, dw.data(), ws.data());
           })};
    for (const Row& r : {f, bd, bf}) {
      rows.push_back(r);
      total_flop += r.gflop;
      total_s += r.seconds;
    }
  }
  rows.push_back({"cnn_convs_total", total_flop, total_s});

  std::printf("# OpenBLAS threads: %d, conv batch %d, best of %d\n", threads, batch, iters);
  std::printf("%-26s %10s %10s %10s %9s\n", "op", "work", "time", "rate", "of_sgemm");
  std::printf("%-26s %10s %10s %10s %9s\n", "", "MFLOP", "ms", "GFLOP/s", "fraction");
  for (const Row& r : rows) Print(r, peak);
  for (const Row& r : rows) PrintJson(r, peak, threads);
  return 0;
}

}  // namespace
}  // namespace lockstep::kernels::cpu

int main(int argc, char** argv) { return lockstep::kernels::cpu::Main(argc, argv); }
