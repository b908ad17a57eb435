// Training-throughput benchmark: per model and batch size, samples/s, ms/step,
// achieved GFLOP/s (forward + backward FLOPs) and that as a fraction of the
// cblas_sgemm 2048^3 GFLOP/s measured in the same run; memory: the model's activation
// buffers (act_MiB: stored activations + gradient/working buffers), everything held
// through the backend after the timed steps (mem_MiB: parameters, gradients, optimiser
// state, activations, layers' saved activations and scratch, the transient arena), and
// the process's peak RSS.
// --precisions compares training.precision settings in the same run (FP32, BF16_GEMM,
// BF16: on the CPU, bf16 is emulated by rounding, so it costs time and saves only the
// activation bytes).
// Prints a fixed-width table and one JSON line per result. Never asserts on time.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "common/blas_env.h"
#include "common/sysinfo.h"
#include "kernels/cpu/gemm.h"
#include "training/trainer.h"

namespace lockstep {
namespace {

double MeasureSgemmGflops(int n, int reps) {
  std::vector<float> a(static_cast<size_t>(n) * n, 0.5f), b(a.size(), 0.25f), c(a.size(), 0.0f);
  kernels::cpu::Sgemm(false, false, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(),
                      n);  // warm-up
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    double t0 = NowSeconds();
    kernels::cpu::Sgemm(false, false, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    double dt = NowSeconds() - t0;
    best = std::max(best, 2.0 * n * n * static_cast<double>(n) / dt / 1e9);
  }
  return best;
}

struct Row {
  std::string model, precision;
  int64_t batch;
  double samples_per_sec, ms_per_step, gflops, fraction, activation_mb, backend_mb, peak_rss_mb;
};

}  // namespace
}  // namespace lockstep

int main(int argc, char** argv) {
  lockstep::EnsureBlasThreadTimeout(argv);  // measure what `lockstep train` runs
  using namespace lockstep;
  CLI::App app{"lockstep training-throughput benchmark"};
  std::string source_dir = LOCKSTEP_SOURCE_DIR;
  std::vector<std::string> models = {"mlp", "cnn"};
  std::vector<int64_t> batches = {32, 64, 128};
  std::vector<std::string> precisions = {"FP32"};
  int steps = 40, warmup = 5, threads = 0;
  app.add_option("--source-dir", source_dir, "Repository root (recipes/ lives there)");
  app.add_option("-m,--models", models, "Recipes to benchmark (names in recipes/)");
  app.add_option("-b,--batches", batches, "Global batch sizes")->check(CLI::PositiveNumber);
  app.add_option("-p,--precisions", precisions,
                 "training.precision values (FP32, BF16_GEMM, BF16)");
  app.add_option("-n,--steps", steps, "Timed steps per configuration")->check(CLI::PositiveNumber);
  app.add_option("-w,--warmup", warmup, "Untimed warm-up steps")->check(CLI::NonNegativeNumber);
  app.add_option("-t,--threads", threads, "BLAS threads (0 = all cores)")
      ->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);

  if (threads == 0) threads = OnlineCores();
  kernels::cpu::SetBlasThreads(threads);
  double peak = MeasureSgemmGflops(2048, 3);
  std::printf("# sgemm 2048^3 with %d thread(s): %.1f GFLOP/s (the ceiling below)\n", threads,
              peak);
  std::printf("%-8s %-9s %6s %12s %10s %10s %10s %10s %10s %10s\n", "model", "precision", "batch",
              "samples/s", "ms/step", "GFLOP/s", "of_sgemm", "act_MiB", "mem_MiB", "rss_MiB");
  std::printf("%-8s %-9s %6s %12s %10s %10s %10s %10s %10s %10s\n", "", "", "", "", "", "",
              "(ratio)", "", "(backend)", "(peak)");
  std::vector<Row> rows;
  for (const std::string& model : models) {
    for (int64_t batch : batches) {
      for (const std::string& precision : precisions) {
        TrainOptions o;
        o.recipe_path = source_dir + "/recipes/" + model + ".pbtxt";
        o.overrides = {"training.global_batch_size=" + std::to_string(batch),
                       "training.threads=" + std::to_string(threads),
                       "training.precision=" + precision};
        o.show_progress = false;
        auto t = Trainer::Create(o);
        if (!t.ok()) {
          std::fprintf(stderr, "%s\n", t.status().ToString().c_str());
          return 1;
        }
        Status s = (*t)->TrainSteps(warmup);
        double t0 = NowSeconds();
        if (s.ok()) s = (*t)->TrainSteps(steps);
        double dt = NowSeconds() - t0;
        if (!s.ok()) {
          std::fprintf(stderr, "%s\n", s.ToString().c_str());
          return 1;
        }
        Row r;
        r.model = model;
        r.precision = precision;
        r.batch = batch;
        r.samples_per_sec = static_cast<double>(batch) * steps / dt;
        r.ms_per_step = dt / steps * 1e3;
        r.gflops = (*t)->model().TrainingFlopsPerSample() * r.samples_per_sec / 1e9;
        r.fraction = r.gflops / peak;
        r.activation_mb = static_cast<double>((*t)->model().activation_bytes()) / (1 << 20);
        r.backend_mb =
            static_cast<double>((*t)->model().backend()->memory_stats().bytes_in_use) / (1 << 20);
        r.peak_rss_mb = PeakRssMiB();
        std::printf("%-8s %-9s %6lld %12.0f %10.2f %10.1f %10.3f %10.2f %10.2f %10.0f\n",
                    model.c_str(), precision.c_str(), static_cast<long long>(batch),
                    r.samples_per_sec, r.ms_per_step, r.gflops, r.fraction, r.activation_mb,
                    r.backend_mb, r.peak_rss_mb);
        std::fflush(stdout);
        rows.push_back(r);
      }
    }
  }
  for (const Row& r : rows) {
    std::printf(
        "{\"bench\":\"training\",\"model\":\"%s\",\"precision\":\"%s\",\"batch\":%lld,"
        "\"threads\":%d,\"samples_per_sec\":%.1f,\"ms_per_step\":%.3f,\"gflops\":%.2f,\"sgemm_peak_"
        "gflops\":%.2f,"
        "\"fraction_of_sgemm\":%.4f,\"activation_mb\":%.3f,\"backend_mb\":%.3f,\"peak_rss_mb\":%."
        "1f}\n",
        r.model.c_str(), r.precision.c_str(), static_cast<long long>(r.batch), threads,
        r.samples_per_sec, r.ms_per_step, r.gflops, peak, r.fraction, r.activation_mb, r.backend_mb,
        r.peak_rss_mb);
  }
  return 0;
}
