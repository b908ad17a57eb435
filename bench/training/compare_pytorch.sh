#!/usr/bin/env bash
# Runs bench_training and the PyTorch CPU reference back to back with the same
# models, batches and thread count, and prints lockstep/PyTorch samples/s ratios.
# Usage: bench/training/compare_pytorch.sh [build-dir] [threads]
set -euo pipefail
BUILD=${1:-build}
THREADS=${2:-$(nproc)}
HERE=$(cd "$(dirname "$0")" && pwd)
# Idle-thread spinning, switched off on both sides (override by exporting them):
# OpenBLAS's pool threads busy-wait ~2^28 cycles after each call (timeout 4 = sleep
# at once), stealing the cores lockstep's own per-sample conv threads run on; with
# libgomp's default busy-waiting PyTorch's threads likewise spin against other work
# (see bench/lm/run_lm_bench.sh). Neither was slower with them off in our runs.
export OPENBLAS_THREAD_TIMEOUT=${OPENBLAS_THREAD_TIMEOUT:-4}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
ours=$("$BUILD/bin/bench_training" -t "$THREADS" -b 32 64 128 | grep '^{')
theirs=$(python3 "$HERE/pytorch_reference.py" -t "$THREADS" -b 32 64 128 | grep '^{' || true)
if [[ -z "$theirs" ]]; then
  echo "PyTorch is not installed (pip install torch); lockstep alone:"; echo "$ours"; exit 0
fi
python3 - "$ours" "$theirs" "$THREADS" <<'PY'
import json, sys
ours = [json.loads(l) for l in sys.argv[1].splitlines()]
theirs = {(r["model"], r["batch"]): r for r in map(json.loads, sys.argv[2].splitlines())}
import os
print(f"# threads={sys.argv[3]}, OPENBLAS_THREAD_TIMEOUT={os.environ.get('OPENBLAS_THREAD_TIMEOUT')}, "
      f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
print(f"{'model':<8} {'batch':>6} {'lockstep':>10} {'pytorch':>10} {'ratio':>7} {'of_sgemm':>9} {'rss_MiB':>8}")
print(f"{'':<8} {'':>6} {'(samp/s)':>10} {'(samp/s)':>10} {'(l/p)':>7} {'(ratio)':>9} {'(peak)':>8}")
for r in ours:
    t = theirs.get((r["model"], r["batch"]))
    if not t:
        continue
    ratio = r["samples_per_sec"] / t["samples_per_sec"]
    print(f"{r['model']:<8} {r['batch']:>6} {r['samples_per_sec']:>10.0f} {t['samples_per_sec']:>10.0f} {ratio:>7.2f} "
          f"{r['fraction_of_sgemm']:>9.3f} {r['peak_rss_mb']:>8.0f}")
    print(json.dumps({"bench": "training_vs_pytorch", "model": r["model"], "batch": r["batch"],
                      "threads": int(sys.argv[3]), "lockstep_samples_per_sec": r["samples_per_sec"],
                      "pytorch_samples_per_sec": t["samples_per_sec"], "ratio": round(ratio, 3)}))
PY
