#!/usr/bin/env bash
# Sweeps bench_ddp over 1, 2 and 4 local ranks, fixed global and fixed per-rank
# batch, overlap off and on (an overlap run also times serial blocks, its `hidden`
# baseline); with overlap also 0.1 MiB buckets, since the CNN's gradients
# (0.47 MiB) fit one 25 MiB bucket, which can only start once backward is over.
# Usage: bench/ddp/run_scaling.sh [build-dir] [extra bench_ddp args]
set -euo pipefail
BUILD=${1:-build}; shift || true
MPIRUN=(mpirun --allow-run-as-root --oversubscribe --mca mpi_yield_when_idle 1 --bind-to none)
for config in "false 25" "true 25" "true 0.1"; do
  read -r overlap bucket <<<"$config"
  echo "# overlap=$overlap bucket_mb=$bucket"
  first=--header
  for mode in fixed-global fixed-per-rank; do
    for n in 1 2 4; do
      "${MPIRUN[@]}" -np "$n" "$BUILD/bin/bench_ddp" --mode "$mode" --overlap "$overlap" --bucket-mb "$bucket" \
        $first "$@"
      first=
    done
  done
done
