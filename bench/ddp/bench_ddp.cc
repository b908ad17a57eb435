// Data-parallel scaling benchmark, run under mpirun (one row per run, printed by
// rank 0): samples/s and ms/step for a recipe at this world size, with a fixed
// global batch or a fixed per-rank batch, and how much of the gradient all-reduce
// is hidden behind backward.
//
// after_ready is the time a rank still waits for its buckets after the LAST rank
// has finished backward (the wait before that moment is load imbalance between
// ranks, shown apart as `imbalance`; `exposed` is the whole wait). With --overlap
// true the run alternates blocks of steps with buckets started during backward and
// blocks with every bucket started after it (serial), so both are measured under
// the same drift: hidden = 1 - after_ready(overlap) / after_ready(serial). The
// serial run is the right baseline, not the all-reduce alone (`ar_alone`, shown
// for reference): when ranks finish backward at different times the early ranks'
// all-reduce is already waiting, so even a serial all-reduce ends sooner after the
// last rank than one started by all ranks at once. The ranks' clocks are compared
// directly, so run it on one node. bench/ddp/run_scaling.sh sweeps 1, 2, 4 ranks.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "common/blas_env.h"
#include "common/sysinfo.h"
#include "training/trainer.h"

namespace lockstep {
namespace {

// One reducer mode's blocks, summed: wall time, steps, and (summed over ranks and
// steps, seconds) the wait after the last rank finished backward and the imbalance.
struct ModeStats {
  double seconds = 0, exposed = 0, after_ready = 0, imbalance = 0;
  int steps = 0;
  // A sum over ranks and steps as milliseconds per rank and step.
  double PerRankStepMs(double sum, int world_size) const {
    return sum * 1e3 / (static_cast<double>(steps) * world_size);
  }
};

// `steps` training steps with the reducer's overlap set to `overlap`, added to *m.
Status RunBlock(Trainer& tr, comm::Communicator& c, bool overlap, int steps, int world_size, ModeStats* m) {
  tr.SetReducerOverlap(overlap);
  tr.ResetReducerStats();
  tr.RecordReducerFinishWindows();
  LS_RETURN_IF_ERROR(c.BarrierSync({"bench block"}));
  const double t0 = NowSeconds();
  LS_RETURN_IF_ERROR(tr.TrainSteps(steps));
  m->seconds += NowSeconds() - t0;
  m->steps += steps;
  m->exposed += tr.reducer_stats().exposed_wait_seconds;
  // Every rank's Finish windows, step by step: [entered, returned] x steps.
  std::vector<double> mine;
  for (const FinishWindow& w : tr.reducer_stats().finish_windows) mine.insert(mine.end(), {w.entered, w.returned});
  mine.resize(static_cast<size_t>(2 * steps), 0.0);
  std::vector<double> all(mine.size() * static_cast<size_t>(world_size));
  LS_RETURN_IF_ERROR(c.AllGatherSync(mine.data(), all.data(), static_cast<int64_t>(mine.size()),
                                     comm::DataType::kFloat64, {"bench finish windows"}));
  for (int step = 0; step < steps; ++step) {
    auto at = [&](int rank, int which) { return all[static_cast<size_t>(rank) * mine.size() + 2 * step + which]; };
    double last_entered = 0;
    for (int r = 0; r < world_size; ++r) last_entered = std::max(last_entered, at(r, 0));
    for (int r = 0; r < world_size; ++r) {
      m->after_ready += std::max(0.0, at(r, 1) - last_entered);
      m->imbalance += last_entered - at(r, 0);
    }
  }
  return Status::Ok();
}

}  // namespace
}  // namespace lockstep

