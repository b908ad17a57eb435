#!/usr/bin/env bash
# Run HERE (a machine with Debian's package registry) before a device call: downloads
# the packages the GPU machine lacks and the GPU test bundle uses into .debs/ (git
# ignored; carry it). Today: OpenBLAS (static library + cblas.h) for the runtime's
# backend op suite, whose reference is the CPU backend. Also copies GoogleTest's
# sources into build-gtest-src/. Then, through the device tool:
#   run(command="tests/cuda/run_on_gpu.sh build-gtest-src",
#       carry=["build-gtest-src", ".debs"], timeout_s=540)
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .debs
(cd .debs && apt-get download libopenblas-pthread-dev)
[ -d build-gtest-src ] || cp -r /usr/src/googletest build-gtest-src
ls -la .debs
du -sh .debs build-gtest-src
