// Language-model throughput benchmark, run under mpirun for more than one rank:
// per character-level recipe (LSTM, transformer), global tokens/s
// (steps x global_batch x sequence_length / time), ms/step, parameters and the
// peak RSS of the largest rank; plus the add-one bigram baseline's validation
// cross-entropy on exactly the targets the recipes evaluate (and the 25%-better
// threshold they must reach), computed in the same run. Rank 0 prints a table
// and one JSON line per result. Never asserts on time.
#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "common/blas_env.h"
#include "common/sysinfo.h"
#include "kernels/cpu/gemm.h"
#include "runtime/comm/mpi_runtime.h"
#include "runtime/comm/world.h"
#include "runtime/data/sequence_sampler.h"
#include "runtime/data/text_dataset.h"
#include "training/trainer.h"

namespace lockstep {
namespace {

struct Row {
  std::string model;
  int ranks = 1, threads = 1;
  int64_t params = 0, global_batch = 0, seq_len = 0, vocab = 0;
  double tokens_per_sec = 0, ms_per_step = 0, peak_rss_mb = 0;
};

struct Bigram {
  double nats = 0;
  int64_t predictions = 0, vocab = 0;
};

// The baseline on the recipe's own split: counted over the training range, scored
// over the span the validation windows cover (ValidationCoverage), so its targets
// are exactly those Trainer::Evaluate(0) scores.
Result<Bigram> BigramBaseline(const LoadedRecipe& recipe) {
  const config::Recipe& r = recipe.recipe;
  const std::string path = r.data().path().empty() ? data::kDefaultTextCorpus : r.data().path();
  const int64_t seq_len = r.data().sequence_length();
  const double fraction = r.data().has_validation_fraction() ? r.data().validation_fraction() : 0.1;
  LS_ASSIGN_OR_RETURN(data::TextDataset text, data::TextDataset::Load(path));
  LS_ASSIGN_OR_RETURN(data::TextSplit split, data::SplitByPosition(text.size(), fraction, seq_len + 1));
  data::IndexRange eval = data::ValidationCoverage(split.validation, seq_len);
  Bigram b;
  b.vocab = text.vocab.size();
  b.predictions = eval.size() - 1;
  b.nats = data::BigramCrossEntropy(text.tokens, b.vocab, split.train, eval);
  return b;
}

}  // namespace
}  // namespace lockstep

