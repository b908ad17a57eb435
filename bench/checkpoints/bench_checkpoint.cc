// bench_checkpoint: checkpoint save and restore throughput against the raw
// sequential bandwidth of the same disk, measured in the same run, interleaved:
//   raw_write  one write() of the whole buffer + fsync
//   save       SaveCheckpoint by R thread ranks (shards, fsyncs, manifest, renames)
//   raw_read   every rank preads the checkpoint's own shard file (same blocks)
//   restore    CheckpointReader::Read of every rank's range, checksums verified
// Both reads start with the files' pages dropped from the page cache.
// and the training-loop stall of CheckpointService::Submit, async vs sync.
// GB/s = bytes / time (1 GB = 1e9 B); ratio = ours / raw (goal >= 0.8); medians of
// -n runs. Page cache: each file is dropped with posix_fadvise(DONTNEED) after its
// fsync (works unprivileged); the table says whether that worked ("cold") or not.
// Correctness: every restore is compared bytewise; exit 1 on a mismatch.
#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>

#include "checkpoints/checkpoint.h"

namespace {

using namespace lockstep;
using namespace lockstep::ckpt;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int64_t ParseSize(const std::string& s) {
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  const std::string unit = end;
  const int64_t mult = unit == "K" ? 1 << 10 : unit == "M" ? 1 << 20 : unit == "G" ? 1 << 30 : 1;
  if (v <= 0 || !(unit.empty() || unit == "K" || unit == "M" || unit == "G"))
    throw CLI::ValidationError("size", s);
  return static_cast<int64_t>(v * mult);
}

// Drops a file's clean pages from the page cache; true when it worked.
bool DropCache(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return false;
  bool ok = ::fdatasync(fd) == 0 && ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0;
  ::close(fd);
  return ok;
}

bool DropCacheDir(const std::string& dir) {
  bool ok = true;
  for (const auto& e : std::filesystem::directory_iterator(dir)) ok &= DropCache(e.path());
  return ok;
}

double RawWrite(const std::string& path, const char* data, int64_t bytes) {
  auto t0 = Clock::now();
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  for (int64_t done = 0; done < bytes;) {  // one call; the kernel caps it near 2 GiB
    ssize_t w = ::write(fd, data + done, static_cast<size_t>(bytes - done));
    if (w <= 0) std::perror("raw write"), std::exit(1);
    done += w;
  }
  ::fsync(fd);
  ::close(fd);
  return Seconds(t0);
}

double RawRead(const std::string& path, char* out, int64_t bytes) {
  auto t0 = Clock::now();
  int fd = ::open(path.c_str(), O_RDONLY);
  for (int64_t done = 0; done < bytes;) {
    ssize_t r = ::pread(fd, out + done, static_cast<size_t>(bytes - done), done);
    if (r <= 0) std::perror("raw read"), std::exit(1);
    done += r;
  }
  ::close(fd);
  return Seconds(t0);
}

CheckpointMeta Meta(int64_t step, int64_t elements) {
  CheckpointMeta m;
  m.step = step;
  m.buffers = {{"params", elements, "f32", {}}};
  return m;
}

// Runs fn(rank) on `world` threads and returns the wall time.
template <typename F>
double OnRanks(int world, F fn) {
  auto t0 = Clock::now();
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) threads.emplace_back(fn, r);
  for (auto& t : threads) t.join();
  return Seconds(t0);
}

struct Row {
  std::string op;
  int64_t bytes;
  int ranks;
  double seconds, raw_seconds;
  bool cold;
  int wrong;
};

