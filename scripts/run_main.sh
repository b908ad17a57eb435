#!/usr/bin/env bash
# The README's first command: from a fresh machine, install, build, and train
# the seed CNN on Fashion-MNIST data-parallel on local ranks (NPROCS, default 2)
# under the supervisor (`lockstep launch`, cluster-configs/local.pbtxt), which
# restarts failed ranks from the newest checkpoint. RUN_DIR (default runs/cnn)
# receives metrics.jsonl, status.json, launch.log and checkpoints/; running the
# script again resumes. Extra arguments go to `lockstep train`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
RUN_DIR=${RUN_DIR:-runs/cnn}
exec build/bin/lockstep launch --cluster cluster-configs/local.pbtxt --nprocs "${NPROCS:-2}" -- \
  train --config recipes/cnn.pbtxt --run-dir "$RUN_DIR" "$@"
