// bench_allreduce: all-reduce bandwidth of MpiCommunicator against raw MPI_Allreduce in
// the same run, nccl-tests style; also a correctness check (exact integer sums).
// Run under mpirun: mpirun -np 2 bench_allreduce -b 8 -e 64M -f 2
// Metrics: time_us = mean time of one in-place float32 sum all-reduce (slowest rank);
// algbw = size / time; busbw = algbw * 2(n-1)/n (the bytes each rank's link moves in a
// ring all-reduce, comparable across rank counts); #wrong = elements differing from the
// exact sum, over all ranks; ratio = ours busbw / raw busbw. "ours" issues each
// all-reduce and waits on its handle before the next (the hand-off to the comm thread
// and back is inside the timing).
#include <CLI/CLI.hpp>
#include <mpi.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "runtime/comm/mpi_communicator.h"

namespace lockstep::comm {
namespace {

struct Options {
  std::string min_bytes = "8", max_bytes = "256M", json_path;
  bool track_arrivals = true;
  int step_factor = 2, warmup = 5, iters = 20, rounds = 3;
};

// "64M" -> 67108864 (K, M, G are powers of 1024); anything else is an error.
Result<int64_t> ParseSize(const std::string& flag, const std::string& text) {
  size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  std::string suffix = text.substr(digits);
  int64_t scale = suffix.empty() ? 1 : suffix == "K" ? 1 << 10 : suffix == "M" ? 1 << 20 : suffix == "G" ? 1 << 30 : 0;
  if (digits == 0 || digits > 12 || scale == 0) {
    return InvalidArgumentError(flag + " '" + text + "' is not a size (digits with an optional K, M or G suffix)");
  }
  return std::stoll(text.substr(0, digits)) * scale;
}

struct Measure {
  double time_us = 0;
  int64_t wrong = 0;
};

float Pattern(int rank, int64_t i) { return static_cast<float>((rank + 1) * (i % 7 + 1)); }

// `run` does one in-place all-reduce of buf[0..count). Returns #wrong over all ranks.
template <typename Run>
int64_t Check(std::vector<float>& buf, int64_t count, int rank, int n, Run run) {
  for (int64_t i = 0; i < count; ++i) buf[i] = Pattern(rank, i);
  run();
  int64_t wrong = 0, total = 0;
  for (int64_t i = 0; i < count; ++i) wrong += buf[i] != static_cast<float>(n * (n + 1) / 2 * (i % 7 + 1));
  MPI_Allreduce(&wrong, &total, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
  std::fill(buf.begin(), buf.begin() + count, 0.0f);  // timing on zeros: no overflow, no denormals
  return total;
}

// Mean microseconds per all-reduce on the slowest rank.
template <typename Run>
double Time(const Options& o, Run run) {
  for (int i = 0; i < o.warmup; ++i) run();
  MPI_Barrier(MPI_COMM_WORLD);
  double start = MPI_Wtime();
  for (int i = 0; i < o.iters; ++i) run();
  double local = (MPI_Wtime() - start) / o.iters * 1e6, slowest = 0;
  MPI_Allreduce(&local, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return slowest;
}

int Main(int argc, char** argv) {
  Options o;
  CLI::App app{"All-reduce bandwidth: lockstep MpiCommunicator vs raw MPI_Allreduce (run under mpirun)"};
  app.add_option("-b,--minbytes", o.min_bytes, "smallest message size in bytes (K/M/G suffixes)")->capture_default_str();
  app.add_option("-e,--maxbytes", o.max_bytes, "largest message size in bytes (K/M/G suffixes)")->capture_default_str();
  app.add_option("-f,--stepfactor", o.step_factor, "multiply the size by this between rows")
      ->check(CLI::Range(2, 1 << 20))->capture_default_str();
  app.add_option("-w,--warmup", o.warmup, "untimed iterations per size")->check(CLI::Range(0, 1 << 20))->capture_default_str();
  app.add_option("-n,--iters", o.iters, "timed iterations per size")->check(CLI::Range(1, 1 << 20))->capture_default_str();
  app.add_option("-R,--rounds", o.rounds, "alternate ours/raw this many times per size, keep each one's best")
      ->check(CLI::Range(1, 1000))->capture_default_str();
  app.add_option("--track-arrivals", o.track_arrivals, "announce collective starts for deadline diagnostics")
      ->capture_default_str();
  app.add_option("-J,--json", o.json_path, "also write one JSON line per size to this file");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  Result<int64_t> min_bytes = ParseSize("--minbytes", o.min_bytes), max_bytes = ParseSize("--maxbytes", o.max_bytes);
  for (const Status& s : {min_bytes.status(), max_bytes.status()}) {
    if (!s.ok()) {
      std::fprintf(stderr, "bench_allreduce: %s\n", s.message().c_str());
      return 2;
    }
  }
  if (*min_bytes < 4 || *max_bytes < *min_bytes) {
    std::fprintf(stderr, "bench_allreduce: need 4 <= --minbytes (%" PRId64 ") <= --maxbytes (%" PRId64 ")\n",
                 *min_bytes, *max_bytes);
    return 2;
  }
  MpiOptions options;
  options.track_arrivals = o.track_arrivals;
  auto made = MpiCommunicator::Create("bench", options);
  if (!made.ok()) {
    std::fprintf(stderr, "bench_allreduce: %s\n", made.status().ToString().c_str());
    return 3;
  }
  std::unique_ptr<MpiCommunicator> comm = std::move(made).value();
  MPI_Comm raw;
  MPI_Comm_dup(MPI_COMM_WORLD, &raw);
  const int rank = comm->rank(), n = comm->world_size();
  std::vector<float> buf(*max_bytes / 4);
  std::FILE* json = nullptr;
  if (rank == 0 && !o.json_path.empty() && (json = std::fopen(o.json_path.c_str(), "w")) == nullptr) {
    std::fprintf(stderr, "bench_allreduce: cannot open --json file '%s'\n", o.json_path.c_str());
  }
  int open_failed = rank == 0 && !o.json_path.empty() && json == nullptr;
  MPI_Bcast(&open_failed, 1, MPI_INT, 0, MPI_COMM_WORLD);
  if (open_failed) return 2;
  if (rank == 0) {
    std::printf("# all-reduce, float32 sum, in place, %d ranks, %d warm-up + %d timed iterations, best of %d rounds\n",
                n, o.warmup, o.iters, o.rounds);
    std::printf("%12s %11s %7s | %10s %7s %7s %6s | %10s %7s %7s %6s | %6s\n", "size", "count", "type", "time",
                "algbw", "busbw", "#wrong", "time", "algbw", "busbw", "#wrong", "ratio");
    std::printf("%12s %11s %7s | %10s %7s %7s %6s | %10s %7s %7s %6s | %6s\n", "(B)", "(elements)", "", "ours(us)",
                "(GB/s)", "(GB/s)", "", "raw(us)", "(GB/s)", "(GB/s)", "", "o/r");
  }
  std::vector<std::string> json_lines;
  int64_t total_wrong = 0;
  for (int64_t bytes = *min_bytes; bytes <= *max_bytes; bytes *= o.step_factor) {
    const int64_t count = bytes / 4;
    auto run_ours = [&] {
      Status s = comm->AllReduce(buf.data(), count, DataType::kFloat32, ReduceOp::kSum, {"bench"})
                     ->Wait(comm->default_deadline());
      if (!s.ok()) comm->Abort(s.ToString());
    };
    auto run_raw = [&] { MPI_Allreduce(MPI_IN_PLACE, buf.data(), static_cast<int>(count), MPI_FLOAT, MPI_SUM, raw); };
    Measure ours, mpi;
    ours.wrong = Check(buf, count, rank, n, run_ours);
    mpi.wrong = Check(buf, count, rank, n, run_raw);
    ours.time_us = mpi.time_us = 1e300;
    for (int round = 0; round < o.rounds; ++round) {  // alternate so drift hits both alike
      ours.time_us = std::min(ours.time_us, Time(o, run_ours));
      mpi.time_us = std::min(mpi.time_us, Time(o, run_raw));
    }
    total_wrong += ours.wrong + mpi.wrong;
    const double size = static_cast<double>(count) * 4, factor = 2.0 * (n - 1) / n;
    double ours_alg = size / ours.time_us / 1e3, raw_alg = size / mpi.time_us / 1e3;
    double ratio = (ours_alg * factor) / (raw_alg * factor);
    if (rank == 0) {
      std::printf("%12.0f %11" PRId64 " %7s | %10.1f %7.3f %7.3f %6" PRId64 " | %10.1f %7.3f %7.3f %6" PRId64 " | %6.3f\n",
                  size, count, "float", ours.time_us, ours_alg, ours_alg * factor, ours.wrong, mpi.time_us, raw_alg,
                  raw_alg * factor, mpi.wrong, ratio);
      std::fflush(stdout);
      char line[512];
      std::snprintf(line, sizeof(line),
                    "{\"bench\":\"allreduce\",\"ranks\":%d,\"size_bytes\":%.0f,\"count\":%" PRId64
                    ",\"type\":\"float32\",\"ours\":{\"time_us\":%.2f,\"algbw_gbps\":%.4f,\"busbw_gbps\":%.4f,"
                    "\"wrong\":%" PRId64 "},\"raw_mpi\":{\"time_us\":%.2f,\"algbw_gbps\":%.4f,\"busbw_gbps\":%.4f,"
                    "\"wrong\":%" PRId64 "},\"ratio_busbw\":%.4f}",
                    n, size, count, ours.time_us, ours_alg, ours_alg * factor, ours.wrong, mpi.time_us, raw_alg,
                    raw_alg * factor, mpi.wrong, ratio);
      json_lines.push_back(line);
    }
    if (bytes > *max_bytes / o.step_factor) break;  // the next step would pass the maximum (or overflow)
  }
  if (rank == 0) {
    for (const std::string& line : json_lines) {
      std::printf("%s\n", line.c_str());
      if (json) std::fprintf(json, "%s\n", line.c_str());
    }
    if (json) std::fclose(json);
    std::printf("%s\n", total_wrong == 0 ? "OK" : "FAILED");
  }
  MPI_Comm_free(&raw);
  return total_wrong == 0 ? 0 : 1;
}

}  // namespace
}  // namespace lockstep::comm

int main(int argc, char** argv) { return lockstep::comm::Main(argc, argv); }
