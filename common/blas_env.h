// OpenBLAS's idle pool threads busy-wait for about 2^28 cycles after each call
// unless OPENBLAS_THREAD_TIMEOUT says otherwise, and they steal the cores that
// lockstep's own threads (per-sample convolutions, elementwise ops) run on next:
// the CNN at 2 threads trained 25-30% slower (bench_training, 2 cores). OpenBLAS
// reads the variable once, in a library constructor that runs before main(), so
// setting it in main() is too late; the process re-executes itself instead.
#pragma once

namespace lockstep {

// Value lockstep gives OPENBLAS_THREAD_TIMEOUT when the user has not set it: idle
// pool threads sleep almost at once (2^4 cycles).
inline constexpr const char* kBlasThreadTimeout = "4";

// Call first thing in main(). When OPENBLAS_THREAD_TIMEOUT is unset, sets it to
// kBlasThreadTimeout and re-executes this program (/proc/self/exe, same argv and
// PID, before any other thread or MPI exists). Returns only when the variable was
// already set, or when exec failed (then OpenBLAS keeps its default; nothing else
// changes). A value the user exported is left alone.
void EnsureBlasThreadTimeout(char** argv);

}  // namespace lockstep