int main(int argc, char** argv) {
  lockstep::EnsureBlasThreadTimeout(argv);  // measure what `lockstep train` runs
  using namespace lockstep;
  CLI::App app{"lockstep data-parallel scaling benchmark (run under mpirun)"};
  std::string recipe = std::string(LOCKSTEP_SOURCE_DIR) + "/recipes/cnn.pbtxt";
  std::string mode = "fixed-global";
  int64_t batch = 64;
  int steps = 30, warmup = 3, rounds = 3;
  bool overlap = true, header = false;
  double bucket_mb = 25;
  app.add_option("-c,--config", recipe, "Recipe");
  app.add_option("-m,--mode", mode, "fixed-global: global batch = --batch; fixed-per-rank: global = --batch x ranks")
      ->check(CLI::IsMember({"fixed-global", "fixed-per-rank"}));
  app.add_option("-b,--batch", batch, "Batch size (see --mode)")->check(CLI::PositiveNumber);
  app.add_option("-n,--steps", steps, "Timed steps")->check(CLI::PositiveNumber);
  app.add_option("-w,--warmup", warmup, "Untimed steps")->check(CLI::NonNegativeNumber);
  app.add_option("-r,--rounds", rounds, "Alternating serial/overlap blocks the timed steps are split into")
      ->check(CLI::PositiveNumber);
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
  comm::Communicator& c = tr.communicator();
  // Blocks alternate serial / overlap (only serial when --overlap false).
  rounds = std::min(rounds, steps);
  ModeStats serial, overlapped;
  for (int round = 0; s.ok() && round < rounds; ++round) {
    const int block = steps / rounds + (round < steps % rounds ? 1 : 0);
    s = RunBlock(tr, c, false, block, world_size, &serial);
    if (s.ok() && overlap) s = RunBlock(tr, c, true, block, world_size, &overlapped);
  }
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  const ModeStats& shown = overlap ? overlapped : serial;
  const double exposed_ms = shown.exposed / shown.steps * 1e3;
  const double after_ready_ms = shown.PerRankStepMs(shown.after_ready, world_size);
  const double imbalance_ms = shown.PerRankStepMs(shown.imbalance, world_size);
  const double after_serial_ms = serial.PerRankStepMs(serial.after_ready, world_size);
  const double hidden = overlap && world_size > 1 && after_serial_ms > 0
                            ? std::max(0.0, 1.0 - after_ready_ms / after_serial_ms)
                            : 0.0;
  const double dt = shown.seconds;

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
  if (tr.rank() == 0) {
    if (header) {
      std::printf("%-14s %5s %7s %8s %7s %11s %9s %9s %9s %9s %9s %10s %7s %8s\n", "mode", "ranks", "global",
                  "per_rank", "bucket", "samples/s", "ms/step", "ar_alone", "exposed", "imbalance", "aft_ready",
                  "aft_serial", "hidden", "rss_MiB");
      std::printf("%-14s %5s %7s %8s %7s %11s %9s %9s %9s %9s %9s %10s %7s %8s\n", "", "", "(batch)", "(batch)",
                  "(MiB)", "", "", "(ms)", "(ms)", "(ms)", "(ms)", "(ms)", "(frac)", "(rank0)");
    }
    double sps = static_cast<double>(global) * shown.steps / dt;
    std::printf("%-14s %5d %7lld %8lld %7.2f %11.0f %9.2f %9.2f %9.2f %9.2f %9.2f %10.2f %7.2f %8.0f\n",
                mode.c_str(), world_size, static_cast<long long>(global), static_cast<long long>(global / world_size),
                bucket_mb, sps, dt / shown.steps * 1e3, alone_ms, exposed_ms, imbalance_ms, after_ready_ms,
                after_serial_ms, hidden, PeakRssMiB());
    std::printf("{\"bench\":\"ddp_scaling\",\"mode\":\"%s\",\"ranks\":%d,\"global_batch\":%lld,\"overlap\":%s,"
                "\"bucket_mb\":%.3f,\"samples_per_sec\":%.1f,\"ms_per_step\":%.3f,\"allreduce_alone_ms\":%.3f,"
                "\"allreduce_exposed_ms\":%.3f,\"imbalance_ms\":%.3f,\"allreduce_after_ready_ms\":%.3f,"
                "\"allreduce_after_ready_serial_ms\":%.3f,\"hidden_fraction\":%.3f,\"optimizer_state_bytes_per_rank\":%lld,\"peak_rss_mb\":%.1f}\n",
                mode.c_str(), world_size, static_cast<long long>(global), overlap ? "true" : "false", bucket_mb, sps,
                dt / shown.steps * 1e3, alone_ms, exposed_ms, imbalance_ms, after_ready_ms, after_serial_ms, hidden,
                static_cast<long long>(tr.optimizer_state_bytes()), PeakRssMiB());
  }
  return 0;
}
