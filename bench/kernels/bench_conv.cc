// bench_conv: the backend's convolutions (Backend::Conv2dForward / BackwardData /
// BackwardFilter, exactly what a Conv2D layer calls) per path and precision, in one
// run: im2col + cuBLASLt and cuDNN, each in fp32 (FMA) and with bf16 GEMM inputs
// (training.precision BF16_GEMM: operands rounded to bf16, then TF32 tensor cores),
// so the ratio bf16 / fp32 on the same path and pass says what BF16_GEMM buys a CNN
// on this device. Only ratios within the run mean anything; nothing is asserted on
// time.
//
//   bench_conv [--backend cuda|cpu] [--batch N] [--repeats R] [--shapes a,b] [--json PATH]
//     --backend  cuda (default; exit 2 without a usable device) or cpu (the CPU
//                backend's fp32 and emulated bf16 convolutions: checks the bench itself)
//     --batch    samples of the recipe CNN's layers (default 256; the 56x56 layers
//                take a quarter of it, at least 1)
//     --repeats  timed calls per pass, after 2 untimed ones (default 20)
//     --shapes   which of cnn_conv1, cnn_conv2, res_3x3, res_1x1 (default all)
//     --json     also write every row as one JSON object to PATH
//   Exit: 0 done, 1 bad flags or a non-finite result, 2 no usable CUDA device.
//
// Time: R calls queued back to back between two Backend::Synchronize(), divided by R
// (launch and host costs included, as in training). TFLOP/s = 2 N OH OW K C R S / time.
// ws_MiB: Conv2dWorkspaceBytes, which with bf16 includes the rounded operand copies.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bench/bench_flags.h"
#include "runtime/core/backend.h"
#include "runtime/core/cuda_backend.h"

namespace lockstep {
namespace {

struct NamedShape {
  const char* name;
  Conv2dShape s;
};

std::vector<NamedShape> Shapes(int64_t batch) {
  auto make = [](int64_t n, int64_t hw, int64_t c, int64_t k, int64_t kernel, int64_t pad) {
    Conv2dShape s;
    s.batch = n;
    s.in_h = s.in_w = hw;
    s.in_c = c;
    s.out_c = k;
    s.kernel_h = s.kernel_w = kernel;
    s.stride_h = s.stride_w = 1;
    s.pad_h = s.pad_w = pad;
    return s;
  };
  const int64_t quarter = std::max<int64_t>(1, batch / 4);
  return {{"cnn_conv1", make(batch, 28, 1, 32, 3, 0)},  // recipes/cnn.pbtxt (VALID)
          {"cnn_conv2", make(batch, 13, 32, 64, 3, 0)},
          {"res_3x3", make(quarter, 56, 64, 64, 3, 1)},  // a ResNet stage-1 block
          {"res_1x1", make(quarter, 56, 64, 256, 1, 0)}};
}

struct Config {
  std::string path, precision;
  CudaBackendOptions::ConvPath conv;
  GemmPrecision gemm;
};

struct Row {
  std::string shape, path, precision, pass;
  double ms = 0, tflops = 0, ws_mib = 0, vs_fp32 = 0;
};

// Host noise in [-1, 1), deterministic.
std::vector<float> Noise(int64_t n, uint32_t seed) {
  std::vector<float> v(static_cast<size_t>(n));
  uint32_t x = seed * 2654435761u + 1;
  for (float& e : v) {
    x = x * 1664525u + 1013904223u;
    e = static_cast<float>(x >> 8) / static_cast<float>(1 << 23) - 1.0f;
  }
  return v;
}

// Device buffers of one shape, freed with the bench.
class Buffers {
 public:
  Buffers(Backend& be, const Conv2dShape& s) : be_(be) {
    const int64_t xn = s.batch * s.in_h * s.in_w * s.in_c, wn = s.kernel_h * s.kernel_w * s.in_c * s.out_c,
                  yn = s.col_rows() * s.out_c;
    x = Upload(Noise(xn, 1));
    w = Upload(Noise(wn, 2));
    dy = Upload(Noise(yn, 3));
    y = Alloc(yn);
    dx = Alloc(xn);
    dw = Alloc(wn);
    ws = be.Allocate(std::max<size_t>(be.Conv2dWorkspaceBytes(s), 1));
    owned_.push_back(ws);
    y_count = yn;
    dw_count = wn;
  }
  ~Buffers() {
    for (void* p : owned_) be_.Free(p);
  }
  float *x, *w, *dy, *y, *dx, *dw;
  void* ws;
  int64_t y_count, dw_count;