int main(int argc, char** argv) {
  lockstep::EnsureBlasThreadTimeout(argv);  // measure what `lockstep train` runs
  using namespace lockstep;
  CLI::App app{"lockstep language-model throughput benchmark (run under mpirun for >1 rank)"};
  std::string source_dir = LOCKSTEP_SOURCE_DIR;
  std::vector<std::string> models = {"charlm-lstm", "charlm-transformer"};
  int steps = 20, warmup = 3, threads = 0;
  bool header = true;
  app.add_option("--source-dir", source_dir, "Repository root (recipes/ lives there)");
  app.add_option("-m,--models", models, "Recipes to benchmark (names in recipes/)");
  app.add_option("-n,--steps", steps, "Timed steps per model")->check(CLI::PositiveNumber);
  app.add_option("-w,--warmup", warmup, "Untimed warm-up steps")->check(CLI::NonNegativeNumber);
  app.add_option("-t,--threads", threads, "BLAS threads per rank (0 = the node's cores / local ranks)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--header", header, "Print the table header (true/false)");
  CLI11_PARSE(app, argc, argv);

  // Several Trainers run one after another in this process; MPI cannot be
  // re-initialised once the first one's communicator finalises it, so hold the
  // runtime for the whole benchmark.
  std::shared_ptr<comm::MpiRuntime> mpi;
  auto world = comm::DiscoverWorld();
  if (world.ok() && world->source == "mpi") {
    auto rt = comm::MpiRuntime::Acquire();
    if (!rt.ok()) {
      std::fprintf(stderr, "%s\n", rt.status().ToString().c_str());
      return 1;
    }
    mpi = *rt;
  }

  std::vector<Row> rows;
  Bigram bigram;
  bool have_bigram = false;
  for (const std::string& model : models) {
    TrainOptions o;
    o.recipe_path = source_dir + "/recipes/" + model + ".pbtxt";
    o.overrides = {"training.threads=" + std::to_string(threads)};
    o.run_dir = "";
    o.show_progress = false;
    o.resume = "none";
    auto t = Trainer::Create(o);
    if (!t.ok()) {
      std::fprintf(stderr, "%s\n", t.status().ToString().c_str());
      return 1;
    }
    Trainer& tr = **t;
    if (!have_bigram && tr.rank() == 0) {
      auto b = BigramBaseline(tr.recipe());
      if (!b.ok()) {
        std::fprintf(stderr, "bigram baseline: %s\n", b.status().ToString().c_str());
        return 1;
      }
      bigram = *b;
      have_bigram = true;
    }
    Status s = tr.TrainSteps(warmup);
    if (s.ok()) s = tr.communicator().BarrierSync({"bench_lm start"});
    double t0 = NowSeconds();
    if (s.ok()) s = tr.TrainSteps(steps);
    double dt = NowSeconds() - t0;
    double rss = PeakRssMiB();
    if (s.ok()) s = tr.communicator().AllReduceSync(&dt, 1, comm::DataType::kFloat64, comm::ReduceOp::kMax,
                                                    {"bench_lm time"});
    if (s.ok()) s = tr.communicator().AllReduceSync(&rss, 1, comm::DataType::kFloat64, comm::ReduceOp::kMax,
                                                    {"bench_lm rss"});
    if (!s.ok()) {
      std::fprintf(stderr, "rank %d: %s\n", tr.rank(), s.ToString().c_str());
      return 1;
    }
    Row r;
    r.model = model;
    r.ranks = tr.world_size();
    r.threads = kernels::cpu::BlasThreads();
    r.params = tr.model().param_count();
    r.global_batch = tr.recipe().recipe.training().global_batch_size();
    r.seq_len = tr.data().targets_per_sample();
    r.vocab = tr.data().vocab_size();
    r.tokens_per_sec = static_cast<double>(steps) * r.global_batch * r.seq_len / dt;
    r.ms_per_step = dt / steps * 1e3;
    r.peak_rss_mb = rss;
    if (tr.rank() == 0) {
      if (rows.empty() && header) {
        std::printf("%-20s %5s %7s %9s %6s %12s %10s %9s\n", "model", "ranks", "threads", "params", "vocab",
                    "tokens/s", "ms/step", "rss_MiB");
        std::printf("%-20s %5s %7s %9s %6s %12s %10s %9s\n", "", "", "(/rank)", "", "", "(global)", "", "(peak)");
      }
      std::printf("%-20s %5d %7d %9lld %6lld %12.0f %10.2f %9.0f\n", r.model.c_str(), r.ranks, r.threads,
                  static_cast<long long>(r.params), static_cast<long long>(r.vocab), r.tokens_per_sec,
                  r.ms_per_step, r.peak_rss_mb);
      std::fflush(stdout);
    }
    rows.push_back(r);
  }
  if (have_bigram) {  // rank 0 only
    const double bits = bigram.nats / std::log(2.0);
    std::printf("# bigram baseline (add-one, validation targets of the recipes: %lld predictions, vocab %lld): "
                "%.4f nats/char = %.4f bits/char; 25%% better: < %.4f nats/char = %.4f bits/char\n",
                static_cast<long long>(bigram.predictions), static_cast<long long>(bigram.vocab), bigram.nats,
                bits, 0.75 * bigram.nats, 0.75 * bits);
    for (const Row& r : rows) {
      std::printf("{\"bench\":\"lm\",\"model\":\"%s\",\"ranks\":%d,\"threads\":%d,\"params\":%lld,\"vocab\":%lld,"
                  "\"global_batch\":%lld,\"seq_len\":%lld,\"steps\":%d,\"tokens_per_sec\":%.1f,"
                  "\"ms_per_step\":%.3f,\"peak_rss_mb\":%.1f}\n",
                  r.model.c_str(), r.ranks, r.threads, static_cast<long long>(r.params),
                  static_cast<long long>(r.vocab), static_cast<long long>(r.global_batch),
                  static_cast<long long>(r.seq_len), steps, r.tokens_per_sec, r.ms_per_step, r.peak_rss_mb);
    }
    std::printf("{\"bench\":\"lm_bigram\",\"predictions\":%lld,\"vocab\":%lld,\"nats_per_char\":%.5f,"
                "\"bits_per_char\":%.5f,\"threshold_nats_per_char\":%.5f,\"threshold_bits_per_char\":%.5f}\n",
                static_cast<long long>(bigram.predictions), static_cast<long long>(bigram.vocab), bigram.nats,
                bits, 0.75 * bigram.nats, 0.75 * bits);
  }
  return 0;
}
