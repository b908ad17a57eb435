#!/usr/bin/env bash
# Builds checkpoints/fuzz/manifest_fuzzer.cc with clang++ -fsanitize=fuzzer,address
# and runs it for a bounded time on a seed corpus of real manifests. Exits 77 (ctest
# "skipped") when clang++ or its libFuzzer runtime is missing (scripts/setup.sh
# installs both). Usage: run_manifest_fuzzer.sh SRC_DIR GEN_DIR OUT_DIR FIXTURE SECONDS
set -euo pipefail
SRC=$1 GEN=$2 OUT=$3 FIXTURE=$4 SECONDS_TO_RUN=$5
CXX=${LOCKSTEP_FUZZ_CXX:-clang++}
if ! command -v "$CXX" >/dev/null; then
  echo "SKIP: $CXX not found (apt-get install clang libclang-rt-14-dev)"; exit 77
fi
mkdir -p "$OUT"
printf '#include <cstdint>\n#include <cstddef>\nextern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n' > "$OUT/probe.cc"
if ! "$CXX" -fsanitize=fuzzer,address "$OUT/probe.cc" -o "$OUT/probe" 2>"$OUT/probe.log"; then
  echo "SKIP: $CXX cannot link -fsanitize=fuzzer (libFuzzer runtime missing):"; cat "$OUT/probe.log"; exit 77
fi

echo "building manifest_fuzzer with $CXX"
"$CXX" -std=c++17 -O1 -g -fsanitize=fuzzer,address -DLOCKSTEP_VERSION='"fuzz"' \
  -I"$SRC" -I"$GEN" -I"$GEN/checkpoints" \
  "$SRC/checkpoints/fuzz/manifest_fuzzer.cc" "$SRC/checkpoints/manifest.cc" "$SRC/checkpoints/types.cc" \
  "$SRC/common/status.cc" "$SRC/common/check.cc" "$SRC/common/process_identity.cc" \
  "$GEN/checkpoints/proto/checkpoint.pb.cc" \
  -lprotobuf -lpthread -o "$OUT/manifest_fuzzer"

# Seeds: the manifests of a real two-checkpoint run.
rm -rf "$OUT/seed-run" "$OUT/corpus" && mkdir -p "$OUT/corpus"
"$FIXTURE" "$OUT/seed-run" >/dev/null
for m in "$OUT"/seed-run/checkpoints/*/manifest.pb; do cp "$m" "$OUT/corpus/$(basename "$(dirname "$m")").pb"; done

echo "fuzzing for ${SECONDS_TO_RUN}s"
"$OUT/manifest_fuzzer" -max_total_time="$SECONDS_TO_RUN" -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$OUT/" "$OUT/corpus" 2>&1 | tail -20
echo "manifest fuzzer: no crash in ${SECONDS_TO_RUN}s"
