// bench_training_stall: what a checkpoint costs the training loop of the real
// Trainer, checkpoint.async=false vs true, on recipes/ models and on a synthetic
// ~100M-parameter MLP. One Trainer per (model, mode) on a fresh run dir under /tmp
// (deleted at the end); world size 1.
//   step      mean ms of --steps TrainSteps, no save in flight.
//   stall     per save, what the loop waits: the SaveCheckpoint call, plus the wait
//             that the next save would have had if it came --gap steps later (the
//             --gap steps run untimed for the stall, then FinishCheckpoints is timed:
//             it waits exactly as the next Submit would). Every measurement starts
//             with nothing in flight, so no persistence spills into the next one.
//             Median of --saves, after one untimed warm-up save per mode.
//   async/sync = stall_async / stall_sync (the goal is <= 10 %); stall/step =
//   stall / step.
// A second table splits the async stall: call = snapshot (the copy into staging)
// + trainer (building the metadata and slices); wait = the part of persist
// (the service's write, fsync and commit) that outlasted the --gap steps; cover =
// persist / step, the fewest steps between saves for no wait; overlap = ms/step of
// the --gap steps, during which an async save persists (contention for cores and
// memory bandwidth there is not in the stall). Correctness: every save must commit
// and the last one of each run must verify (checksums); exit 1 otherwise. Never
// asserts on time.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "checkpoints/checkpoint.h"
#include "training/trainer.h"