void Print(const Row& r) {
  const double gbps = r.bytes / r.seconds / 1e9, raw = r.bytes / r.raw_seconds / 1e9;
  std::printf("%-9s %10lld %6d %10.1f %9.3f %9.3f %7.2f %-5s %7d\n", r.op.c_str(),
              static_cast<long long>(r.bytes >> 20), r.ranks, r.seconds * 1e3, gbps, raw,
              gbps / raw, r.cold ? "cold" : "warm", r.wrong);
  std::printf(
      "{\"bench\":\"checkpoint\",\"op\":\"%s\",\"bytes\":%lld,\"ranks\":%d,\"ms\":%.2f,\"GBps\":%."
      "4f,"
      "\"raw_GBps\":%.4f,\"ratio\":%.4f,\"cache\":\"%s\",\"wrong\":%d}\n",
      r.op.c_str(), static_cast<long long>(r.bytes), r.ranks, r.seconds * 1e3, gbps, raw,
      gbps / raw, r.cold ? "cold" : "warm", r.wrong);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_checkpoint: checkpoint save/restore throughput vs raw disk bandwidth"};
  std::string dir = "/tmp/lockstep-bench-ckpt";
  std::vector<std::string> sizes = {"256M", "1G"};
  std::vector<int> ranks = {1, 2};
  int iters = 3;
  app.add_option("-d,--dir", dir, "Scratch directory on the disk to measure (removed afterwards)");
  app.add_option("-s,--sizes", sizes, "Total checkpoint sizes (K/M/G suffixes)")->delimiter(',');
  app.add_option("-r,--ranks", ranks, "Thread-rank counts")->delimiter(',');
  app.add_option("-n,--iters", iters, "Runs per measurement (median reported)")
      ->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);

  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string raw_file = dir + "/raw.bin", run_dir = dir + "/run";
  int total_wrong = 0;
  int64_t next_step = 1;  // unique across runs: retention keeps the newest steps
  double worst_ratio = 1e9;
  std::printf("%-9s %10s %6s %10s %9s %9s %7s %-5s %7s\n", "op", "size", "ranks", "time", "ours",
              "raw", "ratio", "cache", "#wrong");
  std::printf("%-9s %10s %6s %10s %9s %9s %7s %-5s %7s\n", "", "(MiB)", "", "(ms)", "(GB/s)",
              "(GB/s)", "(x raw)", "", "");
  for (const std::string& size_text : sizes) {
    const int64_t bytes = ParseSize(size_text) / 4 * 4, elements = bytes / 4;
    std::vector<float> src(static_cast<size_t>(elements)), dst(static_cast<size_t>(elements));
    for (int64_t i = 0; i < elements; ++i) src[i] = static_cast<float>(i % 100003) * 0.5f;
    for (int world : ranks) {
      std::vector<double> raw_w, raw_r, save, restore;
      bool cold = true;
      int wrong = 0;
      for (int it = 0; it < iters; ++it) {
        raw_w.push_back(RawWrite(raw_file, reinterpret_cast<const char*>(src.data()), bytes));
        std::filesystem::remove(raw_file);

        const int64_t step = next_step++;
        auto coords = MakeThreadCoordinators(world);
        std::vector<Status> st(world);
        save.push_back(OnRanks(world, [&](int r) {
          WriterOptions o;
          o.run_dir = run_dir;
          o.coordinator = coords[r].get();
          o.retention.keep_last = 1;
          auto [b, e] = EvenSplit(elements, world, r);
          auto saved = SaveCheckpoint(o, Meta(step, elements), {{"params", b, e, src.data() + b}});
          if (!saved.ok()) st[r] = saved.status();
        }));
        for (const Status& s : st) {
          if (!s.ok())
            std::fprintf(stderr, "save failed: %s\n", s.ToString().c_str()), std::exit(1);
        }
        const std::string ck = JoinPath(CheckpointsDir(run_dir), StepDirName(step));
        // Raw read baseline on the very same files (same disk blocks, same cache
        // state): each rank preads its whole shard file, no checksums.
        cold &= DropCacheDir(ck);
        raw_r.push_back(OnRanks(world, [&](int r) {
          auto [b, e] = EvenSplit(elements, world, r);
          RawRead(JoinPath(ck, ShardFileName(r, world)), reinterpret_cast<char*>(dst.data() + b),
                  (e - b) * 4);
        }));
        cold &= DropCacheDir(ck);
        std::fill(dst.begin(), dst.end(), -1.0f);
        restore.push_back(OnRanks(world, [&](int r) {
          auto reader = CheckpointReader::Open(ck);
          auto [b, e] = EvenSplit(elements, world, r);
          Status s =
              reader.ok() ? (*reader)->Read("params", b, e, dst.data() + b) : reader.status();
          if (!s.ok())
            std::fprintf(stderr, "restore failed: %s\n", s.ToString().c_str()), std::exit(1);
        }));
        wrong += std::memcmp(src.data(), dst.data(), static_cast<size_t>(bytes)) != 0;
      }
      total_wrong += wrong;
      Row w{"save", bytes, world, Median(save), Median(raw_w), true, 0};
      Row rd{"restore", bytes, world, Median(restore), Median(raw_r), cold, wrong};
      Print(w);
      Print(rd);
      worst_ratio =
          std::min({worst_ratio, Median(raw_w) / Median(save), Median(raw_r) / Median(restore)});
    }
    std::filesystem::remove_all(run_dir);

    // Stall of the training loop per checkpoint, one rank: Submit's duration.
    for (bool async : {false, true}) {
      WriterOptions o;
      o.run_dir = run_dir;
      o.retention.keep_last = 1;
      auto service = CheckpointService::Create(o, async);
      std::vector<double> stall;
      for (int it = 0; it < iters; ++it) {
        auto t0 = Clock::now();
        Status s =
            (*service)->Submit(Meta(next_step++, elements), {{"params", 0, elements, src.data()}});
        stall.push_back(Seconds(t0));
        if (s.ok()) s = (*service)->WaitIdle();  // measure each save alone
        if (!s.ok())
          std::fprintf(stderr, "service save failed: %s\n", s.ToString().c_str()), std::exit(1);
      }
      const double ms = Median(stall) * 1e3;
      std::printf("%-9s %10lld %6d %10.1f %9s %9s %7s %-5s %7d\n", async ? "stall_as" : "stall_sy",
                  static_cast<long long>(bytes >> 20), 1, ms, "-", "-", "-", "-", 0);
      std::printf(
          "{\"bench\":\"checkpoint\",\"op\":\"%s\",\"bytes\":%lld,\"ranks\":1,\"ms\":%.2f}\n",
          async ? "stall_async" : "stall_sync", static_cast<long long>(bytes), ms);
    }
    std::filesystem::remove_all(run_dir);
  }
  std::filesystem::remove_all(dir);
  std::printf(
      "# save/restore vs raw: worst ratio %.2f (goal >= 0.80); stall_sy/stall_as = Submit ms, "
      "sync/async\n",
      worst_ratio);
  std::printf("%s\n", total_wrong == 0 ? "OK" : "FAILED: restored data differs");
  return total_wrong == 0 ? 0 : 1;
}
