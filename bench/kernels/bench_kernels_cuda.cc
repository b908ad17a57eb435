// bench_kernels_cuda: the CUDA backend's memory-bound kernels as a fraction of the
// device's own device-to-device copy bandwidth, and its GEMM (cuBLASLt, Sgemm) as a
// fraction of plain cuBLAS (cublasSgemm) on the same shapes, all measured in one run.
// Only ratios within the run mean anything; nothing is asserted on absolute time.
// The GEMM results are also checked against cuBLAS (exit 1 on a mismatch).
//
//   bench_kernels_cuda [--size N] [--repeats R] [--json PATH]
//     --size     elements per array of the memory-bound kernels (K/M/G = 2^10/20/30;
//                default 64M; rounded down to a multiple of 1024, at least 64K)
//     --repeats  timed calls per op, after 3 untimed warm-ups (default 20)
//     --json     also write every row as one JSON object to PATH
//   Exit: 0 done, 1 bad flags or a GEMM check failed, 2 no usable CUDA device.
//
// Metrics. Copy: cudaMemcpyAsync device-to-device of 4n bytes, counted 8n (read +
// write), best of R after ~0.3 s of untimed copies; GB/s = 1e9 bytes/s. Kernels:
// median of R per-call times; "bytes" is the least traffic the call must make, every
// array read and/or written exactly once (caches and launch-internal scratch
// ignored); of_copy = kernel GB/s / copy GB/s. The goal is of_copy >= 0.80
// for the elementwise, optimizer and reduce groups ("goal" column: ok / below; "-"
// for the other groups).
// Shapes: n = --size; bias (n/1024, 1024), bias_bwd also (n/128, 128); dropout rows
// of 1024; xent (n/C, C) for C = 10 and 1000 (its per-row scratch, 12R bytes written
// and read, is not counted); pool NHWC (n/64^3, 64, 64, 64), window 2x2, stride 2.
// Byte formulas, with n elements, an (R, C) matrix, X pool inputs and Y pool outputs
// (float 4 B, bf16 2 B, mask 1 B, label / argmax 4 B):
//   bias_relu_fwd, bias_add  y read+write 8RC, bias 4C              = 8RC + 4C
//   bias_bwd                 dy 4RC, dbias write 4C (beta 0)         = 4RC + 4C
//   relu/tanh/sigmoid_fwd    x 4n, y 4n                              = 8n
//   relu/tanh/sigmoid_bwd    y 4n, dy 4n, dx 4n                      = 12n
//   scale                    x read+write 8n                         = 8n
//   axpy                     x 4n, y read+write 8n                   = 12n
//   sgd_momentum             param rw 8n, grad 4n, buf rw 8n         = 20n
//   adam                     param rw 8n, grad 4n, m rw 8n, v rw 8n  = 28n
//   sum_of_squares           x 4n (the partials are negligible)      = 4n
//   dropout_fwd              x 4n, y 4n, mask 1n                     = 9n
//   dropout_bwd              dy 4n, mask 1n, dx 4n                   = 9n
//   fp32_to_bf16, bf16_to_fp32  4n + 2n                              = 6n
//   xent_cC (softmax + xent) logits 4RC, labels 4R, dlogits 4RC      = 8RC + 4R
//   maxpool_fwd (2x2/2)      x 4X, y 4Y, argmax 4Y                   = 4X + 8Y
//   maxpool_bwd              dy 4Y, argmax 4Y, dx 4X                 = 4X + 8Y
// GEMM: TFLOP/s = 2mnk / time (epilogue work not counted); ratio = ours TFLOP/s /
// cuBLAS TFLOP/s, against cublasSgemm without epilogue in the same precision (fp32:
// default math; tf32: CUBLAS_TF32_TENSOR_OP_MATH), so the bias rows include the
// epilogue's cost. Small shapes are host-bound: their time includes the host's
// enqueue cost (ours: the cuBLASLt heuristic query per call), shown as host_us.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "bench/kernels/bench_kernels_cuda_util.h"
#include "kernels/cuda/convert.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/dropout.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/loss.h"
#include "kernels/cuda/optimizer.h"
#include "kernels/cuda/pool.h"
#include "kernels/cuda/reduce.h"