 private:
  float* Alloc(int64_t n) {
    void* p = be_.Allocate(static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(float));
    owned_.push_back(p);
    return static_cast<float*>(p);
  }
  float* Upload(const std::vector<float>& host) {
    float* p = Alloc(static_cast<int64_t>(host.size()));
    be_.CopyFromHost(p, host.data(), host.size() * sizeof(float));
    return p;
  }
  Backend& be_;
  std::vector<void*> owned_;
};

// Seconds per call of `pass`, over `repeats` calls queued back to back.
double TimePass(Backend& be, int repeats, const std::function<void()>& pass) {
  for (int i = 0; i < 2; ++i) pass();
  be.Synchronize();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < repeats; ++i) pass();
  be.Synchronize();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / repeats;
}

bool Finite(Backend& be, const float* p, int64_t n) {
  std::vector<float> host(static_cast<size_t>(n));
  be.CopyToHost(host.data(), p, host.size() * sizeof(float));
  for (float v : host) {
    if (!std::isfinite(v)) return false;
  }
  return true;
}

struct Flags {
  bool cpu = false;
  int64_t batch = 256, repeats = 20;
  std::vector<std::string> shapes;  // empty: all
  std::string json_path;
};

// Returns -1 to go on, else the exit code (0 after --help, 1 on a bad flag).
int ParseFlags(int argc, char** argv, Flags* f) {
  const char* usage =
      "usage: bench_conv [--backend cuda|cpu] [--batch N] [--repeats R] [--shapes a,b] [--json PATH]\n";
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "-h" || flag == "--help") {
      std::printf("%s", usage);
      return 0;
    }
    const std::string value = i + 1 < argc ? argv[++i] : "";
    bool ok = !value.empty();
    if (flag == "--backend") {
      ok = ok && (value == "cuda" || value == "cpu");
      f->cpu = value == "cpu";
    } else if (flag == "--batch") {
      ok = ok && bench::ParseInt(value, 1, 1 << 20, &f->batch);
    } else if (flag == "--repeats") {
      ok = ok && bench::ParseInt(value, 1, 1000000, &f->repeats);
    } else if (flag == "--shapes") {
      bench::SplitCommas(value, &f->shapes);
    } else if (flag == "--json") {
      f->json_path = value;
    } else {
      ok = false;
    }
    if (!ok) {
      std::fprintf(stderr, "bench_conv: bad flag or value: %s %s\n%s", flag.c_str(), value.c_str(), usage);
      return 1;
    }
  }
  return -1;
}

}  // namespace
}  // namespace lockstep

