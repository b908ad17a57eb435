#!/usr/bin/env bash
# `lockstep launch` across two simulated nodes (network namespaces joined by a veth
# pair, see netns.sh): mpirun mode with the hostfile rendered from a cluster config,
# mpirun reaching the second node through an rsh agent as it would through ssh.
#   (d) 2 nodes x 2 ranks train with exactly the result of 4 ranks on one node (the
#       final metrics line and the exported final parameters, byte for byte), and the
#       gradients really crossed the link (its byte counters);
#   (f) the link of node 2 is cut mid-training: caught by the heartbeat timeout (f1)
#       or by the ranks' collective deadline (f2); either way the supervisor's
#       root-cause report names the lost node (its host name), in its output and in
#       status.json. Prints the time from the cut to the report.
# Usage: launch_test.sh LOCKSTEP_BINARY SOURCE_DIR
set -uo pipefail
B=$(readlink -f "$1")
SRC=$2
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/netns.sh"
netns_require
command -v mpirun >/dev/null || { echo "SKIP: mpirun not installed (bash scripts/setup.sh)"; exit 77; }
[[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]] || { echo "SKIP: Fashion-MNIST not installed"; exit 77; }

budget_init 540  # ctest TIMEOUT 600
W=$(mktemp -d /tmp/lockstep-multinode.XXXXXX)
FAILED=0
fail() { echo "FAIL: $*"; FAILED=1; }
on_exit() {
  netns_destroy
  if [[ $FAILED -ne 0 ]]; then echo "--- files kept in $W"; else rm -rf "$W"; fi
}
trap on_exit EXIT
netns_create "lsmn$$" || { fail "cannot create the namespaces"; exit 1; }
echo "nodes: $NODE1 ($IP1) and $NODE2 ($IP2) on $NET"
write_rsh_agent "$W/agent"
RECIPE=$SRC/tests/ddp/mlp48.pbtxt

# The cluster config: two hosts of 2 slots; MPI and OpenMPI's out-of-band traffic on
# the nodes' network; the control plane advertised on it too (no control.advertise).
write_cluster() {  # FILE, fault { ... } body
  cat > "$1" <<CLUSTER
name: "netns-2x2"
description: "two network-namespace nodes x 2 CPU ranks (tests/multinode)"
mode: MPIRUN
backend: CPU
nprocs: 4
ranks_per_node: 2
hosts { name: "$IP1" slots: 2 }
hosts { name: "$IP2" slots: 2 }
mpi {
  allow_run_as_root: true
  oversubscribe: true
  if_include: "$NET"
  mca { name: "plm_rsh_agent" value: "$W/agent" }
  mca { name: "mpi_yield_when_idle" value: "1" }
}
control { progress_interval_seconds: 2 }
fault { $2 }
CLUSTER
}
rx_bytes() { ip -n "$NODE2" -s -j link show "$LINK2" | sed -n 's/.*"rx":{"bytes":\([0-9]*\).*/\1/p'; }
last_metrics() { tail -1 "$1/metrics.jsonl" | grep -o '"\(train_loss\|test_loss\|test_accuracy\|step\)":[^,]*' | tr '\n' ' '; }

# ---- (d) same result across the two nodes as on one
CLUSTER=$W/cluster-d.pbtxt
write_cluster "$CLUSTER" "max_restarts: 0 heartbeat_interval_seconds: 0.5 heartbeat_timeout_seconds: 30"
RUN_D=$W/run-d
STEPS=300
TRAIN=(train --quiet --config "$RECIPE" --set training.threads=1 --max-steps $STEPS)
on_node "$NODE1" timeout -k 5 "$(left 60)" "$B" launch --dry-run --cluster "$CLUSTER" -- "${TRAIN[@]}" --run-dir "$RUN_D" > "$W/dry.txt" 2>&1 ||
  fail "(d) --dry-run failed: $(cat "$W/dry.txt")"
for s in "cat > $RUN_D/hostfile <<'HOSTFILE'" "$IP1 slots=2" "$IP2 slots=2" "--hostfile $RUN_D/hostfile" \
         "--mca btl_tcp_if_include $NET" "--mca oob_tcp_if_include $NET" "--map-by ppr:2:node" "-x LOCKSTEP_JOB_TOKEN"; do
  grep -qF -- "$s" "$W/dry.txt" || fail "(d) the dry run lacks '$s': $(cat "$W/dry.txt")"
done
[[ ! -e $RUN_D ]] || fail "(d) --dry-run created the run directory"
RX0=$(rx_bytes)
T0=$(now_ms)
on_node "$NODE1" timeout -k 10 "$(left 300)" "$B" launch -q --cluster "$CLUSTER" -- "${TRAIN[@]}" --run-dir "$RUN_D" > "$W/d.out" 2>&1 ||
  fail "(d) the 2-node launch failed: $(tail -20 "$W/d.out")"
echo "(d) 2 nodes x 2 ranks: $STEPS steps in $(secs_since "$T0") s"
RX=$(( $(rx_bytes) - RX0 ))
grep -q '"state": "succeeded"' "$RUN_D/status.json" || fail "(d) status.json: $(head -5 "$RUN_D/status.json")"
grep -qx "$IP1 slots=2" "$RUN_D/hostfile" && grep -qx "$IP2 slots=2" "$RUN_D/hostfile" ||
  fail "(d) hostfile: $(cat "$RUN_D/hostfile")"