namespace lockstep::bench {
namespace {

namespace kc = ::lockstep::kernels::cuda;
using kc::Activation;

constexpr double kGoalFraction = 0.80;

struct Options {
  int64_t size = int64_t{64} << 20;
  int repeats = 20;
  std::string json;
};

// Returns -1 to go on, else the exit code (0 after --help, 1 on a bad flag).
int ParseFlags(int argc, char** argv, Options* o) {
  const char* usage =
      "usage: bench_kernels_cuda [--size N[K|M|G]] [--repeats R] [--json PATH]\n"
      "  --size     elements per array of the memory-bound kernels (default 64M)\n"
      "  --repeats  timed calls per op after 3 warm-ups; the median is reported (default 20)\n"
      "  --json     write all rows as one JSON object to PATH\n";
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i], value;
    if (flag == "-h" || flag == "--help") {
      std::printf("%s", usage);
      return 0;
    }
    const size_t eq = flag.find('=');
    if (eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag.resize(eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      std::fprintf(stderr, "bench_kernels_cuda: %s needs a value\n%s", flag.c_str(), usage);
      return 1;
    }
    int64_t count = 0;
    if (flag == "--size" && ParseCount(value, &count) && count >= (int64_t{64} << 10)) {
      o->size = count / 1024 * 1024;
    } else if (flag == "--repeats" && ParseCount(value, &count) && count <= 100000) {
      o->repeats = static_cast<int>(count);
    } else if (flag == "--json" && !value.empty()) {
      o->json = value;
    } else {
      std::fprintf(stderr, "bench_kernels_cuda: bad flag or value: %s %s\n%s", flag.c_str(),
                   value.c_str(), usage);
      return 1;
    }
  }
  return -1;
}

// One memory-bound kernel at one shape.
struct KernelRow {
  std::string op, group, shape, formula;
  double bytes = 0.0;
  Timing t;
  double gbps() const { return bytes / (t.median_ms * 1e-3) * 1e-9; }
  bool has_goal() const {
    return group == "elementwise" || group == "optimizer" || group == "reduce";
  }
};

void PrintKernelHeader() {
  std::printf("\n# memory-bound kernels: median time; bytes = least traffic (see formula)\n");
  std::printf("%-15s %-11s %-13s %-7s %9s %9s %8s %7s %5s\n", "op", "group", "shape", "bytes",
              "moved", "time", "bw", "of_copy", "goal");
  std::printf("%-15s %-11s %-13s %-7s %9s %9s %8s %7s %5s\n", "", "", "", "formula", "MB", "ms",
              "GB/s", "frac", ">=0.8");
}

const char* Goal(const KernelRow& r, double copy_gbps) {
  if (!r.has_goal()) return "-";
  return r.gbps() / copy_gbps >= kGoalFraction ? "ok" : "below";
}

void PrintKernelRow(const KernelRow& r, double copy_gbps) {
  std::printf("%-15s %-11s %-13s %-7s %9.1f %9.4f %8.1f %7.3f %5s\n", r.op.c_str(), r.group.c_str(),
              r.shape.c_str(), r.formula.c_str(), r.bytes * 1e-6, r.t.median_ms, r.gbps(),
              r.gbps() / copy_gbps, Goal(r, copy_gbps));
  std::fflush(stdout);  // a run cut short by a timeout keeps the rows it measured
}

// Everything a section needs to time its kernels and report them; rows are printed
// as they are measured.
struct Bench {
  const Options& opt;
  cudaStream_t stream;
  MemoryMeter* meter;
  std::vector<KernelRow>* rows;
  double copy_gbps;

