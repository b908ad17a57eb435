#!/usr/bin/env bash
# One call on a lent GPU machine (see /work/shared/ENVIRONMENT.md): probe what is
# there, build the CUDA test bundle (tests/cuda/bundle), run every CUDA test with
# LOCKSTEP_REQUIRE_CUDA=1 (a missing device fails), then again under
# compute-sanitizer memcheck. Logs go to $OUT (or ./gpu-logs). Exit status: the
# tests' status. Usage, from the repository root:
#   tests/cuda/run_on_gpu.sh [googletest-source-dir]
# From a machine without GPU, through the device tool (GoogleTest is not installed
# there; carry Debian's sources, copied into an ignored folder first):
#   cp -r /usr/src/googletest build-gtest-src
#   run(command="tests/cuda/run_on_gpu.sh build-gtest-src", carry=["build-gtest-src"])
set -u
OUT=${OUT:-$PWD/gpu-logs}
mkdir -p "$OUT"
GTEST_SRC=${1:-}
BUILD=${BUILD:-build-cuda-bundle}
export PATH=/usr/local/cuda/bin:$PATH

{
  echo "== probe"; date -u
  nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  which cmake ninja nvcc g++ c++ compute-sanitizer mpirun protoc
  nvcc --version | tail -2; cmake --version | head -1
  ls /usr/include/gtest /usr/include/boost 2>&1 | head -2
  ls /usr/local/cuda/lib64 2>/dev/null | grep -E 'nccl|cudnn|cublasLt' | head
  python3 -c "import nvidia, os; print([os.path.join(p) for p in nvidia.__path__])" 2>&1
  python3 -c "import nvidia.cudnn as m, os; d = list(m.__path__)[0]; print(d, os.listdir(d))" 2>&1
} > "$OUT/probe.txt" 2>&1
cat "$OUT/probe.txt"

generator=()
command -v ninja > /dev/null && generator=(-G Ninja)
gtest_arg=()
[ -n "$GTEST_SRC" ] && gtest_arg=(-DLOCKSTEP_GTEST_SOURCE_DIR="$GTEST_SRC")
# NCCL: the toolkit's, else the one in a Python environment (PyTorch's nvidia-nccl wheel).
nccl_root=$(python3 -c "import nvidia.nccl as m; print(list(m.__path__)[0])" 2>/dev/null || true)
[ -n "$nccl_root" ] && gtest_arg+=(-DLOCKSTEP_NCCL_ROOT="$nccl_root") && echo "NCCL root: $nccl_root"
# cuDNN likewise (PyTorch's nvidia-cudnn wheel). Its lib dir must also be on
# LD_LIBRARY_PATH when the tests run: libcudnn.so.9 loads its engine libraries
# (libcudnn_cnn.so.9, libcudnn_engines_*.so.9, ...) by name at run time.
cudnn_root=$(python3 -c "import nvidia.cudnn as m; print(list(m.__path__)[0])" 2>/dev/null || true)
[ -n "$cudnn_root" ] && gtest_arg+=(-DLOCKSTEP_CUDNN_ROOT="$cudnn_root") && echo "cuDNN root: $cudnn_root"
start=$(date +%s)
if ! cmake -S tests/cuda/bundle -B "$BUILD" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
       -DCMAKE_CUDA_COMPILER=$(command -v nvcc) "${gtest_arg[@]}" > "$OUT/configure.txt" 2>&1 ||
   ! cmake --build "$BUILD" -j "$(nproc)" > "$OUT/build.txt" 2>&1; then
  echo "BUILD FAILED (see $OUT/configure.txt, $OUT/build.txt)"; tail -40 "$OUT/configure.txt" "$OUT/build.txt"
  exit 2
fi
echo "build: $(( $(date +%s) - start )) s"
grep -E '^-- bundle: ' "$OUT/configure.txt"
[ -n "$cudnn_root" ] && export LD_LIBRARY_PATH=$cudnn_root/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

export LOCKSTEP_REQUIRE_CUDA=1
"$BUILD/kernels_cuda_test" --gtest_output=xml:"$OUT/kernels_cuda_test.xml" > "$OUT/test.txt" 2>&1
status=$?
grep -E '^\[  (FAILED|PASSED|SKIPPED) |^\[==========\]|worst distance' "$OUT/test.txt" | head -60
grep -A8 'Failure$' "$OUT/test.txt" | head -80  # the first failures in full
echo "tests: exit $status"

if [ -x "$BUILD/comm_nccl_test" ]; then
  LD_LIBRARY_PATH=${nccl_root:+$nccl_root/lib:}${LD_LIBRARY_PATH:-} \
    timeout 300 "$BUILD/comm_nccl_test" > "$OUT/nccl_test.txt" 2>&1
  nccl_status=$?
  grep -E '^\[  (FAILED|PASSED|SKIPPED) |^\[==========\]' "$OUT/nccl_test.txt"
  grep -A8 'Failure$' "$OUT/nccl_test.txt" | head -40
  echo "nccl tests: exit $nccl_status"
  [ $status -eq 0 ] && status=$nccl_status
else
  echo "comm_nccl_test not built (no NCCL found; see $OUT/configure.txt)"
fi

if command -v compute-sanitizer > /dev/null; then
  # memcheck on everything but the death test (it forks) and the slowest sizes.
  timeout 400 compute-sanitizer --tool memcheck --error-exitcode 99 \
    "$BUILD/kernels_cuda_test" --gtest_filter='-CudaCheckDeathTest.*' > "$OUT/memcheck.txt" 2>&1
  echo "memcheck: exit $? ($(grep -c 'Invalid' "$OUT/memcheck.txt") invalid accesses reported)"
  tail -5 "$OUT/memcheck.txt"
fi
# The kernel benchmark (ratios only; never changes the exit status).
if [ -x "$BUILD/bench_kernels_cuda" ]; then
  timeout 180 "$BUILD/bench_kernels_cuda" --json "$OUT/bench_kernels_cuda.json" \
    > "$OUT/bench_kernels_cuda.txt" 2>&1
  echo "bench_kernels_cuda: exit $?"
  cat "$OUT/bench_kernels_cuda.txt"
fi
exit $status
