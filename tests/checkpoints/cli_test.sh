#!/usr/bin/env bash
# End-to-end test of `lockstep ckpt` on a generated run: exit codes and messages.
# Usage: cli_test.sh LOCKSTEP_BINARY FIXTURE_BINARY WORK_DIR
set -uo pipefail
LS=$1 FIXTURE=$2 WORK=$3
rm -rf "$WORK" && mkdir -p "$WORK"
RUN=$WORK/run
"$FIXTURE" "$RUN" >/dev/null || { echo "FAIL: fixture"; exit 1; }
CK=$RUN/checkpoints/step-00000020
failures=0

# expect RC TEXT -- CMD...: runs CMD, checks its exit code and that its output contains TEXT.
expect() {
  local rc=$1 text=$2; shift 3
  local out
  out=$("$@" 2>&1); local got=$?
  if [[ $got -ne $rc ]] || [[ "$out" != *"$text"* ]]; then
    echo "FAIL: $* -> exit $got (want $rc), output lacks '$text':"; echo "$out"
    failures=$((failures + 1))
  else
    echo "ok: ${*:2} (exit $got)"
  fi
}

expect 0 "step-00000020" -- "$LS" ckpt verify "$CK"
expect 0 "yes" -- "$LS" ckpt list "$RUN"
expect 0 "w1  [3, 4]  at element 0" -- "$LS" ckpt inspect "$CK"
expect 0 "shard-00001-of-00002.bin  rank 1" -- "$LS" ckpt inspect "$CK"
expect 0 "recipe          test" -- "$LS" ckpt inspect "$CK"
expect 0 "wrote" -- "$LS" ckpt export --format safetensors "$CK" "$WORK/model.safetensors"
[[ -s $WORK/model.safetensors ]] || { echo "FAIL: no exported file"; failures=$((failures + 1)); }
expect 2 "onnx" -- "$LS" ckpt export --format onnx "$CK" "$WORK/model.onnx"
expect 4 "does not exist" -- "$LS" ckpt list "$WORK/nonexistent"
expect 4 "no manifest.pb" -- "$LS" ckpt verify "$WORK/nonexistent/step-00000001"

# Flip one byte of rank 1's shard: verify names the shard and the segment's offset.
SHARD=$CK/shard-00001-of-00002.bin
byte=$(od -An -tu1 -j 25000 -N1 "$SHARD" | tr -d ' ')
printf "$(printf '\\%03o' $(( (byte + 1) % 256 )))" | dd of="$SHARD" bs=1 seek=25000 conv=notrunc status=none
expect 4 "shard-00001-of-00002.bin at byte offset 20000" -- "$LS" ckpt verify "$CK"
expect 0 "NO: checksum mismatch" -- "$LS" ckpt list "$RUN"
expect 0 "OK" -- "$LS" ckpt verify --no-checksums "$CK"
expect 4 "has no manifest.pb" -- "$LS" ckpt inspect "$RUN"

if ((failures > 0)); then echo "$failures check(s) failed"; exit 1; fi
echo "all ckpt CLI checks passed"
