#!/usr/bin/env bash
# The README's first command: from a fresh machine, install, build, and train
# the seed CNN on Fashion-MNIST. RUN_DIR (default runs/cnn) receives
# metrics.jsonl and the effective recipe. Extra arguments go to `lockstep train`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
RUN_DIR=${RUN_DIR:-runs/cnn}
exec build/bin/lockstep train --config recipes/cnn.pbtxt --run-dir "$RUN_DIR" "$@"
