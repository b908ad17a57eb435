// Writes a small run for the `lockstep ckpt` CLI test: RUN_DIR/checkpoints with
// steps 10 and 20, each saved by two thread ranks. Usage: ckpt_cli_fixture RUN_DIR
#include <iostream>

#include "tests/checkpoints/test_util.h"

int main(int argc, char** argv) {
  using namespace lockstep::ckpt;
  if (argc != 2) {
    std::cerr << "usage: ckpt_cli_fixture RUN_DIR\n";
    return 2;
  }
  for (int64_t step : {10, 20}) {
    auto out = testing::SaveOnRanks(argv[1], testing::MakeState(step, 5000), 2);
    if (!out[0].status.ok()) {
      std::cerr << out[0].status.ToString() << "\n";
      return 1;
    }
    std::cout << out[0].path << "\n";
  }
  return 0;
}
