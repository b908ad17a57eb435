#!/usr/bin/env bash
# Sweeps bench_ddp over 1, 2 and 4 local ranks, fixed global and fixed per-rank
# batch, overlap on and off. Usage: bench/ddp/run_scaling.sh [build-dir] [extra bench_ddp args]
set -euo pipefail
BUILD=${1:-build}; shift || true
MPIRUN=(mpirun --allow-run-as-root --oversubscribe --mca mpi_yield_when_idle 1 --bind-to none)
first=--header
for overlap in false true; do
  echo "# overlap=$overlap"
  for mode in fixed-global fixed-per-rank; do
    for n in 1 2 4; do
      "${MPIRUN[@]}" -np "$n" "$BUILD/bin/bench_ddp" --mode "$mode" --overlap "$overlap" $first "$@"
      first=
    done
  done
  first=--header
done