grep -qF -- "--hostfile $RUN_D/hostfile" "$RUN_D/status.json" || fail "(d) mpirun was not given the hostfile"
grep -qF "\"supervisor\": \"$IP1:" "$RUN_D/status.json" || fail "(d) control plane not advertised on $NET: $(grep supervisor "$RUN_D/status.json")"
PLACED=$(sed -n 's/.*{"rank": \([0-9]\), "host": "\([^"]*\)".*/\1@\2/p' "$RUN_D/status.json" | tr '\n' ' ')
[[ $PLACED == "0@$NODE1 1@$NODE1 2@$NODE2 3@$NODE2 " ]] || fail "(d) ranks placed as '$PLACED'"
echo "(d) ranks: $PLACED; $RX bytes reached $NODE2 over the link"
(( RX > 4000000 )) || fail "(d) only $RX bytes crossed the link: the ranks did not talk across the nodes"

RUN_1=$W/run-1node
timeout -k 10 "$(left 300)" "$B" launch -q --cluster "$SRC/cluster-configs/local.pbtxt" --nprocs 4 -- "${TRAIN[@]}" --run-dir "$RUN_1" \
  > "$W/1node.out" 2>&1 || fail "(d) the 1-node launch failed: $(tail -20 "$W/1node.out")"
M2=$(last_metrics "$RUN_D"); M1=$(last_metrics "$RUN_1")
echo "(d) 2 nodes: $M2"
echo "(d) 1 node:  $M1"
[[ -n $M2 && $M2 == "$M1" ]] || fail "(d) final metrics differ"
FINAL=checkpoints/$(printf 'step-%08d' $STEPS)
"$B" ckpt export "$RUN_D/$FINAL" "$W/params-2node.safetensors" > /dev/null &&
  "$B" ckpt export "$RUN_1/$FINAL" "$W/params-1node.safetensors" > /dev/null || fail "(d) cannot export $FINAL"
cmp -s "$W/params-2node.safetensors" "$W/params-1node.safetensors" || fail "(d) final parameters differ"
[[ $FAILED -eq 0 ]] && echo "(d) final parameters identical ($(stat -c %s "$W/params-1node.safetensors") bytes)"

# ---- (f) a cut link, caught by the heartbeat timeout (f1) or the collective deadline (f2)
cut_test() {  # name, fault { ... } body, what the report must also contain, seconds the detection may take
  local name=$1 fault=$2 symptom=$3 limit=$4
  local cluster=$W/cluster-$name.pbtxt run=$W/run-$name out=$W/$name.out
  write_cluster "$cluster" "$fault"
  ( on_node "$NODE1" timeout -k 10 "$(left 300)" "$B" launch --cluster "$cluster" -- train --quiet --config "$RECIPE" --run-dir "$run" \
      --set training.epochs=40 --set training.global_batch_size=480 --set checkpoint.every_steps=100 --max-steps 3000 \
      > "$out" 2>&1; echo $? > "$W/$name.rc" ) &
  wait_until 120 test -d "$run/checkpoints/step-00000100" || { fail "($name) training never reached step 100: $(tail -20 "$out")"; return; }
  cut_link
  local t0 detected="" reported="" end=$((SECONDS + $(left 120)))
  t0=$(now_ms)
  while (( SECONDS < end )); do  # "failure: ...; stopping the job", then the report once the job is down
    [[ -z $detected ]] && grep -q "\] failure: " "$out" && detected=$(secs_since "$t0")
    grep -q "failure (attempt 1)" "$out" && { reported=$(secs_since "$t0"); break; }
    sleep 0.1
  done
  wait_until 60 test -s "$W/$name.rc"
  local rc report
  rc=$(cat "$W/$name.rc" 2>/dev/null)
  report=$(grep "failure (attempt 1)" "$out")
  echo "($name) $report"
  echo "($name) cut to detection: ${detected:-never} s (limit $limit s), to the report (job stopped): ${reported:-never} s;" \
       "launch exit code ${rc:-none}"
  [[ -n $reported ]] || fail "($name) no failure report: $(grep -v '<stdout>' "$out" | tail -20)"
  [[ -n $detected ]] && (( ${detected%.*} < limit )) || fail "($name) detection took ${detected:-forever} s"
  [[ $rc == 6 ]] || fail "($name) expected exit code 6 (max_restarts 0 used up), got '${rc:-none}'"
  [[ $report == *"node $NODE2 lost or cut off"* ]] || fail "($name) the report does not name $NODE2 as the lost node"
  [[ $report == *"$symptom"* ]] || fail "($name) the report lacks '$symptom'"
  local blamed
  blamed=$(sed -n 's/^ *{"attempt": 0, "at": .*"host": "\([^"]*\)", "exit_code".*/\1/p' "$run/status.json")
  [[ $blamed == "$NODE2" ]] || fail "($name) status.json's root cause names host '$blamed', not $NODE2"
  # Whatever still runs on node 2 (cut off from mpirun) goes; the link comes back.
  netns_kill_all
  restore_link
}
FAULT="max_restarts: 0 heartbeat_interval_seconds: 0.5 stop_grace_seconds: 3 exit_grace_seconds: 3"
cut_test f1 "$FAULT heartbeat_timeout_seconds: 5 collective_timeout_seconds: 120" "sent no heartbeat" 30
cut_test f2 "$FAULT heartbeat_timeout_seconds: 120 collective_timeout_seconds: 5" "left without a goodbye" 40
grep -q "DEADLINE_EXCEEDED" "$W/f2.out" || fail "(f2) no rank reported its collective deadline"

if [[ $FAILED -eq 0 ]]; then echo "multinode launch_test: PASS"; else echo "multinode launch_test: FAILED"; fi
exit $FAILED
