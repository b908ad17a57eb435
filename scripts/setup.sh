#!/usr/bin/env bash
# Installs the Debian packages lockstep needs, then (best effort) the Python modules
# of the safetensors cross-check test. Idempotent and quiet: when everything is
# already installed it does nothing (no apt-get update, no pip).
set -euo pipefail

PACKAGES=(
  cmake g++ make ninja-build pkg-config
  libgtest-dev libgmock-dev libbenchmark-dev
  libopenmpi-dev openmpi-bin
  libprotobuf-dev protobuf-compiler
  libboost-dev libopenblas-dev zlib1g-dev libcli11-dev libxxhash-dev nlohmann-json3-dev
  slurm-wlm munge
  dataset-fashion-mnist fortunes
  iproute2 procps python3
  clang libclang-rt-14-dev
)

missing=()
for p in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
if ((${#missing[@]} > 0)); then
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  echo "setup: installing ${#missing[@]} package(s): ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "setup: done"
fi

# tests/checkpoints/safetensors_test.cc reads our export back with the Python
# `safetensors` library when it can import it (and skips that test otherwise).
# Best effort: no pip, no network or a refusal never fails this script.
if ! python3 -c "import safetensors, numpy" >/dev/null 2>&1; then
  if python3 -m pip install --quiet --break-system-packages --disable-pip-version-check \
       safetensors numpy >/dev/null 2>&1 &&
     python3 -c "import safetensors, numpy" >/dev/null 2>&1; then
    echo "setup: installed the Python safetensors and numpy modules"
  else
    echo "setup: cannot pip install safetensors numpy; the Python safetensors cross-check will be skipped"
  fi
fi
