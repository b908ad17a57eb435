// A small training program for multi-rank tests: trains `--steps` optimiser
// steps of a recipe and has rank 0 write the final parameters of every model (raw fp32) to
// `--out`. Run it under mpirun with different world sizes and compare files.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>

#include "training/trainer.h"

int main(int argc, char** argv) {
  CLI::App app{"ddp_probe"};
  std::string recipe, out;
  std::vector<std::string> sets;
  int64_t steps = 10;
  app.add_option("--config", recipe)->required();
  app.add_option("--out", out);
  app.add_option("--steps", steps);
  app.add_option("--set", sets);
  CLI11_PARSE(app, argc, argv);
  lockstep::TrainOptions o;
  o.recipe_path = recipe;
  o.overrides = sets;
  o.show_progress = false;
  auto trainer = lockstep::Trainer::Create(o);
  if (!trainer.ok()) {
    std::cerr << "ddp_probe: " << trainer.status().ToString() << "\n";
    return 2;
  }
  lockstep::Status s = (*trainer)->TrainSteps(steps);
  if (!s.ok()) {
    std::cerr << "ddp_probe: " << s.ToString() << "\n";
    std::cerr.flush();
    return 1;
  }
  if ((*trainer)->rank() == 0 && !out.empty()) {
    // Every model's parameters in turn (a GAN's generator, then its discriminator).
    std::ofstream f(out, std::ios::binary);
    long long written = 0;
    for (int m = 0; m < (*trainer)->num_models(); ++m) {
      auto& params = (*trainer)->model(m).params();
      f.write(static_cast<const char*>(params.raw()), static_cast<std::streamsize>(params.nbytes()));
      written += params.numel();
    }
    std::printf("rank 0 wrote %lld parameters, optimizer state %lld bytes per rank\n", written,
                static_cast<long long>((*trainer)->optimizer_state_bytes()));
  }
  return 0;
}