namespace lockstep {
namespace {

using Clock = std::chrono::steady_clock;

double MsSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

double Mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}

struct Plan {
  int warmup = 2, steps = 20, saves = 5, gap = 10;
};

struct BenchModel {
  std::string name, recipe_path;
  Plan plan;
};

struct ModeResult {
  int64_t params = 0, bytes = 0;
  double step_ms = 0, overlap_ms = 0;
  std::vector<double> stall_ms, call_ms, snapshot_ms, wait_ms, persist_ms;
};

// Flatten -> Dense h relu -> Dense h relu -> Dense 10 softmax on 784 inputs has
// h^2 + 796 h + 10 parameters; h is the smallest width reaching `params`.
std::string SyntheticRecipe(int64_t params, int64_t* width) {
  const double h = (-796.0 + std::sqrt(796.0 * 796.0 + 4.0 * static_cast<double>(params))) / 2;
  *width = static_cast<int64_t>(std::ceil(h));
  const std::string w = std::to_string(*width);
  const std::string hidden = "  layers { dense { units: " + w + " activation: RELU } }\n";
  const std::string description =
      "Flatten -> Dense " + w + " relu -> Dense " + w + " relu -> Dense 10 softmax";
  std::string r = "name: \"synthetic\"\n";
  r += "description: \"" + description + "\"\n";
  r += "model {\n  layers { flatten {} }\n" + hidden + hidden;
  r += "  layers { dense { units: 10 activation: SOFTMAX } }\n}\n";
  r += "data { dataset: \"fashion_mnist\" }\n";
  r += "loss: SPARSE_CATEGORICAL_CROSSENTROPY\n";
  r += "optimizer { kind: ADAM learning_rate: 0.0001 }\n";
  r += "training { global_batch_size: 32 epochs: 1 seed: 1 }\n";
  return r;
}

Result<ModeResult> RunMode(const BenchModel& m, bool async, int threads,
                           const std::string& run_dir) {
  TrainOptions o;
  o.recipe_path = m.recipe_path;
  // No save from the recipe's own triggers: TrainSteps never saves, and at_end is off.
  o.overrides = {std::string("checkpoint.async=") + (async ? "true" : "false"),
                 "checkpoint.at_end=false"};
  if (threads > 0) o.overrides.push_back("training.threads=" + std::to_string(threads));
  o.run_dir = run_dir;
  o.show_progress = false;
  o.resume = "none";
  LS_ASSIGN_OR_RETURN(std::unique_ptr<Trainer> t, Trainer::Create(o));
  if (!t->checkpoints_enabled())
    return FailedPreconditionError("checkpoints are off for " + m.name);
  ModeResult r;
  r.params = t->model().param_count();

  LS_RETURN_IF_ERROR(t->TrainSteps(m.plan.warmup));
  LS_RETURN_IF_ERROR(t->SaveCheckpoint("warm-up"));  // first-touch of staging, directories
  LS_RETURN_IF_ERROR(t->FinishCheckpoints());
  auto t0 = Clock::now();
  LS_RETURN_IF_ERROR(t->TrainSteps(m.plan.steps));
  r.step_ms = MsSince(t0) / m.plan.steps;

  double overlap_ms = 0;
  for (int i = 0; i < m.plan.saves; ++i) {
    t0 = Clock::now();
    LS_RETURN_IF_ERROR(t->SaveCheckpoint("bench"));
    const double call = MsSince(t0);
    t0 = Clock::now();
    LS_RETURN_IF_ERROR(t->TrainSteps(m.plan.gap));
    overlap_ms += MsSince(t0);
    t0 = Clock::now();
    LS_RETURN_IF_ERROR(t->FinishCheckpoints());
    const double wait = MsSince(t0);
    r.call_ms.push_back(call);
    r.wait_ms.push_back(wait);
    r.stall_ms.push_back(call + wait);
    r.snapshot_ms.push_back(t->checkpoint_service()->stats().last_snapshot_ms);
    r.persist_ms.push_back(t->checkpoint_service()->stats().last_persist_ms);
  }
  r.overlap_ms = m.plan.gap > 0 ? overlap_ms / (m.plan.gap * m.plan.saves) : 0;

  const ckpt::ServiceStats stats = t->checkpoint_service()->stats();
  r.bytes = stats.bytes;
  if (stats.failures != 0 || stats.saves != m.plan.saves + 1) {
    return InternalError(m.name + ": " + std::to_string(stats.saves) + " of " +
                         std::to_string(m.plan.saves + 1) +
                         " saves committed: " + stats.last_error);
  }
  LS_RETURN_IF_ERROR(ckpt::VerifyCheckpoint(stats.last_committed_dir, /*checksums=*/true)
                         .WithContext(m.name + " " + (async ? "async" : "sync")));
  return r;
}

struct Row {
  std::string model;
  Plan plan;
  ModeResult sync, async;
};

double StepMs(const Row& row) { return (row.sync.step_ms + row.async.step_ms) / 2; }

const char* kStallColumns = "%-10s %8s %9s %9s %11s %11s %7s %8s %8s\n";
const char* kSplitColumns = "%-10s %7s %9s %9s %9s %9s %10s %7s %9s %9s\n";

void PrintStall(const Row& row) {
  const double step = StepMs(row);
  const double s = Median(row.sync.stall_ms), a = Median(row.async.stall_ms);
  std::printf("%-10s %8.2f %9.1f %9.2f %11.2f %11.3f %7.2f %8.1f %8.2f\n", row.model.c_str(),
              row.sync.params / 1e6, row.sync.bytes / 1e6, step, s, a, 100 * a / s, 100 * s / step,
              100 * a / step);
}

void PrintSplit(const Row& row) {
  const ModeResult& a = row.async;
  const double call = Median(a.call_ms), snapshot = Median(a.snapshot_ms);
  const double persist = Median(a.persist_ms);
  std::printf("%-10s %7d %9.3f %9.3f %9.3f %9.3f %10.1f %7.1f %9.2f %9.2f\n", row.model.c_str(),
              row.plan.gap, call, snapshot, call - snapshot, Median(a.wait_ms), persist,
              persist / StepMs(row), row.sync.overlap_ms, a.overlap_ms);
}

void PrintJson(const Row& row) {
  const ModeResult &s = row.sync, &a = row.async;
  const double step = StepMs(row);
  std::printf(
      "{\"bench\":\"training_stall\",\"model\":\"%s\",\"params\":%lld,\"checkpoint_bytes\":%lld,"
      "\"steps\":%d,\"saves\":%d,\"gap_steps\":%d,\"step_ms\":%.3f,\"step_ms_sync\":%.3f,"
      "\"step_ms_async\":%.3f,\"stall_sync_ms\":%.3f,\"stall_async_ms\":%.3f,"
      "\"stall_sync_mean_ms\":%.3f,\"stall_async_mean_ms\":%.3f,\"call_async_ms\":%.3f,"
      "\"snapshot_async_ms\":%.3f,\"wait_async_ms\":%.3f,\"persist_sync_ms\":%.3f,\"persist_async_"
      "ms\":%.3f,"
      "\"overlap_step_ms_sync\":%.3f,\"overlap_step_ms_async\":%.3f,\"async_over_sync\":%.5f,"
      "\"sync_stall_over_step\":%.5f,\"async_stall_over_step\":%.5f}\n",
      row.model.c_str(), static_cast<long long>(s.params), static_cast<long long>(s.bytes),
      row.plan.steps, row.plan.saves, row.plan.gap, step, s.step_ms, a.step_ms, Median(s.stall_ms),
      Median(a.stall_ms), Mean(s.stall_ms), Mean(a.stall_ms), Median(a.call_ms),
      Median(a.snapshot_ms), Median(a.wait_ms), Median(s.persist_ms), Median(a.persist_ms),
      s.overlap_ms, a.overlap_ms, Median(a.stall_ms) / Median(s.stall_ms),
      Median(s.stall_ms) / step, Median(a.stall_ms) / step);
}

int64_t ParseCount(const std::string& text) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  const std::string unit = end;
  const double mult = unit == "K" ? 1e3 : unit == "M" ? 1e6 : unit == "G" ? 1e9 : 1;
  if (!(v > 0) || !(unit.empty() || unit == "K" || unit == "M" || unit == "G"))
    throw CLI::ValidationError("--synthetic-params", "not a count: " + text);
  return static_cast<int64_t>(v * mult);
}