  void Time(const std::string& op, const char* group, const std::string& shape, const char* formula,
            double bytes, const std::function<void()>& call) const {
    KernelRow r{op, group, shape, formula, bytes, TimeCalls(stream, opt.repeats, call)};
    PrintKernelRow(r, copy_gbps);
    rows->push_back(r);
  }
};

std::string Shape2(int64_t a, int64_t b) { return std::to_string(a) + "x" + std::to_string(b); }

// Reference bandwidth: bytes moved (read + write) per second of the best copy.
double BenchCopy(const Options& opt, cudaStream_t stream, MemoryMeter* meter, Timing* t) {
  const int64_t n = opt.size;
  DeviceBuffer src(4 * n, meter), dst(4 * n, meter);
  FillUniform(src.f(), n, -1.0f, 1.0f, 1);
  // The first timed numbers of the run: bring the clocks up first (~0.3 s of copies).
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
  while (std::chrono::steady_clock::now() < until) {
    for (int i = 0; i < 10; ++i) {
      LS_CUDA_CHECK(cudaMemcpyAsync(dst.f(), src.f(), 4 * n, cudaMemcpyDeviceToDevice, stream));
    }
    LS_CUDA_CHECK(cudaStreamSynchronize(stream));
  }
  *t = TimeCalls(stream, opt.repeats, [&] {
    LS_CUDA_CHECK(cudaMemcpyAsync(dst.f(), src.f(), 4 * n, cudaMemcpyDeviceToDevice, stream));
  });
  const double bytes = 8.0 * n;
  std::printf("\n# reference: device-to-device copy of %lld MiB, %.1f MB moved (read + write)\n",
              static_cast<long long>(4 * n >> 20), bytes * 1e-6);
  std::printf("%-16s %10s %10s %10s\n", "op", "best", "median", "bandwidth");
  std::printf("%-16s %10s %10s %10s\n", "", "ms", "ms", "GB/s");
  std::printf("%-16s %10.4f %10.4f %10.1f\n", "copy_d2d", t->best_ms, t->median_ms,
              bytes / (t->best_ms * 1e-3) * 1e-9);
  std::fflush(stdout);
  return bytes;
}

void BenchElementwise(const Bench& b) {
  const int64_t n = b.opt.size;
  const int64_t cols = 1024, rows = n / cols;  // --size is a multiple of 1024
  const double rc = double(rows) * cols;
  DeviceBuffer x(4 * n, b.meter), y(4 * n, b.meter), dy(4 * n, b.meter), dx(4 * n, b.meter);
  DeviceBuffer bias(4 * cols, b.meter), dbias(4 * cols, b.meter);
  FillUniform(x.f(), n, -1.0f, 1.0f, 2);
  FillUniform(dy.f(), n, -1.0f, 1.0f, 3);
  FillUniform(bias.f(), cols, -0.1f, 0.1f, 4);
  cudaStream_t s = b.stream;
  const std::string ns = std::to_string(n);

  struct Act {
    const char* name;
    Activation act;
  };
  for (const Act a : {Act{"relu", Activation::kRelu}, Act{"tanh", Activation::kTanh},
                      Act{"sigmoid", Activation::kSigmoid}}) {
    b.Time(std::string(a.name) + "_fwd", "elementwise", ns, "8n", 8.0 * n,
           [&] { kc::ActivationForward(a.act, x.f(), y.f(), n, s); });
    b.Time(std::string(a.name) + "_bwd", "elementwise", ns, "12n", 12.0 * n,
           [&] { kc::ActivationBackward(a.act, x.f(), y.f(), dy.f(), dx.f(), n, s); });
  }
  b.Time("scale", "elementwise", ns, "8n", 8.0 * n, [&] { kc::Scale(x.f(), n, 0.999f, s); });
  b.Time("axpy", "elementwise", ns, "12n", 12.0 * n, [&] { kc::Axpy(0.001f, x.f(), y.f(), n, s); });
  const std::string shape = Shape2(rows, cols);
  b.Time("bias_add", "elementwise", shape, "8RC+4C", 8.0 * rc + 4.0 * cols,
         [&] { kc::BiasAdd(y.f(), bias.f(), rows, cols, s); });
  b.Time("bias_relu_fwd", "elementwise", shape, "8RC+4C", 8.0 * rc + 4.0 * cols,
         [&] { kc::BiasActivationForward(y.f(), bias.f(), rows, cols, Activation::kRelu, s); });
  // Column sums: the narrow layer (128, the MLP's hidden width) and a convolution's
  // bias (32 filters over N*H*W rows, split into row chunks) are the hard cases.
  for (const int64_t c : {cols, int64_t{128}, int64_t{32}}) {
    const int64_t r = n / c;
    DeviceBuffer ws(kc::BiasBackwardWorkspaceBytes(r, c), b.meter);
    b.Time("bias_bwd", "elementwise", Shape2(r, c), "4RC+4C", 4.0 * r * c + 4.0 * c,
           [&] { kc::BiasBackward(dy.f(), r, c, 0.0f, dbias.f(), ws.as<void>(), s); });
  }
}

void BenchOptimizerReduce(const Bench& b) {
  const int64_t n = b.opt.size;
  DeviceBuffer param(4 * n, b.meter), grad(4 * n, b.meter), m(4 * n, b.meter), v(4 * n, b.meter);
  FillUniform(param.f(), n, -1.0f, 1.0f, 5);
  FillUniform(grad.f(), n, -1.0f, 1.0f, 6);
  LS_CUDA_CHECK(cudaMemsetAsync(m.f(), 0, 4 * n, b.stream));
  LS_CUDA_CHECK(cudaMemsetAsync(v.f(), 0, 4 * n, b.stream));
  cudaStream_t s = b.stream;
  const std::string ns = std::to_string(n);

  kc::SgdHyper sgd;
  sgd.momentum = 0.9f;
  sgd.weight_decay = 1e-4f;
  b.Time("sgd_momentum", "optimizer", ns, "20n", 20.0 * n,
         [&] { kc::SgdStep(sgd, param.f(), grad.f(), m.f(), n, s); });
  kc::AdamHyper adam;
  adam.weight_decay = 1e-4f;
  adam.step = 10;
  b.Time("adam", "optimizer", ns, "28n", 28.0 * n,
         [&] { kc::AdamStep(adam, param.f(), grad.f(), m.f(), v.f(), n, s); });

  DeviceBuffer partials(8 * kc::SumOfSquaresWorkspaceElems(n), b.meter), out(8, b.meter);
  b.Time("sum_of_squares", "reduce", ns, "4n", 4.0 * n,
         [&] { kc::SumOfSquares(grad.f(), n, out.as<double>(), partials.as<double>(), s); });
}

void BenchDropoutConvert(const Bench& b) {
  const int64_t n = b.opt.size;
  const int64_t cols = 1024, rows = n / cols;
  DeviceBuffer x(4 * n, b.meter), y(4 * n, b.meter), mask(n, b.meter), half(2 * n, b.meter);
  FillUniform(x.f(), n, -1.0f, 1.0f, 7);
  cudaStream_t s = b.stream;
  const std::string ns = std::to_string(n);
  kc::DropoutKey key;
  key.seed = 42;
  key.layer = 1;
  key.step = 7;
  b.Time("dropout_fwd", "dropout", Shape2(rows, cols), "9n", 9.0 * n, [&] {
    kc::DropoutForward(key, x.f(), y.f(), mask.as<uint8_t>(), rows, cols, 0, 0.1f, s);
  });
  b.Time("dropout_bwd", "dropout", ns, "9n", 9.0 * n,
         [&] { kc::DropoutBackward(y.f(), mask.as<uint8_t>(), x.f(), n, 0.1f, s); });
  b.Time("fp32_to_bf16", "convert", ns, "6n", 6.0 * n,
         [&] { kc::Fp32ToBf16(x.f(), half.as<uint16_t>(), n, s); });
  b.Time("bf16_to_fp32", "convert", ns, "6n", 6.0 * n,
         [&] { kc::Bf16ToFp32(half.as<uint16_t>(), y.f(), n, s); });
}

void BenchLoss(const Bench& b) {
  for (const int64_t classes : {int64_t{10}, int64_t{1000}}) {
    const int64_t rows = b.opt.size / classes;
    const int64_t elems = rows * classes;
    DeviceBuffer logits(4 * elems, b.meter), dlogits(4 * elems, b.meter), labels(4 * rows, b.meter);
    DeviceBuffer ws(kc::SoftmaxCrossEntropyWorkspaceBytes(rows), b.meter);
    DeviceBuffer loss(8, b.meter), correct(8, b.meter);
    FillUniform(logits.f(), elems, -4.0f, 4.0f, 8);
    FillLabels(labels.as<int32_t>(), rows, static_cast<int32_t>(classes), 9);
    const float scale = 1.0f / static_cast<float>(rows);
    b.Time("xent_c" + std::to_string(classes), "loss", Shape2(rows, classes), "8RC+4R",
           8.0 * elems + 4.0 * rows, [&] {
             kc::SoftmaxCrossEntropy(logits.f(), labels.as<int32_t>(), rows, classes, scale,
                                     dlogits.f(), loss.as<double>(), correct.as<int64_t>(),
                                     ws.as<void>(), b.stream);
           });
  }
}

void BenchPool(const Bench& b) {
  // A CNN activation: (N, 64, 64, 64) NHWC, 2x2 window, stride 2.
  kc::Pool2dShape p;
  p.in_h = p.in_w = p.channels = 64;
  const int64_t image = p.in_h * p.in_w * p.channels;
  // argmax is an int32 index into x, so the input stays under 2^31 elements.
  p.batch = std::clamp<int64_t>(b.opt.size / image, 1, INT32_MAX / image);
  const int64_t in = p.batch * image, out = p.batch * p.out_h() * p.out_w() * p.channels;
  DeviceBuffer x(4 * in, b.meter), dx(4 * in, b.meter), y(4 * out, b.meter), dy(4 * out, b.meter);
  DeviceBuffer argmax(4 * out, b.meter);
  FillUniform(x.f(), in, -1.0f, 1.0f, 10);
  FillUniform(dy.f(), out, -1.0f, 1.0f, 11);
  const std::string shape = std::to_string(p.batch) + "x64x64x64";
  const double bytes = 4.0 * in + 8.0 * out;
  b.Time("maxpool_fwd", "pool", shape, "4X+8Y", bytes,
         [&] { kc::MaxPool2dForward(p, x.f(), y.f(), argmax.as<int32_t>(), b.stream); });
  b.Time("maxpool_bwd", "pool", shape, "4X+8Y", bytes,
         [&] { kc::MaxPool2dBackward(p, dy.f(), argmax.as<int32_t>(), dx.f(), b.stream); });
}

// ---- GEMM

struct GemmShape {
  const char* name;
  int64_t m, n, k;
  bool trans_a, trans_b;
};

struct GemmRow {
  std::string shape, variant;
  GemmShape s;
  Timing ours, cublas;
  double max_rel_diff = 0.0, tolerance = 0.0;
  double tflops(const Timing& t) const {
    return 2.0 * double(s.m) * double(s.n) * double(s.k) / (t.median_ms * 1e-3) * 1e-12;
  }
  bool ok() const { return max_rel_diff <= tolerance; }
};

// max |got - want| / max |want| over the matrix: one number that is ~1e-7 for two fp32
// GEMMs summing in different orders and ~1e-3 for TF32 ones.
double MaxRelDiff(const std::vector<float>& got, const std::vector<float>& want) {
  double diff = 0.0, scale = 1e-30;
  for (size_t i = 0; i < want.size(); ++i) {
    diff = std::max(diff, std::fabs(double(got[i]) - double(want[i])));
    scale = std::max(scale, std::fabs(double(want[i])));
  }
  return std::isfinite(diff) ? diff / scale : INFINITY;
}

std::vector<float> Download(const DeviceBuffer& d, size_t count) {
  std::vector<float> h(count);
  LS_CUDA_CHECK(cudaDeviceSynchronize());
  LS_CUDA_CHECK(cudaMemcpy(h.data(), d.f(), count * sizeof(float), cudaMemcpyDeviceToHost));
  return h;
}

void PrintGemmHeader() {
  std::printf("\n# GEMM: ours = kernels::cuda::Sgemm (cuBLASLt), cublas = cublasSgemm, median\n");
  std::printf("%-20s %-15s %5s %5s %5s %2s %9s %8s %9s %8s %6s %8s %9s %5s\n", "shape", "variant",
              "m", "n", "k", "T", "ours", "ours", "cublas", "cublas", "ratio", "ours", "max_rel",
              "check");
  std::printf("%-20s %-15s %5s %5s %5s %2s %9s %8s %9s %8s %6s %8s %9s %5s\n", "", "", "", "", "",
              "", "ms", "TFLOP/s", "ms", "TFLOP/s", "o/c", "host_us", "diff", "");
}

void PrintGemmRow(const GemmRow& g) {
  const char* trans = g.s.trans_a ? "A" : (g.s.trans_b ? "B" : "-");
  std::printf("%-20s %-15s %5lld %5lld %5lld %2s %9.4f %8.2f %9.4f %8.2f %6.3f %8.1f %9.2e %5s\n",
              g.shape.c_str(), g.variant.c_str(), static_cast<long long>(g.s.m),
              static_cast<long long>(g.s.n), static_cast<long long>(g.s.k), trans, g.ours.median_ms,
              g.tflops(g.ours), g.cublas.median_ms, g.tflops(g.cublas),
              g.tflops(g.ours) / g.tflops(g.cublas), g.ours.host_us, g.max_rel_diff,
              g.ok() ? "ok" : "FAIL");
  std::fflush(stdout);
}

void BenchGemm(const Bench& b, std::vector<GemmRow>* out) {
  const GemmShape shapes[] = {
      {"square_1024", 1024, 1024, 1024, false, false},
      {"square_4096", 4096, 4096, 4096, false, false},
      {"square_8192", 8192, 8192, 8192, false, false},
      // The MLP recipe: 784 -> 128 -> 10, forward, and layer 1's two backward GEMMs.
      {"mlp_b64_784x128", 64, 128, 784, false, false},
      {"mlp_b256_784x128", 256, 128, 784, false, false},
      {"mlp_b256_128x10", 256, 10, 128, false, false},
      {"mlp_b256_dW_784x128", 784, 128, 256, true, false},  // dW = X^T dY
      {"mlp_b256_dX_784x128", 256, 784, 128, false, true},  // dX = dY W^T
      // A transformer feed-forward layer: 8192 tokens, 1024 -> 4096.
      {"ffn_8192x1024x4096", 8192, 4096, 1024, false, false},
  };
  cudaStream_t stream = b.stream;
  kc::CublasLt lt;
  cublasHandle_t blas = nullptr;
  LS_CUBLAS_CHECK(cublasCreate(&blas));
  LS_CUBLAS_CHECK(cublasSetStream(blas, stream));
  b.meter->Sample();

  for (const GemmShape& s : shapes) {
    const int64_t lda = s.trans_a ? s.m : s.k, ldb = s.trans_b ? s.k : s.n, ldc = s.n;
    DeviceBuffer a(4 * s.m * s.k, b.meter), bm(4 * s.k * s.n, b.meter), bias(4 * s.n, b.meter);
    DeviceBuffer c_ours(4 * s.m * s.n, b.meter), c_ref(4 * s.m * s.n, b.meter);
    FillUniform(a.f(), s.m * s.k, -0.5f, 0.5f, 12);
    FillUniform(bm.f(), s.k * s.n, -0.5f, 0.5f, 13);
    FillUniform(bias.f(), s.n, -1.0f, 1.0f, 14);
    const std::vector<float> host_bias = Download(bias, s.n);
    const size_t mn = static_cast<size_t>(s.m * s.n);

    // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T (as gemm.cc).
    auto run_cublas = [&] {
      const float one = 1.0f, zero = 0.0f;
      LS_CUBLAS_CHECK(cublasSgemm(blas, s.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                  s.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, static_cast<int>(s.n),
                                  static_cast<int>(s.m), static_cast<int>(s.k), &one, bm.f(),
                                  static_cast<int>(ldb), a.f(), static_cast<int>(lda), &zero,
                                  c_ref.f(), static_cast<int>(ldc)));
    };
    for (const bool tf32 : {false, true}) {
      LS_CUBLAS_CHECK(
          cublasSetMathMode(blas, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
      const Timing cublas_t = TimeCalls(stream, b.opt.repeats, run_cublas);
      const std::vector<float> ref = Download(c_ref, mn);

      struct Variant {
        const char* name;
        kc::GemmEpilogue epilogue;
      };
      std::vector<Variant> variants = {{"tf32", kc::GemmEpilogue::kNone}};
      if (!tf32) {
        variants = {{"fp32", kc::GemmEpilogue::kNone},
                    {"fp32_bias", kc::GemmEpilogue::kBias},
                    {"fp32_bias_relu", kc::GemmEpilogue::kBiasRelu}};
      }
      for (const Variant& v : variants) {
        kc::GemmOptions go;
        go.epilogue = v.epilogue;
        go.bias = bias.f();
        go.allow_tf32 = tf32;
        GemmRow row{s.name, v.name, s, {}, cublas_t, 0.0, tf32 ? 2e-2 : 1e-4};
        row.ours = TimeCalls(stream, b.opt.repeats, [&] {
          kc::Sgemm(lt.handle(), s.trans_a, s.trans_b, s.m, s.n, s.k, 1.0f, a.f(), lda, bm.f(), ldb,
                    0.0f, c_ours.f(), ldc, go, lt.workspace(), stream);
        });
        std::vector<float> want = ref;
        if (v.epilogue != kc::GemmEpilogue::kNone) {
          for (size_t i = 0; i < mn; ++i) {
            want[i] += host_bias[i % static_cast<size_t>(s.n)];
            if (v.epilogue == kc::GemmEpilogue::kBiasRelu) want[i] = std::max(want[i], 0.0f);
          }
        }
        row.max_rel_diff = MaxRelDiff(Download(c_ours, mn), want);
        PrintGemmRow(row);
        out->push_back(row);
      }
    }
  }
  LS_CUBLAS_CHECK(cublasDestroy(blas));
}

// ---- output

std::string Num(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.15g", v);
  return buf;
}

bool WriteJson(const std::string& path, const Options& o, const std::string& device,
               const Timing& copy, double copy_bytes, const std::vector<KernelRow>& rows,
               const std::vector<GemmRow>& gemm, const MemoryMeter& mem, bool checks_ok) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) return false;
  const double copy_gbps = copy_bytes / (copy.best_ms * 1e-3) * 1e-9;
  std::fprintf(f, "{\"bench\":\"kernels_cuda\",\"device\":%s,\"size\":%lld,\"repeats\":%d,",
               JsonString(device).c_str(), static_cast<long long>(o.size), o.repeats);
  std::fprintf(f, "\"warmups\":%d,\"goal_fraction\":%s,\"checks_ok\":%s,\n", kWarmups,
               Num(kGoalFraction).c_str(), checks_ok ? "true" : "false");
  std::fprintf(f,
               "\"copy\":{\"bytes\":%s,\"best_ms\":%s,\"median_ms\":%s,\"gbps\":%s},\n"
               "\"kernels\":[",
               Num(copy_bytes).c_str(), Num(copy.best_ms).c_str(), Num(copy.median_ms).c_str(),
               Num(copy_gbps).c_str());
  for (size_t i = 0; i < rows.size(); ++i) {
    const KernelRow& r = rows[i];
    const double frac = r.gbps() / copy_gbps;
    const std::string goal = r.has_goal() ? JsonString(Goal(r, copy_gbps)) : "null";
    std::fprintf(f,
                 "%s\n{\"op\":%s,\"group\":%s,\"shape\":%s,\"bytes_formula\":%s,\"bytes\":%s,"
                 "\"median_ms\":%s,\"best_ms\":%s,\"gbps\":%s,\"fraction_of_copy\":%s,\"goal\":%s}",
                 i == 0 ? "" : ",", JsonString(r.op).c_str(), JsonString(r.group).c_str(),
                 JsonString(r.shape).c_str(), JsonString(r.formula).c_str(), Num(r.bytes).c_str(),
                 Num(r.t.median_ms).c_str(), Num(r.t.best_ms).c_str(), Num(r.gbps()).c_str(),
                 Num(frac).c_str(), goal.c_str());
  }
  std::fprintf(f, "],\n\"gemm\":[");
  for (size_t i = 0; i < gemm.size(); ++i) {
    const GemmRow& g = gemm[i];
    std::fprintf(
        f,
        "%s\n{\"shape\":%s,\"variant\":%s,\"m\":%lld,\"n\":%lld,\"k\":%lld,"
        "\"trans_a\":%s,\"trans_b\":%s,\"ours_ms\":%s,\"ours_tflops\":%s,"
        "\"ours_host_us\":%s,\"cublas_ms\":%s,\"cublas_tflops\":%s,\"cublas_host_us\":%s,"
        "\"ratio\":%s,\"max_rel_diff\":%s,\"tolerance\":%s,\"check\":%s}",
        i == 0 ? "" : ",", JsonString(g.shape).c_str(), JsonString(g.variant).c_str(),
        static_cast<long long>(g.s.m), static_cast<long long>(g.s.n), static_cast<long long>(g.s.k),
        g.s.trans_a ? "true" : "false", g.s.trans_b ? "true" : "false",
        Num(g.ours.median_ms).c_str(), Num(g.tflops(g.ours)).c_str(), Num(g.ours.host_us).c_str(),
        Num(g.cublas.median_ms).c_str(), Num(g.tflops(g.cublas)).c_str(),
        Num(g.cublas.host_us).c_str(), Num(g.tflops(g.ours) / g.tflops(g.cublas)).c_str(),
        Num(g.max_rel_diff).c_str(), Num(g.tolerance).c_str(), g.ok() ? "\"ok\"" : "\"fail\"");
  }
  std::fprintf(f,
               "],\n\"memory\":{\"total_bytes\":%zu,\"used_before_bytes\":%zu,"
               "\"peak_used_bytes\":%zu,\"used_after_bytes\":%zu}}\n",
               mem.total(), mem.before(), mem.peak(), mem.used());
  return std::fclose(f) == 0;
}

int Main(int argc, char** argv) {
  Options opt;
  const int flags_rc = ParseFlags(argc, argv, &opt);
  if (flags_rc >= 0) return flags_rc;

  std::string reason;
  if (kc::UsableDeviceCount(&reason) == 0) {
    std::fprintf(stderr, "bench_kernels_cuda: no usable CUDA device: %s\n", reason.c_str());
    return 2;
  }
  LS_CUDA_CHECK(cudaSetDevice(0));
  LS_CUDA_CHECK(cudaFree(nullptr));  // create the context before the baseline sample
  cudaDeviceProp prop{};
  LS_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  const std::string device = kc::CurrentDeviceDescription();
  MemoryMeter meter;
  cudaStream_t stream = nullptr;
  LS_CUDA_CHECK(cudaStreamCreate(&stream));
  std::printf(
      "# %s, %d SMs, CUDA %d.%d capability; %lld elements per array, median of %d after "
      "%d warm-ups\n",
      device.c_str(), prop.multiProcessorCount, prop.major, prop.minor,
      static_cast<long long>(opt.size), opt.repeats, kWarmups);
  std::fflush(stdout);

  Timing copy;
  const double copy_bytes = BenchCopy(opt, stream, &meter, &copy);
  const double copy_gbps = copy_bytes / (copy.best_ms * 1e-3) * 1e-9;
  std::vector<KernelRow> rows;
  const Bench bench{opt, stream, &meter, &rows, copy_gbps};
  PrintKernelHeader();
  BenchElementwise(bench);
  BenchOptimizerReduce(bench);
  BenchDropoutConvert(bench);
  BenchLoss(bench);
  BenchPool(bench);
  int goal_rows = 0, goal_ok = 0;
  for (const KernelRow& r : rows) {
    goal_rows += r.has_goal();
    goal_ok += std::string(Goal(r, copy_gbps)) == "ok";
  }
  std::printf("# goal: %d of %d elementwise/optimizer/reduce kernels at >= %.2f of copy\n", goal_ok,
              goal_rows, kGoalFraction);

  PrintGemmHeader();
  std::vector<GemmRow> gemm;
  BenchGemm(bench, &gemm);
  LS_CUDA_CHECK(cudaStreamSynchronize(stream));
  LS_CUDA_CHECK(cudaStreamDestroy(stream));
  meter.Sample();
  bool checks_ok = true;
  for (const GemmRow& g : gemm) checks_ok = checks_ok && g.ok();

  const double gib = 1.0 / (1 << 30);
  std::printf(
      "\n# device memory (cudaMemGetInfo): total %.2f GiB; in use before %.3f GiB, "
      "peak %.3f GiB (+%.3f GiB by this run), after %.3f GiB\n",
      meter.total() * gib, meter.before() * gib, meter.peak() * gib,
      (meter.peak() - meter.before()) * gib, meter.used() * gib);
  if (!opt.json.empty() &&
      !WriteJson(opt.json, opt, device, copy, copy_bytes, rows, gemm, meter, checks_ok)) {
    std::fprintf(stderr, "bench_kernels_cuda: cannot write %s\n", opt.json.c_str());
    return 1;
  }
  std::printf("# %s\n", checks_ok ? "OK" : "FAILED: a GEMM result differs from cuBLAS");
  return checks_ok ? 0 : 1;
}

}  // namespace
}  // namespace lockstep::bench

int main(int argc, char** argv) { return lockstep::bench::Main(argc, argv); }
