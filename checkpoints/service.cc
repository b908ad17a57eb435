#include "checkpoints/service.h"

#include <chrono>
#include <cstring>

namespace lockstep::ckpt {
namespace {

double MsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

Result<std::unique_ptr<CheckpointService>> CheckpointService::Create(WriterOptions options,
                                                                     bool async) {
  if (options.run_dir.empty())
    return InvalidArgumentError("checkpoint service needs a run directory");
  if (options.fs == nullptr) return InvalidArgumentError("checkpoint service needs a filesystem");
  std::unique_ptr<CheckpointService> s(new CheckpointService(std::move(options), async));
  if (async) s->thread_ = std::thread([p = s.get()] { p->Loop(); });
  return s;
}

CheckpointService::CheckpointService(WriterOptions options, bool async)
    : options_(std::move(options)), async_(async) {}

CheckpointService::~CheckpointService() {
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !job_.has_value(); });
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Status CheckpointService::Submit(const CheckpointMeta& meta,
                                 const std::vector<ShardSlice>& slices) {
  auto t0 = std::chrono::steady_clock::now();
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !job_.has_value(); });
  }
  const double wait_ms = MsSince(t0);

  auto t1 = std::chrono::steady_clock::now();
  Job job{meta, slices};
  size_t bytes = 0;
  for (const ShardSlice& s : slices) {
    if (s.data != nullptr && s.end > s.begin) bytes += static_cast<size_t>(s.end - s.begin) * 4;
  }
  if (async_) {
    if (bytes > staging_capacity_) {
      staging_.reset(new char[bytes]);  // uninitialised: it is overwritten right away
      staging_capacity_ = bytes;
    }
    size_t at = 0;
    for (ShardSlice& s : job.slices) {
      // Malformed slices travel as they are: SaveCheckpoint reports them on every rank.
      if (s.data == nullptr || s.end <= s.begin) continue;
      const size_t n = static_cast<size_t>(s.end - s.begin) * 4;
      std::memcpy(staging_.get() + at, s.data, n);
      s.data = staging_.get() + at;
      at += n;
    }
  }
  const double snapshot_ms = MsSince(t1);
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.bytes = static_cast<int64_t>(bytes);
    stats_.last_wait_ms = wait_ms;
    stats_.total_wait_ms += wait_ms;
    stats_.last_snapshot_ms = snapshot_ms;
    stats_.total_snapshot_ms += snapshot_ms;
    if (async_) job_ = std::move(job);
  }
  if (!async_) {
    Persist(job);
    return last_status();
  }
  cv_.notify_all();
  return Status::Ok();
}

Status CheckpointService::WaitIdle() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !job_.has_value(); });
  return last_status_;
}

Status CheckpointService::last_status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_status_;
}

ServiceStats CheckpointService::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void CheckpointService::Persist(const Job& job) {
  auto t0 = std::chrono::steady_clock::now();
  Result<std::string> dir = SaveCheckpoint(options_, job.meta, job.slices);
  const double persist_ms = MsSince(t0);
  std::lock_guard<std::mutex> lock(mu_);
  stats_.last_persist_ms = persist_ms;
  stats_.total_persist_ms += persist_ms;
  if (dir.ok()) {
    ++stats_.saves;
    stats_.last_committed_dir = *dir;
    last_status_ = Status::Ok();
  } else {
    ++stats_.failures;
    stats_.last_error = dir.status().message();
    last_status_ = dir.status();
  }
}

void CheckpointService::Loop() {
  while (true) {
    const Job* job = nullptr;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || job_.has_value(); });
      if (!job_.has_value()) return;  // stop_ with nothing pending
      job = &*job_;
    }
    // job_ is not touched by Submit while it holds a value, so it is read unlocked.
    Persist(*job);
    {
      std::lock_guard<std::mutex> lock(mu_);
      job_.reset();
    }
    cv_.notify_all();
  }
}

}  // namespace lockstep::ckpt
