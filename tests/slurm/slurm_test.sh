#!/usr/bin/env bash
# End-to-end test of `lockstep sbatch` on a real single-node Slurm started here
# (recipe: /work/shared/ENVIRONMENT.md). The daemons run from a scratch directory
# on private ports and are stopped by the PIDs in their pid files at exit, also
# when a check fails.
#   (a) a 2-rank job completes and reaches the test accuracy of the same run
#       launched locally with `lockstep launch`;
#   (b) `scancel --signal=USR1 --full` -> checkpoint, exit 75, requeue, resume from
#       that checkpoint, complete the planned steps;
#   (c) SLURM_RESTART_COUNT shows in status.json and `lockstep status`.
# Usage: slurm_test.sh LOCKSTEP_BINARY SOURCE_DIR
set -uo pipefail
B=$1
SRC=$2
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"
for tool in munged slurmctld slurmd sbatch scontrol squeue scancel sinfo; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed (bash scripts/setup.sh)"; exit 77; }
done
[[ $(id -u) -eq 0 ]] || { echo "SKIP: the test Slurm runs as root"; exit 77; }
[[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]] || { echo "SKIP: Fashion-MNIST not installed"; exit 77; }

W=$(mktemp -d /tmp/lockstep-slurm.XXXXXX) && chmod 755 "$W"
M=$W/munge
S=$W/slurm
FAILED=0
fail() { echo "FAIL: $*"; FAILED=1; }
stop_daemons() {
  for pidfile in "$S/run/slurmd.pid" "$S/run/slurmctld.pid" "$M/run/munged.pid"; do stop_pid "$pidfile"; done
}
on_exit() {
  stop_daemons
  if [[ $FAILED -ne 0 ]]; then
    echo "--- logs kept in $W"
    tail -n 30 "$S"/log/*.log 2>/dev/null
  else
    rm -rf "$W"
  fi
}
trap on_exit EXIT

# ---- munge
start_munge "$M" || { fail "munged did not start"; exit 1; }

# ---- slurm (private ports and cluster name: other test runs may share this machine)
mkdir -p "$S"/{state,spool,run,log} && chmod 700 "$S"/{state,spool}
HOST=$(hostname -s)
PORT=$((20000 + ($$ % 20000)))
cat > "$S/slurm.conf" <<CONF
ClusterName=lockstep$$
SlurmctldHost=$HOST
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
$(slurm_common_conf "$M" "$S")
SlurmdSpoolDir=$S/spool
SlurmdPidFile=$S/run/slurmd.pid
SlurmdLogFile=$S/log/slurmd.log
NodeName=$HOST CPUs=4 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$S/slurm.conf
slurmctld || { fail "slurmctld did not start"; exit 1; }
slurmd || { fail "slurmd did not start"; exit 1; }
for _ in $(seq 300); do sinfo -h -N -o %T 2>/dev/null | grep -qx idle && break; sleep 0.1; done
sinfo -h -N -o %T | grep -qx idle || { fail "the node never became idle"; exit 1; }
echo "slurm up: $(sinfo -h -N -o '%N %T %c')"

CLUSTER=$SRC/cluster-configs/slurm-test.pbtxt
RECIPE=$SRC/tests/ddp/mlp48.pbtxt
job_state() { scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'; }
wait_state() {  # job, state regex, seconds
  for _ in $(seq $(($3 * 5))); do [[ $(job_state "$1") =~ ^($2)$ ]] && return 0; sleep 0.2; done
  return 1
}
last_test_accuracy() { tail -1 "$1/metrics.jsonl" | sed -n 's/.*"test_accuracy": *\([0-9.e-]*\).*/\1/p'; }

# ---- (a) a 2-rank job completes, with the accuracy of the same run launched locally
RUN_A=$W/run-a
JOB=$("$B" sbatch --cluster "$CLUSTER" -- train --quiet --config "$RECIPE" --run-dir "$RUN_A" --max-steps 60)
[[ $JOB =~ ^[0-9]+$ ]] || { fail "(a) sbatch printed no job id: $JOB"; exit 1; }
echo "(a) submitted job $JOB"
wait_state "$JOB" "COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL" 120 || fail "(a) job $JOB did not finish: $(job_state "$JOB")"
[[ $(job_state "$JOB") == COMPLETED ]] || fail "(a) job $JOB ended $(job_state "$JOB")"
grep -q '"state": "succeeded"' "$RUN_A/status.json" || fail "(a) status.json: $(cat "$RUN_A/status.json")"
[[ -d $RUN_A/checkpoints/step-00000060 ]] || fail "(a) no final checkpoint"
RUN_L=$W/run-local
"$B" launch -q --cluster "$SRC/cluster-configs/local.pbtxt" --nprocs 2 -- \
  train --quiet --config "$RECIPE" --run-dir "$RUN_L" --max-steps 60 > "$W/local.out" 2>&1 || fail "(a) local launch failed"
ACC_S=$(last_test_accuracy "$RUN_A"); ACC_L=$(last_test_accuracy "$RUN_L")
echo "(a) test accuracy: slurm $ACC_S, local $ACC_L"
[[ -n $ACC_S && $ACC_S == "$ACC_L" ]] || fail "(a) accuracies differ: slurm '$ACC_S' local '$ACC_L'"

# ---- (b) preempted with USR1 -> checkpoint, requeue, resume, complete
RUN_B=$W/run-b
STEPS=3000
JOB=$("$B" sbatch --cluster "$CLUSTER" -- train --quiet --config "$RECIPE" --run-dir "$RUN_B" \
      --set training.epochs=40 --set training.global_batch_size=480 --set checkpoint.every_steps=100 \
      --set checkpoint.keep_every_steps=100 --max-steps $STEPS)
echo "(b) submitted job $JOB"
for _ in $(seq 600); do [[ -d $RUN_B/checkpoints/step-00000100 ]] && break; sleep 0.1; done
[[ -d $RUN_B/checkpoints/step-00000100 ]] || fail "(b) training never reached step 100"
scancel --signal=USR1 --full "$JOB"
T0=$(date +%s.%N)
wait_state "$JOB" "PENDING|REQUEUED|REQUEUE_HOLD|REQUEUE_FED" 120 || fail "(b) job $JOB was not requeued: $(job_state "$JOB")"
# Slurm holds a requeued job for 120 s; starting it at once races the revocation of the
# old incarnation's credential ("Job credential revoked"), so let that settle first.
sleep 5
scontrol update jobid="$JOB" starttime=now 2>/dev/null
wait_state "$JOB" "COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL" 180 || fail "(b) job $JOB did not finish: $(job_state "$JOB")"
echo "(b) requeue and resume took $(echo "$(date +%s.%N) - $T0" | bc 2>/dev/null || echo '?') s"
[[ $(job_state "$JOB") == COMPLETED ]] || fail "(b) job $JOB ended $(job_state "$JOB")"
OUT=$RUN_B/slurm-$JOB.out
PREEMPT_STEP=$(sed -n 's/.*preempted by a signal after step \([0-9]*\).*/\1/p' "$OUT" | head -1)
[[ -n $PREEMPT_STEP ]] || fail "(b) no 'preempted by a signal' in $OUT"
grep -q "requeueing job $JOB" "$OUT" || fail "(b) the script did not requeue"
RESUMED=$(printf 'step-%08d' "${PREEMPT_STEP:-0}")
grep -q "resumed from .*$RESUMED" "$OUT" || fail "(b) the requeued job did not resume from $RESUMED"
[[ -d $RUN_B/checkpoints/$(printf 'step-%08d' $STEPS) ]] || fail "(b) the planned $STEPS steps were not completed"
[[ $(grep -c "^lockstep: job $JOB" "$OUT") -eq 2 ]] || fail "(b) expected two runs in the appended log $OUT"
echo "(b) preempted after step $PREEMPT_STEP, resumed from $RESUMED, finished step $STEPS"
echo "(b) steps: $PREEMPT_STEP before the preemption + $((STEPS - PREEMPT_STEP)) after = $STEPS planned"

# ---- (c) SLURM_RESTART_COUNT in status
grep -q '"slurm_restart_count": 1' "$RUN_B/status.json" || fail "(c) status.json: $(grep slurm "$RUN_B/status.json")"
"$B" status "$RUN_B" | tee "$W/status.txt" | grep -q "SLURM_RESTART_COUNT 1" || fail "(c) lockstep status: $(cat "$W/status.txt")"
grep slurm "$RUN_B/status.json"

if [[ $FAILED -eq 0 ]]; then echo "slurm_test: PASS"; else echo "slurm_test: FAILED"; cat "$OUT" 2>/dev/null | tail -40; fi
exit $FAILED