// Removes the benchmark's scratch directory however main returns.
struct ScratchDir {
  std::string path;
  ~ScratchDir() {
    std::error_code ec;
    if (!path.empty()) std::filesystem::remove_all(path, ec);
  }
};

}  // namespace
}  // namespace lockstep

int main(int argc, char** argv) {
  using namespace lockstep;
  CLI::App app{"lockstep training stall of checkpoints: checkpoint.async=false vs true"};
  std::string source_dir = LOCKSTEP_SOURCE_DIR, tmp_root = "/tmp", synthetic_params = "100M";
  std::vector<std::string> models = {"cnn", "mlp", "synthetic"};
  Plan small, big{1, 2, 3, 8};
  int threads = 0;
  app.add_option("--source-dir", source_dir, "Repository root (recipes/ lives there)");
  app.add_option("-m,--models", models, "Recipes in recipes/, and/or 'synthetic'")
      ->capture_default_str();
  app.add_option("-w,--warmup", small.warmup, "Untimed steps first")->check(CLI::NonNegativeNumber);
  app.add_option("-n,--steps", small.steps, "Steps timed for the step time")
      ->check(CLI::PositiveNumber);
  app.add_option("-s,--saves", small.saves, "Timed saves per mode")->check(CLI::PositiveNumber);
  app.add_option("-g,--gap", small.gap, "Steps between a save and the next (the wait window)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--synthetic-params", synthetic_params, "Parameters of 'synthetic' (K/M/G)")
      ->capture_default_str();
  app.add_option("--synthetic-steps", big.steps, "Steps timed for 'synthetic'")
      ->check(CLI::PositiveNumber);
  app.add_option("--synthetic-saves", big.saves, "Timed saves per mode for 'synthetic'")
      ->check(CLI::PositiveNumber);
  app.add_option("--synthetic-gap", big.gap, "--gap for 'synthetic'")
      ->check(CLI::NonNegativeNumber);
  app.add_option("-t,--threads", threads, "Compute threads (0: the recipe's, all cores)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--tmp", tmp_root, "Where the scratch run dirs go (removed at the end)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  int64_t param_target = 0;
  try {
    param_target = ParseCount(synthetic_params);
  } catch (const CLI::Error& e) {
    return app.exit(e);
  }

  ScratchDir scratch;
  std::string pattern = tmp_root + "/lockstep-stall-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    std::perror(("mkdtemp " + pattern).c_str());
    return 1;
  }
  scratch.path = pattern;

  std::vector<BenchModel> plan;
  for (const std::string& name : models) {
    if (name != "synthetic") {
      plan.push_back({name, source_dir + "/recipes/" + name + ".pbtxt", small});
      continue;
    }
    int64_t width = 0;
    const std::string path = scratch.path + "/synthetic.pbtxt";
    std::ofstream(path) << SyntheticRecipe(param_target, &width);
    plan.push_back({name, path, big});
    std::printf("# synthetic: Flatten -> Dense %lld -> Dense %lld -> Dense 10 (target %s params)\n",
                static_cast<long long>(width), static_cast<long long>(width),
                synthetic_params.c_str());
  }
  std::vector<Row> rows;
  int failed = 0;
  for (const BenchModel& m : plan) {
    Row row{m.name, m.plan, {}, {}};
    bool ok = true;
    for (bool async : {false, true}) {
      const std::string run_dir = scratch.path + "/" + m.name + (async ? "-async" : "-sync");
      Result<ModeResult> r = RunMode(m, async, threads, run_dir);
      std::error_code ec;
      std::filesystem::remove_all(run_dir, ec);  // before the next mode: disk, page cache
      if (!r.ok()) {
        std::fprintf(stderr, "%s %s: %s\n", m.name.c_str(), async ? "async" : "sync",
                     r.status().ToString().c_str());
        ok = false;
        break;
      }
      (async ? row.async : row.sync) = std::move(*r);
    }
    if (!ok) {
      ++failed;
      continue;
    }
    std::fprintf(stderr, "# %s done\n", m.name.c_str());
    rows.push_back(row);
  }
  std::printf("# stall = SaveCheckpoint call + its wait at a save --gap steps later; medians\n");
  std::printf(kStallColumns, "model", "params", "ckpt", "step", "stall_sync", "stall_async",
              "as/sy", "sy/step", "as/step");
  std::printf(kStallColumns, "", "(M)", "(MB)", "(ms)", "(ms)", "(ms)", "(%)", "(%)", "(%)");
  for (const Row& row : rows) PrintStall(row);
  std::printf("# the async stall split up (medians); cover = persist / step\n");
  std::printf(kSplitColumns, "model", "gap", "call", "snapshot", "trainer", "wait", "persist",
              "cover", "ovl_sync", "ovl_async");
  std::printf(kSplitColumns, "", "(steps)", "(ms)", "(ms)", "(ms)", "(ms)", "(ms)", "(steps)",
              "(ms/step)", "(ms/step)");
  for (const Row& row : rows) PrintSplit(row);
  for (const Row& row : rows) PrintJson(row);
  for (const Row& row : rows) {
    const double ratio = Median(row.async.stall_ms) / Median(row.sync.stall_ms);
    std::printf("# %-10s async stall = %.2f%% of sync: goal <= 10%% %s\n", row.model.c_str(),
                100 * ratio, ratio <= 0.10 ? "met" : "NOT met");
  }
  std::printf("%s\n", failed == 0 ? "OK: every save committed and the last of each run verified"
                                  : "FAILED: a run did not complete (see stderr)");
  return failed == 0 ? 0 : 1;
}
