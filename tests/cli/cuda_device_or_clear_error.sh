#!/usr/bin/env bash
# `train --set training.device=CUDA`: on a machine with a usable GPU it trains (exit 0);
# anywhere else (no GPU, no driver, a build without CUDA) it must stop at start-up with
# exit code 1 and a message naming the setting and the reason -- never crash or hang.
# Usage: cuda_device_or_clear_error.sh LOCKSTEP RECIPE
out=$("$1" train --config "$2" --set training.device=CUDA --max-steps 2 --resume none 2>&1)
rc=$?
echo "$out"
if [ $rc -eq 0 ]; then
  echo "trained on a GPU"
  exit 0
fi
if [ $rc -ne 1 ]; then
  echo "FAIL: exit code $rc, expected 0 (a GPU) or 1 (none)"
  exit 1
fi
if ! grep -q 'training.device: CUDA: ' <<< "$out"; then
  echo "FAIL: the message does not name training.device: CUDA and the reason"
  exit 1
fi
echo "clear error without a GPU, as expected"
