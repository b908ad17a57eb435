// Header-only helpers of bench_kernels_cuda: device buffers that report to a
// memory meter (cudaMemGetInfo sampled after every allocation, for the peak),
// event timing of back-to-back calls, device fills from a host generator, and the
// command-line count parser. Single-threaded; one device, one stream.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_check.h"

namespace lockstep::bench {

// Device memory in use (total - free) as the driver reports it: before the run,
// its peak (sampled after each allocation, which is when use grows), and now.
class MemoryMeter {
 public:
  MemoryMeter() {
    Sample();
    before_ = used_;
  }
  void Sample() {
    size_t free_bytes = 0, total_bytes = 0;
    LS_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    total_ = total_bytes;
    used_ = total_bytes - free_bytes;
    peak_ = std::max(peak_, used_);
  }
  size_t total() const { return total_; }
  size_t before() const { return before_; }
  size_t peak() const { return peak_; }
  size_t used() const { return used_; }

 private:
  size_t total_ = 0, used_ = 0, peak_ = 0, before_ = 0;
};

// One cudaMalloc, freed on scope exit; each benchmark section owns its buffers, so
// the peak is the largest section, not the sum.
class DeviceBuffer {
 public:
  DeviceBuffer(size_t bytes, MemoryMeter* meter) : bytes_(bytes) {
    LS_CUDA_CHECK(cudaMalloc(&ptr_, bytes_ > 0 ? bytes_ : 1));
    meter->Sample();
  }
  ~DeviceBuffer() { cudaFree(ptr_); }  // no check: may run while unwinding
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  float* f() const { return as<float>(); }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// splitmix64: fast enough to fill gigabytes on the host, and the fills are only
// data for memory-bound kernels (their speed does not depend on the values).
inline uint64_t SplitMix64(uint64_t* state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// dst[0, n) = uniform floats in [lo, hi), uploaded in 1 Mi-element chunks so host
// memory stays small whatever n is. Synchronous (cudaMemcpy + device sync).
inline void FillUniform(float* dst, int64_t n, float lo, float hi, uint64_t seed) {
  constexpr int64_t kChunk = int64_t{1} << 20;
  std::vector<float> host(static_cast<size_t>(std::min(n, kChunk)));
  uint64_t state = seed;
  for (int64_t at = 0; at < n; at += kChunk) {
    const int64_t len = std::min(kChunk, n - at);
    for (int64_t i = 0; i < len; ++i) {
      const float u = static_cast<float>(SplitMix64(&state) >> 40) * (1.0f / 16777216.0f);
      host[static_cast<size_t>(i)] = lo + (hi - lo) * u;
    }
    LS_CUDA_CHECK(cudaMemcpy(dst + at, host.data(), static_cast<size_t>(len) * sizeof(float),
                             cudaMemcpyHostToDevice));
  }
  // Pageable cudaMemcpy may return before its DMA has landed.
  LS_CUDA_CHECK(cudaDeviceSynchronize());
}

// dst[0, n) = uniform integers in [0, classes).
inline void FillLabels(int32_t* dst, int64_t n, int32_t classes, uint64_t seed) {
  std::vector<int32_t> host(static_cast<size_t>(n));
  uint64_t state = seed;
  for (int32_t& v : host) v = static_cast<int32_t>(SplitMix64(&state) % uint64_t(classes));
  LS_CUDA_CHECK(
      cudaMemcpy(dst, host.data(), host.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
  LS_CUDA_CHECK(cudaDeviceSynchronize());
}

struct Timing {
  double median_ms = 0.0, best_ms = 0.0;
  double host_us = 0.0;  // median host time to enqueue one call (launch + any host work)
};

constexpr int kWarmups = 3;

// `warmups` untimed calls, then `repeats` calls enqueued back to back on `stream`
// with an event between consecutive calls: call i's time is event i -> i + 1. The
// host runs ahead of the device whenever a call's host cost is below its device
// time, so the intervals are pure device time; when the host is slower (tiny GEMMs)
// they include the host's enqueue time, which host_us then shows.
inline Timing TimeCalls(cudaStream_t stream, int repeats, const std::function<void()>& call,
                        int warmups = kWarmups) {
  using Clock = std::chrono::steady_clock;
  for (int i = 0; i < warmups; ++i) call();
  std::vector<cudaEvent_t> events(static_cast<size_t>(repeats) + 1);
  for (cudaEvent_t& e : events) LS_CUDA_CHECK(cudaEventCreate(&e));
  std::vector<double> host_us(static_cast<size_t>(repeats));
  LS_CUDA_CHECK(cudaEventRecord(events[0], stream));
  for (int i = 0; i < repeats; ++i) {
    const auto t0 = Clock::now();
    call();
    host_us[static_cast<size_t>(i)] =
        std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
    LS_CUDA_CHECK(cudaEventRecord(events[static_cast<size_t>(i) + 1], stream));
  }
  LS_CUDA_CHECK(cudaEventSynchronize(events.back()));
  std::vector<double> ms(static_cast<size_t>(repeats));
  for (size_t i = 0; i < ms.size(); ++i) {
    float t = 0.0f;
    LS_CUDA_CHECK(cudaEventElapsedTime(&t, events[i], events[i + 1]));
    ms[i] = t;
  }
  for (cudaEvent_t& e : events) LS_CUDA_CHECK(cudaEventDestroy(e));
  LS_CUDA_CHECK(cudaGetLastError());  // an asynchronous fault of `call` surfaces here
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t h = v.size() / 2;
    return v.size() % 2 == 1 ? v[h] : 0.5 * (v[h - 1] + v[h]);
  };
  Timing t;
  t.median_ms = median(ms);
  t.best_ms = *std::min_element(ms.begin(), ms.end());
  t.host_us = median(host_us);
  return t;
}

// "67108864", "64M", "64Mi", "1G": a positive count with an optional binary
// multiplier (K = 2^10, M = 2^20, G = 2^30). False on anything else or overflow.
inline bool ParseCount(const std::string& text, int64_t* out) {
  if (text.empty() || text[0] < '0' || text[0] > '9') return false;
  char* end = nullptr;
  const unsigned long long base = std::strtoull(text.c_str(), &end, 10);
  std::string suffix(end);
  if (suffix.size() == 2 && suffix[1] == 'i') suffix.resize(1);
  int shift = 0;
  if (suffix == "K" || suffix == "k") {
    shift = 10;
  } else if (suffix == "M" || suffix == "m") {
    shift = 20;
  } else if (suffix == "G" || suffix == "g") {
    shift = 30;
  } else if (!suffix.empty()) {
    return false;
  }
  if (base == 0 || base > (static_cast<unsigned long long>(INT64_MAX) >> shift)) return false;
  *out = static_cast<int64_t>(base << shift);
  return true;
}

// Minimal JSON string quoting (names and device strings only).
inline std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out + "\"";
}

}  // namespace lockstep::bench
