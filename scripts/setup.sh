#!/usr/bin/env bash
# Installs the Debian packages lockstep needs. Idempotent and quiet: when every
# package is already installed it does nothing (no apt-get update).
set -euo pipefail

PACKAGES=(
  cmake g++ make ninja-build pkg-config
  libgtest-dev libgmock-dev libbenchmark-dev
  libopenmpi-dev openmpi-bin
  libprotobuf-dev protobuf-compiler
  libboost-dev libopenblas-dev zlib1g-dev libcli11-dev libxxhash-dev
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
if ((${#missing[@]} == 0)); then
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
echo "setup: installing ${#missing[@]} package(s): ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
