// std::thread fork-join; a conv call is milliseconds, a thread start microseconds.
#include "kernels/cpu/parallel.h"

#include <algorithm>
#include <thread>
#include <vector>

#include "kernels/cpu/gemm.h"

namespace lockstep::kernels::cpu {

int ParallelParts(int64_t n) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(BlasThreads(), n)));
}

int ElementwiseParts(int64_t n) { return n < kMinParallelElements ? 1 : ParallelParts(n); }

void ParallelFor(int parts, int64_t n, const std::function<void(int, int64_t, int64_t)>& fn) {
  auto begin = [&](int p) { return n * p / parts; };
  if (parts <= 1) {
    fn(0, 0, n);
    return;
  }
  std::vector<std::thread> workers;
  workers.reserve(static_cast<size_t>(parts - 1));
  for (int p = 1; p < parts; ++p) workers.emplace_back([&, p] { fn(p, begin(p), begin(p + 1)); });
  fn(0, begin(0), begin(1));
  for (std::thread& t : workers) t.join();
}

void ParallelRanges(int parts, int64_t n, const std::function<void(int, int64_t, int64_t)>& fn) {
  if (parts <= 1) {
    fn(0, 0, n);
    return;
  }
  const int blas = BlasThreads();
  SetBlasThreads(1);
  ParallelFor(parts, n, fn);
  SetBlasThreads(blas);
}

}  // namespace lockstep::kernels::cpu
