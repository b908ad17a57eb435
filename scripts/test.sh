#!/usr/bin/env bash
# The README's second command: installs what is missing, builds, and runs every
# test with ctest. The last line is a runner summary ("N passed, N failed").
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh "$@"
BUILD_DIR=${LOCKSTEP_BUILD_DIR:-build}
cd "$BUILD_DIR"
set +e
ctest --output-on-failure --timeout 900 -j "$(nproc)" 2>&1 | tee ctest.log
rc=${PIPESTATUS[0]}
set -e
total=$(sed -n 's/.*tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\2/p' ctest.log | tail -1)
failed=$(sed -n 's/.*tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\1/p' ctest.log | tail -1)
skipped=$(grep -c '\*\*\*Skipped\|Not Run' ctest.log || true)
if [[ -n "$total" ]]; then
  # ctest counts a skipped test as passed; the summary keeps them apart.
  echo "ctest: $((total - failed - skipped)) passed, $failed failed, $skipped skipped"
fi
exit "$rc"