int main(int argc, char** argv) {
  using namespace lockstep;
  Flags flags;
  if (const int rc = ParseFlags(argc, argv, &flags); rc >= 0) return rc;
  const bool cpu = flags.cpu;
  const int64_t batch = flags.batch;
  const int repeats = static_cast<int>(flags.repeats);
  const std::string& json_path = flags.json_path;
  const std::vector<NamedShape> all = Shapes(batch);
  std::vector<NamedShape> shapes;
  for (const NamedShape& shape : all) {
    if (flags.shapes.empty() || std::count(flags.shapes.begin(), flags.shapes.end(), shape.name) > 0) {
      shapes.push_back(shape);
    }
  }
  for (const std::string& name : flags.shapes) {
    if (std::none_of(all.begin(), all.end(), [&](const NamedShape& shape) { return name == shape.name; })) {
      std::fprintf(stderr, "bench_conv: unknown shape %s (cnn_conv1, cnn_conv2, res_3x3, res_1x1)\n", name.c_str());
      return 1;
    }
  }
  std::string why;
  if (!cpu && !CudaBackendAvailable(&why)) {
    std::fprintf(stderr, "bench_conv: no usable CUDA device: %s\n", why.c_str());
    return 2;
  }
  using Path = CudaBackendOptions::ConvPath;
  std::vector<Config> configs;
  for (const char* precision : {"fp32", "bf16"}) {
    const GemmPrecision gemm = std::string(precision) == "bf16" ? GemmPrecision::kBf16Inputs : GemmPrecision::kFp32;
    if (cpu) {
      configs.push_back({"cpu", precision, Path::kAuto, gemm});
    } else {
      configs.push_back({"im2col", precision, Path::kIm2col, gemm});
      configs.push_back({"cudnn", precision, Path::kCudnn, gemm});
    }
  }

  std::printf("# bench_conv: %s backend, %d timed calls per pass\n", cpu ? "CPU" : "CUDA", repeats);
  std::vector<Row> rows;
  bool ok = true;
  for (const Config& c : configs) {
    CudaBackendOptions options;
    options.device = 0;
    options.conv = c.conv;
    options.gemm_precision = c.gemm;
    Result<std::unique_ptr<Backend>> created =
        cpu ? Result<std::unique_ptr<Backend>>(CreateCpuBackend(c.gemm)) : CreateCudaBackend(options);
    if (!created.ok()) {
      std::fprintf(stderr, "bench_conv: %s %s: %s\n", c.path.c_str(), c.precision.c_str(),
                   created.status().ToString().c_str());
      ok = false;
      continue;
    }
    Backend& be = **created;
    for (const NamedShape& shape : shapes) {
      const Conv2dShape& s = shape.s;
      Buffers b(be, s);
      const double flops = 2.0 * static_cast<double>(s.col_rows()) * s.out_c * s.col_cols();
      const double ws_mib = static_cast<double>(be.Conv2dWorkspaceBytes(s)) / (1 << 20);
      const struct {
        const char* name;
        std::function<void()> call;
      } passes[] = {
          {"forward", [&] { be.Conv2dForward(s, b.x, b.w, b.y, b.ws); }},
          {"bwd_data", [&] { be.Conv2dBackwardData(s, b.dy, b.w, b.dx, b.ws); }},
          {"bwd_filt", [&] { be.Conv2dBackwardFilter(s, b.x, b.dy, 0.0f, b.dw, b.ws); }},
      };
      for (const auto& pass : passes) {
        Row r{shape.name, c.path, c.precision, pass.name};
        const double seconds = TimePass(be, repeats, pass.call);
        r.ms = seconds * 1e3;
        r.tflops = flops / seconds / 1e12;
        r.ws_mib = ws_mib;
        rows.push_back(r);
      }
      if (!Finite(be, b.y, b.y_count) || !Finite(be, b.dw, b.dw_count)) {
        std::fprintf(stderr, "bench_conv: %s %s %s: a non-finite result\n", shape.name, c.path.c_str(),
                     c.precision.c_str());
        ok = false;
      }
    }
  }
  // bf16 against fp32 on the same shape, path and pass: > 1 is faster.
  for (Row& r : rows) {
    for (const Row& base : rows) {
      if (r.precision == "bf16" && base.precision == "fp32" && base.shape == r.shape && base.path == r.path &&
          base.pass == r.pass) {
        r.vs_fp32 = base.ms / r.ms;
      }
    }
  }
  std::printf("%-10s %-7s %-5s %-8s %10s %9s %8s %8s\n", "shape", "path", "prec", "pass", "ms", "TFLOP/s", "ws_MiB",
              "vs_fp32");
  std::FILE* json = json_path.empty() ? nullptr : std::fopen(json_path.c_str(), "w");
  if (!json_path.empty() && json == nullptr) {
    std::fprintf(stderr, "bench_conv: cannot write %s\n", json_path.c_str());
    ok = false;
  }
  for (const Row& r : rows) {
    char ratio[16] = "-";
    if (r.vs_fp32 > 0) std::snprintf(ratio, sizeof ratio, "%.2f", r.vs_fp32);
    std::printf("%-10s %-7s %-5s %-8s %10.3f %9.3f %8.1f %8s\n", r.shape.c_str(), r.path.c_str(), r.precision.c_str(),
                r.pass.c_str(), r.ms, r.tflops, r.ws_mib, ratio);
  }
  for (const Row& r : rows) {
    char line[512];
    std::snprintf(line, sizeof line,
                  "{\"bench\":\"conv\",\"backend\":\"%s\",\"shape\":\"%s\",\"path\":\"%s\",\"precision\":\"%s\","
                  "\"pass\":\"%s\",\"ms\":%.5f,\"tflops\":%.5f,\"workspace_mib\":%.3f,\"vs_fp32\":%.4f}\n",
                  cpu ? "cpu" : "cuda", r.shape.c_str(), r.path.c_str(), r.precision.c_str(), r.pass.c_str(), r.ms,
                  r.tflops, r.ws_mib, r.vs_fp32);
    std::fputs(line, stdout);
    if (json != nullptr) std::fputs(line, json);
  }
  if (json != nullptr) std::fclose(json);
  return ok ? 0 : 1;
}
