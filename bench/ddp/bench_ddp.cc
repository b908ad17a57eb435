// Data-parallel scaling benchmark, run under mpirun (one row per run, printed by
// rank 0): samples/s and ms/step for a recipe at this world size, with a fixed
// global batch or a fixed per-rank batch, and how much of the gradient
// all-reduce is hidden behind backward: hidden = 1 - after_ready / alone, where
// `alone` is the time the same bucketed all-reduce takes with nothing else
// running (measured in the same run) and `after_ready` the time a rank still
// waited for its buckets after the LAST rank had finished backward. The wait
// before that moment is load imbalance (a slower rank), not communication, and
// is shown apart (`imbalance`); `exposed` is the whole wait. The ranks' clocks
// are compared directly, so run it on one node. bench/ddp/run_scaling.sh sweeps
// 1, 2, 4 ranks.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "common/blas_env.h"
#include "common/sysinfo.h"
#include "training/trainer.h"

int main(int argc, char** argv) {
  lockstep::EnsureBlasThreadTimeout(argv);  // measure what `lockstep train` runs
  using namespace lockstep;
  CLI::App app{"lockstep data-parallel scaling benchmark (run under mpirun)"};
  std::string recipe = std::string(LOCKSTEP_SOURCE_DIR) + "/recipes/cnn.pbtxt";
  std::string mode = "fixed-global";
  int64_t batch = 64;
  int steps = 30, warmup = 3;
  bool overlap = true, header = false;
  double bucket_mb = 25;
  app.add_option("-c,--config", recipe, "Recipe");
  app.add_option("-m,--mode", mode, "fixed-global: global batch = --batch; fixed-per-rank: global = --batch x ranks")
      ->check(CLI::IsMember({"fixed-global", "fixed-per-rank"}));
  app.add_option("-b,--batch", batch, "Batch size (see --mode)")->check(CLI::PositiveNumber);
  app.add_option("-n,--steps", steps, "Timed steps")->check(CLI::PositiveNumber);
  app.add_option("-w,--warmup", warmup, "Untimed steps")->check(CLI::NonNegativeNumber);
  app.add_option("--overlap", overlap, "Start bucket all-reduces during backward (true/false)");
  app.add_option("--bucket-mb", bucket_mb, "Gradient bucket size in MiB")->check(CLI::PositiveNumber);
  app.add_flag("--header", header, "Print the table header first");
  CLI11_PARSE(app, argc, argv);

  auto world = comm::DiscoverWorld();
  int world_size = world.ok() ? world->world_size : 1;
  int64_t global = mode == "fixed-global" ? batch : batch * world_size;
  TrainOptions o;
  o.recipe_path = recipe;
  o.show_progress = false;
  o.overrides = {"training.global_batch_size=" + std::to_string(global),
                 std::string("distributed.overlap=") + (overlap ? "true" : "false"),
                 "distributed.bucket_size_mb=" + std::to_string(bucket_mb)};
  auto t = Trainer::Create(o);
  if (!t.ok()) {
    std::fprintf(stderr, "%s\n", t.status().ToString().c_str());
    return 1;
  }
  Trainer& tr = **t;
  Status s = tr.TrainSteps(warmup);
  tr.ResetReducerStats();
  tr.RecordReducerFinishWindows();
  comm::Communicator& c = tr.communicator();
  (void)c.BarrierSync({"bench start"});
  double t0 = NowSeconds();
  if (s.ok()) s = tr.TrainSteps(steps);
  double dt = NowSeconds() - t0;
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  double exposed_ms = tr.reducer_stats().exposed_wait_seconds / steps * 1e3;
  // Every rank's Finish windows, step by step: [entered, returned] x steps.
  const std::vector<FinishWindow>& windows = tr.reducer_stats().finish_windows;
  std::vector<double> mine;
  for (const FinishWindow& w : windows) mine.insert(mine.end(), {w.entered, w.returned});
  mine.resize(static_cast<size_t>(2 * steps), 0.0);
  std::vector<double> all(mine.size() * static_cast<size_t>(world_size));
  s = c.AllGatherSync(mine.data(), all.data(), static_cast<int64_t>(mine.size()), comm::DataType::kFloat64,
                      {"bench finish windows"});
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  double after_ready = 0, imbalance = 0;
  for (int step = 0; step < steps; ++step) {
    auto at = [&](int rank, int which) { return all[static_cast<size_t>(rank) * mine.size() + 2 * step + which]; };
    double last_entered = 0;
    for (int r = 0; r < world_size; ++r) last_entered = std::max(last_entered, at(r, 0));
    for (int r = 0; r < world_size; ++r) {
      after_ready += std::max(0.0, at(r, 1) - last_entered);
      imbalance += last_entered - at(r, 0);
    }
  }
  const double per_rank_step_ms = 1e3 / (static_cast<double>(steps) * world_size);
  const double after_ready_ms = after_ready * per_rank_step_ms;
  const double imbalance_ms = imbalance * per_rank_step_ms;

  // The same bucketed all-reduce with nothing else running.
  GradientReducer alone(&c, tr.model().grads().data<float>(), tr.model().param_count(),
                        ReducerOptions{static_cast<int64_t>(bucket_mb * (1 << 20) / 4), false});
  (void)c.BarrierSync({"bench alone"});
  double a0 = NowSeconds();
  for (int i = 0; i < steps; ++i) {
    alone.BeginStep(i);
    s = alone.Finish();
    if (!s.ok()) return 1;
  }
  double alone_ms = (NowSeconds() - a0) / steps * 1e3;
  double hidden = world_size > 1 && alone_ms > 0 ? std::max(0.0, 1.0 - after_ready_ms / alone_ms) : 0.0;
  if (tr.rank() == 0) {
    if (header) {
      std::printf("%-14s %5s %7s %8s %7s %11s %9s %9s %9s %9s %9s %7s %8s\n", "mode", "ranks", "global", "per_rank",
                  "bucket", "samples/s", "ms/step", "ar_alone", "exposed", "imbalance", "aft_ready", "hidden",
                  "rss_MiB");
      std::printf("%-14s %5s %7s %8s %7s %11s %9s %9s %9s %9s %9s %7s %8s\n", "", "", "(batch)", "(batch)", "(MiB)", "",
                  "", "(ms)", "(ms)", "(ms)", "(ms)", "(frac)", "(rank0)");
    }
    double sps = static_cast<double>(global) * steps / dt;
    std::printf("%-14s %5d %7lld %8lld %7.2f %11.0f %9.2f %9.2f %9.2f %9.2f %9.2f %7.2f %8.0f\n", mode.c_str(),
                world_size, static_cast<long long>(global), static_cast<long long>(global / world_size), bucket_mb,
                sps, dt / steps * 1e3, alone_ms, exposed_ms, imbalance_ms, after_ready_ms, hidden, PeakRssMiB());
    std::printf("{\"bench\":\"ddp_scaling\",\"mode\":\"%s\",\"ranks\":%d,\"global_batch\":%lld,\"overlap\":%s,"
                "\"bucket_mb\":%.3f,\"samples_per_sec\":%.1f,\"ms_per_step\":%.3f,\"allreduce_alone_ms\":%.3f,"
                "\"allreduce_exposed_ms\":%.3f,\"imbalance_ms\":%.3f,\"allreduce_after_ready_ms\":%.3f,"
                "\"hidden_fraction\":%.3f,\"optimizer_state_bytes_per_rank\":%lld,\"peak_rss_mb\":%.1f}\n",
                mode.c_str(), world_size, static_cast<long long>(global), overlap ? "true" : "false", bucket_mb, sps,
                dt / steps * 1e3, alone_ms, exposed_ms, imbalance_ms, after_ready_ms, hidden,
                static_cast<long long>(tr.optimizer_state_bytes()), PeakRssMiB());
  }
  return 0;
}
