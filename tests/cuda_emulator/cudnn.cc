// The emulated cuDNN (include/cudnn.h says what it checks and computes). Each refusal
// prints why on stderr and keeps it for cudnnGetLastErrorString, so the LS_CUDNN_CHECK
// failure it causes can be traced to the rule. Where cuDNN's documentation names no
// status for a rule, the emulator's choice is: a wrong shape or too little workspace
// CUDNN_STATUS_BAD_PARAM, a null pointer _BAD_PARAM_NULL_POINTER, a misaligned one
// _BAD_PARAM_MISALIGNED_POINTER, non-float data _NOT_SUPPORTED_DATA_TYPE, an algorithm
// the emulator does not offer for the problem _NOT_SUPPORTED. A descriptor or handle
// that was never created (or already destroyed), and a pointer whose tensor does not
// fit in its cudaMalloc block, abort: on a GPU they are undefined behaviour.
#include <cudnn.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "tests/cuda_emulator/runtime_internal.h"

// Four dimensions and their strides in elements: a tensor's (n, c, h, w), a filter's
// (k, c, r, s).
struct Geometry {
  std::array<int, 4> dim{};
  std::array<int64_t, 4> stride{};
  // Elements from the first to one past the last: what the pointer must have room for.
  int64_t Extent() const {
    int64_t last = 0;
    for (int i = 0; i < 4; ++i) last += static_cast<int64_t>(dim[i] - 1) * stride[i];
    return last + 1;
  }
  int64_t Offset(int a, int b, int c, int d) const {
    return a * stride[0] + b * stride[1] + c * stride[2] + d * stride[3];
  }
};

struct cudnnContext {
  cudaStream_t stream = nullptr;
};
struct cudnnTensorStruct {
  bool set = false;
  cudnnDataType_t type = CUDNN_DATA_FLOAT;
  cudnnTensorFormat_t format = CUDNN_TENSOR_NCHW;
  Geometry g;
};
struct cudnnFilterStruct {
  bool set = false;
  cudnnDataType_t type = CUDNN_DATA_FLOAT;
  cudnnTensorFormat_t format = CUDNN_TENSOR_NCHW;
  Geometry g;
};
struct cudnnConvolutionStruct {
  bool set = false;
  int pad[2] = {0, 0}, stride[2] = {1, 1}, dilation[2] = {1, 1};
  cudnnConvolutionMode_t mode = CUDNN_CONVOLUTION;
  cudnnDataType_t compute = CUDNN_DATA_FLOAT;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
};

namespace {

thread_local std::string last_error;

cudnnStatus_t Refuse(cudnnStatus_t status, const char* call, const std::string& why) {
  last_error = std::string(call) + ": " + why;
  std::fprintf(stderr, "lsemu cuDNN: %s\n", last_error.c_str());
  return status;
}

template <typename T>
cudnnStatus_t Create(T** out) {
  if (out == nullptr) return Refuse(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, "cudnnCreate*", "null output");
  *out = new T();
  lsemu::RegisterHandle(*out);
  return CUDNN_STATUS_SUCCESS;
}

void RequireLive(const void* p, const char* call, const char* what) { lsemu::RequireHandle(p, call, what); }

template <typename T>
cudnnStatus_t Destroy(T* p, const char* call) {
  if (p == nullptr) return CUDNN_STATUS_SUCCESS;
  RequireLive(p, call, "the object");
  lsemu::ForgetHandle(p);
  delete p;
  return CUDNN_STATUS_SUCCESS;
}

// (n, c, h, w) of a tensor or (k, c, r, s) of a filter, packed in the given format.
Geometry Packed(cudnnTensorFormat_t format, int a, int c, int h, int w) {
  Geometry g;
  g.dim = {a, c, h, w};
  if (format == CUDNN_TENSOR_NHWC) {
    g.stride = {int64_t{h} * w * c, 1, int64_t{w} * c, c};
  } else {
    g.stride = {int64_t{c} * h * w, int64_t{h} * w, w, 1};
  }
  return g;
}

// A checked problem: x (n, c, h, w), w (k, c, r, s), y (n, k, p, q).
struct Problem {
  Geometry x, w, y;
  int pad[2], stride[2], dilation[2];
  bool flip;     // CUDNN_CONVOLUTION
  bool tf32;     // products of TF32-rounded inputs
  bool nhwc;     // a tensor or the filter in NHWC (FFT algorithms refuse it)
};

// The output size of one spatial dimension, or 0 if the filter does not fit.
int OutputSize(int in, int pad, int filter, int stride, int dilation) {
  const int64_t span = static_cast<int64_t>(filter - 1) * dilation + 1;
  const int64_t room = static_cast<int64_t>(in) + 2 * pad - span;
  return room < 0 ? 0 : static_cast<int>(room / stride + 1);
}

// The output's (n, c, h, w) for input x and filter w; h or w is 0 if the filter does not
// fit in the padded input.
std::array<int, 4> OutputDims(const cudnnTensorStruct& x, const cudnnFilterStruct& w,
                              const cudnnConvolutionStruct& conv) {
  return {x.g.dim[0], w.g.dim[0],
          OutputSize(x.g.dim[2], conv.pad[0], w.g.dim[2], conv.stride[0], conv.dilation[0]),
          OutputSize(x.g.dim[3], conv.pad[1], w.g.dim[3], conv.stride[1], conv.dilation[1])};
}

cudnnStatus_t CheckInputs(const char* call, cudnnTensorDescriptor_t x, cudnnFilterDescriptor_t w,
                          cudnnConvolutionDescriptor_t conv) {
  RequireLive(x, call, "tensor descriptor");
  RequireLive(w, call, "filter descriptor");
  RequireLive(conv, call, "convolution descriptor");
  if (!x->set || !w->set || !conv->set) return Refuse(CUDNN_STATUS_BAD_PARAM, call, "a descriptor was never set");
  if (x->type != CUDNN_DATA_FLOAT || w->type != CUDNN_DATA_FLOAT || conv->compute != CUDNN_DATA_FLOAT) {
    return Refuse(CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE, call, "the emulator computes float only");
  }
  if (x->g.dim[1] != w->g.dim[1]) {
    return Refuse(CUDNN_STATUS_BAD_PARAM_SHAPE_MISMATCH, call,
                  "input channels " + std::to_string(x->g.dim[1]) + " != filter channels " +
                      std::to_string(w->g.dim[1]));
  }
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t MakeProblem(const char* call, cudnnHandle_t handle, cudnnTensorDescriptor_t x,
                          cudnnFilterDescriptor_t w, cudnnConvolutionDescriptor_t conv,
                          cudnnTensorDescriptor_t y, Problem* p) {
  RequireLive(handle, call, "handle");
  RequireLive(y, call, "tensor descriptor");
  if (const cudnnStatus_t st = CheckInputs(call, x, w, conv); st != CUDNN_STATUS_SUCCESS) return st;
  if (!y->set) return Refuse(CUDNN_STATUS_BAD_PARAM, call, "the output descriptor was never set");
  if (y->type != CUDNN_DATA_FLOAT) return Refuse(CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE, call, "output not float");
  const std::array<int, 4> want = OutputDims(*x, *w, *conv);
  if (want[2] == 0 || want[3] == 0 || y->g.dim != want) {
    std::ostringstream s;
    s << "output descriptor " << y->g.dim[0] << "x" << y->g.dim[1] << "x" << y->g.dim[2] << "x"
      << y->g.dim[3] << " (n, c, h, w), the convolution gives " << want[0] << "x" << want[1] << "x"
      << want[2] << "x" << want[3];
    return Refuse(CUDNN_STATUS_BAD_PARAM_SHAPE_MISMATCH, call, s.str());
  }
  p->x = x->g;
  p->w = w->g;
  p->y = y->g;
  for (int i = 0; i < 2; ++i) {
    p->pad[i] = conv->pad[i];
    p->stride[i] = conv->stride[i];
    p->dilation[i] = conv->dilation[i];
  }
  p->flip = conv->mode == CUDNN_CONVOLUTION;
  p->tf32 = conv->math != CUDNN_FMA_MATH;
  p->nhwc = x->format == CUDNN_TENSOR_NHWC || y->format == CUDNN_TENSOR_NHWC ||
            w->format == CUDNN_TENSOR_NHWC;
  return CUDNN_STATUS_SUCCESS;
}

// ---- The algorithms the emulator offers, in the heuristics' order ----

enum class Pass { kForward, kBackwardData, kBackwardFilter };

struct Algorithm {
  int id;
  bool deterministic;
  enum class Kind { kGemm, kFft, kWinograd } kind;  // FFT refuses NHWC; Winograd wants 3x3, stride 1
  enum class Space { kNone, kFilter, kIm2col, kFft } space;
  // FFT and Winograd multiply transformed operands.
  bool transforms() const { return kind != Kind::kGemm; }
};

const std::vector<Algorithm>& Catalogue(Pass pass) {
  using S = Algorithm::Space;
  using K = Algorithm::Kind;
  static const std::vector<Algorithm> forward = {
      {CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED, true, K::kWinograd, S::kFilter},
      {CUDNN_CONVOLUTION_FWD_ALGO_FFT, true, K::kFft, S::kFft},
      {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, true, K::kGemm, S::kFilter},
      {CUDNN_CONVOLUTION_FWD_ALGO_GEMM, true, K::kGemm, S::kIm2col},
      {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, true, K::kGemm, S::kNone},
  };
  static const std::vector<Algorithm> backward_data = {
      {CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, false, K::kGemm, S::kNone},
      {CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED, true, K::kWinograd, S::kFilter},
      {CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING, true, K::kFft, S::kFft},
      {CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, true, K::kGemm, S::kFilter},
  };
  static const std::vector<Algorithm> backward_filter = {
      {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, false, K::kGemm, S::kNone},
      {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3, false, K::kGemm, S::kFilter},
      {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED, true, K::kWinograd, S::kFilter},
      {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT, true, K::kFft, S::kFft},
      {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, true, K::kGemm, S::kIm2col},
  };
  return pass == Pass::kForward ? forward : pass == Pass::kBackwardData ? backward_data : backward_filter;
}

const Algorithm* Find(Pass pass, int id) {
  for (const Algorithm& a : Catalogue(pass)) {
    if (a.id == id) return &a;
  }
  return nullptr;
}

size_t WorkspaceOf(const Algorithm& a, const Problem& p) {
  const size_t filter = static_cast<size_t>(p.w.Extent()) * sizeof(float);
  switch (a.space) {
    case Algorithm::Space::kNone: return 0;
    case Algorithm::Space::kFilter: return filter;
    case Algorithm::Space::kIm2col:
      return static_cast<size_t>(p.y.dim[0]) * p.y.dim[2] * p.y.dim[3] * p.w.dim[1] * p.w.dim[2] *
             p.w.dim[3] * sizeof(float);
    case Algorithm::Space::kFft: return 2 * (static_cast<size_t>(p.x.Extent()) * sizeof(float) + filter);
  }
  return 0;
}

cudnnStatus_t Usable(const Algorithm* a, const Problem& p) {
  if (a == nullptr) return CUDNN_STATUS_NOT_SUPPORTED;
  if (a->kind == Algorithm::Kind::kFft && p.nhwc) return CUDNN_STATUS_NOT_SUPPORTED_LAYOUT;
  if (a->kind == Algorithm::Kind::kWinograd &&
      (p.w.dim[2] != 3 || p.w.dim[3] != 3 || p.stride[0] != 1 || p.stride[1] != 1 || p.dilation[0] != 1 ||
       p.dilation[1] != 1)) {
    return CUDNN_STATUS_NOT_SUPPORTED;
  }
  return CUDNN_STATUS_SUCCESS;
}

// The math type heuristic results report for a descriptor set to `math` (see
// LOCKSTEP_EMU_CUDNN_RESULT_MATH in cudnn.h).
cudnnMathType_t ReportedMath(cudnnMathType_t math) {
  const char* v = std::getenv("LOCKSTEP_EMU_CUDNN_RESULT_MATH");
  if (v == nullptr || *v == '\0') return math;
  if (std::string(v) == "DEFAULT") return CUDNN_DEFAULT_MATH;
  std::fprintf(stderr, "lsemu: LOCKSTEP_EMU_CUDNN_RESULT_MATH=%s: only DEFAULT is known\n", v);
  std::abort();
}

template <typename Perf, typename Algo>
cudnnStatus_t Heuristics(const char* call, Pass pass, const Problem& p, cudnnMathType_t math,
                         int requested, int* returned, Perf* results) {
  if (returned == nullptr || results == nullptr) {
    return Refuse(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, call, "null output");
  }
  if (requested < 1) return Refuse(CUDNN_STATUS_BAD_PARAM, call, "requested count < 1");
  const std::vector<Algorithm>& all = Catalogue(pass);
  const int n = std::min(requested, static_cast<int>(all.size()));
  for (int i = 0; i < n; ++i) {
    const Algorithm& a = all[static_cast<size_t>(i)];
    Perf r{};
    r.algo = static_cast<Algo>(a.id);
    r.status = Usable(&a, p);
    r.time = -1.0f;  // heuristics time nothing
    r.memory = r.status == CUDNN_STATUS_SUCCESS ? WorkspaceOf(a, p) : 0;
    r.determinism = a.deterministic ? CUDNN_DETERMINISTIC : CUDNN_NON_DETERMINISTIC;
    r.mathType = ReportedMath(math);
    results[i] = r;
  }
  *returned = n;
  return CUDNN_STATUS_SUCCESS;
}

// The algorithm `algo` of the pass, if the emulator offers it for p; else a refusal.
cudnnStatus_t Choose(const char* call, Pass pass, const Problem& p, int algo, const Algorithm** chosen) {
  *chosen = Find(pass, algo);
  if (const cudnnStatus_t st = Usable(*chosen, p); st != CUDNN_STATUS_SUCCESS) {
    return Refuse(st, call, "algorithm " + std::to_string(algo) + " is not offered for this problem");
  }
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t WorkspaceQuery(const char* call, Pass pass, const Problem& p, int algo, size_t* bytes) {
  if (bytes == nullptr) return Refuse(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, call, "null output");
  const Algorithm* a = nullptr;
  if (const cudnnStatus_t st = Choose(call, pass, p, algo, &a); st != CUDNN_STATUS_SUCCESS) return st;
  *bytes = WorkspaceOf(*a, p);
  return CUDNN_STATUS_SUCCESS;
}

// ---- Execution ----

// How a pass multiplies: fp32 (CUDNN_FMA_MATH), TF32 products of the operands, or TF32
// products of transformed operands (FFT, Winograd with TF32 allowed).
enum class Products { kFp32, kTf32, kTf32OfTransformed };

// A stand-in for an operand transform (the emulator computes the convolution directly):
// the value scaled by 1/3, rounded to TF32, scaled back. Like a real transform's
// output, v / 3 has more mantissa bits than TF32 keeps, so a bf16 operand, exact in
// TF32, loses bits here as it would on a GPU.
float TransformedTf32(float v) { return lsemu::RoundToTf32(v * (1.0f / 3.0f)) * 3.0f; }

// Partial sums a non-deterministic algorithm adds in a changing order (its atomics).
constexpr int kPartials = 8;
std::atomic<uint64_t> nondeterministic_calls{0};

// Sums terms handed to Add in a fixed order, or (shuffled) into kPartials partial sums
// added in an order drawn per output element.
class Accumulator {
 public:
  explicit Accumulator(std::mt19937_64* shuffle) : shuffle_(shuffle) {}
  void Reset() {
    partial_.fill(0.0f);
    next_ = 0;
  }
  void Add(float term) {
    partial_[next_] += term;
    next_ = next_ + 1 == kPartials ? 0 : next_ + 1;
  }
  // Adds the products of `count` pairs a[i * a_step] b[i * b_step], in i order, each
  // operand as `products` says.
  void AddProducts(const float* a, int64_t a_step, const float* b, int64_t b_step, int count, Products products) {
    for (int i = 0; i < count; ++i, a += a_step, b += b_step) {
      switch (products) {
        case Products::kFp32: Add(*a * *b); break;
        case Products::kTf32: Add(lsemu::RoundToTf32(*a) * lsemu::RoundToTf32(*b)); break;
        case Products::kTf32OfTransformed: Add(TransformedTf32(*a) * TransformedTf32(*b)); break;
      }
    }
  }
  float Sum() {
    std::array<int, kPartials> order;
    for (int i = 0; i < kPartials; ++i) order[static_cast<size_t>(i)] = i;
    if (shuffle_ != nullptr) std::shuffle(order.begin(), order.end(), *shuffle_);
    float sum = 0.0f;
    for (int i : order) sum += partial_[static_cast<size_t>(i)];
    return sum;
  }

 private:
  std::mt19937_64* shuffle_;
  std::array<float, kPartials> partial_{};
  size_t next_ = 0;
};

struct Operands {
  const float* in1;  // forward: x; backward data: dy; backward filter: x
  const float* in2;  // forward: w; backward data: w;  backward filter: dy
  float* out;        // y, dx, dw
  float alpha, beta;
  Products products;
};

void Store(float* out, int64_t at, float alpha, float beta, float sum) {
  out[at] = beta == 0.0f ? alpha * sum : alpha * sum + beta * out[at];
}

void RunForward(const Problem& p, const Operands& o, Accumulator& acc) {
  const int C = p.x.dim[1], H = p.x.dim[2], W = p.x.dim[3], R = p.w.dim[2], S = p.w.dim[3];
  for (int n = 0; n < p.y.dim[0]; ++n)
    for (int k = 0; k < p.y.dim[1]; ++k)
      for (int oh = 0; oh < p.y.dim[2]; ++oh)
        for (int ow = 0; ow < p.y.dim[3]; ++ow) {
          acc.Reset();
          for (int r = 0; r < R; ++r) {
            const int h = oh * p.stride[0] - p.pad[0] + r * p.dilation[0];
            if (h < 0 || h >= H) continue;
            for (int s = 0; s < S; ++s) {
              const int w = ow * p.stride[1] - p.pad[1] + s * p.dilation[1];
              if (w < 0 || w >= W) continue;
              const int fr = p.flip ? R - 1 - r : r, fs = p.flip ? S - 1 - s : s;
              acc.AddProducts(o.in1 + p.x.Offset(n, 0, h, w), p.x.stride[1],
                              o.in2 + p.w.Offset(k, 0, fr, fs), p.w.stride[1], C, o.products);
            }
          }
          Store(o.out, p.y.Offset(n, k, oh, ow), o.alpha, o.beta, acc.Sum());
        }
}

// dx(n, c, h, w) = sum over k, r, s of dy(n, k, oh, ow) w(k, c, r, s) where the forward
// pass read x(n, c, h, w) for output (oh, ow) through filter tap (r, s).
void RunBackwardData(const Problem& p, const Operands& o, Accumulator& acc) {
  const int K = p.w.dim[0], R = p.w.dim[2], S = p.w.dim[3], OH = p.y.dim[2], OW = p.y.dim[3];
  for (int n = 0; n < p.x.dim[0]; ++n)
    for (int c = 0; c < p.x.dim[1]; ++c)
      for (int h = 0; h < p.x.dim[2]; ++h)
        for (int w = 0; w < p.x.dim[3]; ++w) {
          acc.Reset();
          for (int r = 0; r < R; ++r) {
            const int th = h + p.pad[0] - r * p.dilation[0];
            if (th < 0 || th % p.stride[0] != 0 || th / p.stride[0] >= OH) continue;
            for (int s = 0; s < S; ++s) {
              const int tw = w + p.pad[1] - s * p.dilation[1];
              if (tw < 0 || tw % p.stride[1] != 0 || tw / p.stride[1] >= OW) continue;
              const int fr = p.flip ? R - 1 - r : r, fs = p.flip ? S - 1 - s : s;
              acc.AddProducts(o.in1 + p.y.Offset(n, 0, th / p.stride[0], tw / p.stride[1]),
                              p.y.stride[1], o.in2 + p.w.Offset(0, c, fr, fs), p.w.stride[0], K,
                              o.products);
            }
          }
          Store(o.out, p.x.Offset(n, c, h, w), o.alpha, o.beta, acc.Sum());
        }
}

// dw(k, c, fr, fs) = sum over n, oh, ow of x(n, c, h, w) dy(n, k, oh, ow), with (h, w) the
// input the tap read.
void RunBackwardFilter(const Problem& p, const Operands& o, Accumulator& acc) {
  const int N = p.x.dim[0], H = p.x.dim[2], W = p.x.dim[3], R = p.w.dim[2], S = p.w.dim[3];
  for (int k = 0; k < p.w.dim[0]; ++k)
    for (int c = 0; c < p.w.dim[1]; ++c)
      for (int r = 0; r < R; ++r)
        for (int s = 0; s < S; ++s) {
          acc.Reset();
          for (int n = 0; n < N; ++n)
            for (int oh = 0; oh < p.y.dim[2]; ++oh) {
              const int h = oh * p.stride[0] - p.pad[0] + r * p.dilation[0];
              if (h < 0 || h >= H) continue;
              // The output columns whose tap s reads inside the row: ow in [first, end).
              const int offset = s * p.dilation[1] - p.pad[1];  // w = ow * stride + offset
              int first = offset >= 0 ? 0 : (-offset + p.stride[1] - 1) / p.stride[1];
              int end = W - offset <= 0 ? 0 : (W - offset - 1) / p.stride[1] + 1;
              end = std::min(end, p.y.dim[3]);
              if (first >= end) continue;
              acc.AddProducts(o.in1 + p.x.Offset(n, c, h, first * p.stride[1] + offset),
                              p.x.stride[3] * p.stride[1], o.in2 + p.y.Offset(n, k, oh, first),
                              p.y.stride[3], end - first, o.products);
            }
          const int fr = p.flip ? R - 1 - r : r, fs = p.flip ? S - 1 - s : s;
          Store(o.out, p.w.Offset(k, c, fr, fs), o.alpha, o.beta, acc.Sum());
        }
}

void CheckOperand(const char* call, const char* name, const void* ptr, const Geometry& g) {
  const size_t bytes = static_cast<size_t>(g.Extent()) * sizeof(float);
  if (!lsemu::InOneAllocation(ptr, bytes)) {
    std::ostringstream s;
    s << call << ": " << name << " (" << ptr << ", " << bytes << " bytes by its descriptor) is not "
      << "inside one block from cudaMalloc or cudaMallocHost (" << lsemu::Name(lsemu::Locate(ptr)) << ")";
    lsemu::Die(s.str());
  }
}

// Each pass's operands (in1, in2, out of Operands): their names and which of the
// problem's geometries describes them.
struct OperandRoles {
  const char* name[3];
  Geometry Problem::*geometry[3];
};
const OperandRoles& RolesOf(Pass pass) {
  static const OperandRoles forward{{"x", "w", "y"}, {&Problem::x, &Problem::w, &Problem::y}};
  static const OperandRoles backward_data{{"dy", "w", "dx"}, {&Problem::y, &Problem::w, &Problem::x}};
  static const OperandRoles backward_filter{{"x", "dy", "dw"}, {&Problem::x, &Problem::y, &Problem::w}};
  return pass == Pass::kForward ? forward : pass == Pass::kBackwardData ? backward_data : backward_filter;
}

cudnnStatus_t Execute(const char* call, cudnnHandle_t handle, Pass pass, int algo, const Problem& p,
                      const void* alpha, const void* beta, const void* in1, const void* in2, void* out,
                      void* workspace, size_t workspace_bytes) {
  const Algorithm* a = nullptr;
  if (const cudnnStatus_t st = Choose(call, pass, p, algo, &a); st != CUDNN_STATUS_SUCCESS) return st;
  const size_t need = WorkspaceOf(*a, p);
  if (workspace_bytes < need) {
    return Refuse(CUDNN_STATUS_BAD_PARAM, call,
                  "workspace of " + std::to_string(workspace_bytes) + " bytes, the algorithm needs " +
                      std::to_string(need));
  }
  if (alpha == nullptr || beta == nullptr || in1 == nullptr || in2 == nullptr || out == nullptr ||
      (need > 0 && workspace == nullptr)) {
    return Refuse(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, call, "a null pointer");
  }
  for (const void* ptr : {in1, in2, static_cast<const void*>(out)}) {
    if (reinterpret_cast<uintptr_t>(ptr) % alignof(float) != 0) {
      return Refuse(CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER, call, "a data pointer not float-aligned");
    }
  }
  const OperandRoles& roles = RolesOf(pass);
  const void* operands[3] = {in1, in2, out};
  for (int i = 0; i < 3; ++i) CheckOperand(call, roles.name[i], operands[i], p.*roles.geometry[i]);
  if (need > 0 && !lsemu::InOneAllocation(workspace, need)) {
    lsemu::Die(std::string(call) + ": the workspace's " + std::to_string(need) +
               " bytes are not inside one block from cudaMalloc");
  }
  // Host scaling factors are read at the call (CUDNN's default pointer mode).
  const Products products = !p.tf32 ? Products::kFp32 : a->transforms() ? Products::kTf32OfTransformed
                                                                         : Products::kTf32;
  Operands o{static_cast<const float*>(in1), static_cast<const float*>(in2), static_cast<float*>(out),
             *static_cast<const float*>(alpha), *static_cast<const float*>(beta), products};
  const bool deterministic = a->deterministic;
  const uint64_t seed = deterministic ? 0 : nondeterministic_calls.fetch_add(1) + 1;
  lsemu::Enqueue(handle->stream, [=] {
    if (need > 0) std::memset(workspace, 0xFF, need);  // the algorithm's scratch: NaN
    std::mt19937_64 shuffle(seed);
    Accumulator acc(deterministic ? nullptr : &shuffle);
    if (pass == Pass::kForward) RunForward(p, o, acc);
    if (pass == Pass::kBackwardData) RunBackwardData(p, o, acc);
    if (pass == Pass::kBackwardFilter) RunBackwardFilter(p, o, acc);
  });
  return CUDNN_STATUS_SUCCESS;
}

}  // namespace

// ---- The API ----

const char* cudnnGetErrorString(cudnnStatus_t status) {
  switch (status) {
    case CUDNN_STATUS_SUCCESS: return "CUDNN_STATUS_SUCCESS";
    case CUDNN_STATUS_NOT_INITIALIZED: return "CUDNN_STATUS_NOT_INITIALIZED";
    case CUDNN_STATUS_BAD_PARAM: return "CUDNN_STATUS_BAD_PARAM";
    case CUDNN_STATUS_BAD_PARAM_NULL_POINTER: return "CUDNN_STATUS_BAD_PARAM_NULL_POINTER";
    case CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER: return "CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER";
    case CUDNN_STATUS_BAD_PARAM_SIZE_INSUFFICIENT: return "CUDNN_STATUS_BAD_PARAM_SIZE_INSUFFICIENT";
    case CUDNN_STATUS_BAD_PARAM_SHAPE_MISMATCH: return "CUDNN_STATUS_BAD_PARAM_SHAPE_MISMATCH";
    case CUDNN_STATUS_NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED";
    case CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE: return "CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE";
    case CUDNN_STATUS_NOT_SUPPORTED_LAYOUT: return "CUDNN_STATUS_NOT_SUPPORTED_LAYOUT";
    case CUDNN_STATUS_INTERNAL_ERROR: return "CUDNN_STATUS_INTERNAL_ERROR";
    case CUDNN_STATUS_EXECUTION_FAILED: return "CUDNN_STATUS_EXECUTION_FAILED";
  }
  return "CUDNN_STATUS_UNKNOWN";
}

// The text of this thread's latest refusal, cleared by reading it.
void cudnnGetLastErrorString(char* message, size_t max_size) {
  if (message == nullptr || max_size == 0) return;
  std::snprintf(message, max_size, "%s", last_error.c_str());
  last_error.clear();
}

cudnnStatus_t cudnnCreate(cudnnHandle_t* handle) { return Create(handle); }
cudnnStatus_t cudnnDestroy(cudnnHandle_t handle) {
  lsemu::CompleteAll();
  return Destroy(handle, "cudnnDestroy");
}
cudnnStatus_t cudnnSetStream(cudnnHandle_t handle, cudaStream_t stream) {
  RequireLive(handle, "cudnnSetStream", "handle");
  handle->stream = stream;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetStream(cudnnHandle_t handle, cudaStream_t* stream) {
  RequireLive(handle, "cudnnGetStream", "handle");
  if (stream == nullptr) return Refuse(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, "cudnnGetStream", "null output");
  *stream = handle->stream;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t* desc) { return Create(desc); }
cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t desc) {
  return Destroy(desc, "cudnnDestroyTensorDescriptor");
}
cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t* desc) { return Create(desc); }
cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t desc) {
  return Destroy(desc, "cudnnDestroyFilterDescriptor");
}
cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t* desc) { return Create(desc); }
cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t desc) {
  return Destroy(desc, "cudnnDestroyConvolutionDescriptor");
}

namespace {

bool ValidFormat(cudnnTensorFormat_t f) { return f == CUDNN_TENSOR_NCHW || f == CUDNN_TENSOR_NHWC; }

template <typename Desc>
cudnnStatus_t Set4d(const char* call, Desc* desc, cudnnTensorFormat_t format, cudnnDataType_t type,
                    int a, int c, int h, int w) {
  RequireLive(desc, call, "descriptor");
  if (!ValidFormat(format)) return Refuse(CUDNN_STATUS_BAD_PARAM, call, "unknown format");
  if (a <= 0 || c <= 0 || h <= 0 || w <= 0) {
    return Refuse(CUDNN_STATUS_BAD_PARAM, call, "a dimension <= 0");
  }
  desc->type = type;
  desc->format = format;
  desc->g = Packed(format, a, c, h, w);
  desc->set = true;
  return CUDNN_STATUS_SUCCESS;
}

}  // namespace

cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t desc, cudnnTensorFormat_t format,
                                         cudnnDataType_t type, int n, int c, int h, int w) {
  return Set4d("cudnnSetTensor4dDescriptor", desc, format, type, n, c, h, w);
}
cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t desc, cudnnDataType_t type,
                                         cudnnTensorFormat_t format, int k, int c, int h, int w) {
  return Set4d("cudnnSetFilter4dDescriptor", desc, format, type, k, c, h, w);
}

cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t desc, int pad_h, int pad_w,
                                              int u, int v, int dilation_h, int dilation_w,
                                              cudnnConvolutionMode_t mode, cudnnDataType_t compute_type) {
  const char* call = "cudnnSetConvolution2dDescriptor";
  RequireLive(desc, call, "convolution descriptor");
  if (pad_h < 0 || pad_w < 0 || u <= 0 || v <= 0 || dilation_h <= 0 || dilation_w <= 0) {
    return Refuse(CUDNN_STATUS_BAD_PARAM, call, "negative padding, or stride or dilation <= 0");
  }
  if (mode != CUDNN_CONVOLUTION && mode != CUDNN_CROSS_CORRELATION) {
    return Refuse(CUDNN_STATUS_BAD_PARAM, call, "unknown mode");
  }
  desc->pad[0] = pad_h;
  desc->pad[1] = pad_w;
  desc->stride[0] = u;
  desc->stride[1] = v;
  desc->dilation[0] = dilation_h;
  desc->dilation[1] = dilation_w;
  desc->mode = mode;
  desc->compute = compute_type;
  desc->set = true;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t desc, cudnnMathType_t math) {
  RequireLive(desc, "cudnnSetConvolutionMathType", "convolution descriptor");
  if (math < CUDNN_DEFAULT_MATH || math > CUDNN_FMA_MATH) {
    return Refuse(CUDNN_STATUS_BAD_PARAM, "cudnnSetConvolutionMathType", "unknown math type");
  }
  desc->math = math;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolution2dForwardOutputDim(const cudnnConvolutionDescriptor_t conv,
                                                    const cudnnTensorDescriptor_t x,
                                                    const cudnnFilterDescriptor_t w, int* n, int* c,
                                                    int* h, int* width) {
  const char* call = "cudnnGetConvolution2dForwardOutputDim";
  if (const cudnnStatus_t st = CheckInputs(call, x, w, conv); st != CUDNN_STATUS_SUCCESS) return st;
  if (n == nullptr || c == nullptr || h == nullptr || width == nullptr) {
    return Refuse(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, call, "null output");
  }
  const std::array<int, 4> out = OutputDims(*x, *w, *conv);
  if (out[2] == 0 || out[3] == 0) return Refuse(CUDNN_STATUS_BAD_PARAM, call, "the filter is larger than the padded input");
  *n = out[0];
  *c = out[1];
  *h = out[2];
  *width = out[3];
  return CUDNN_STATUS_SUCCESS;
}

namespace {
cudnnStatus_t MaxCount(cudnnHandle_t handle, int* count, const char* call, Pass pass) {
  RequireLive(handle, call, "handle");
  if (count == nullptr) return Refuse(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, call, "null output");
  *count = static_cast<int>(Catalogue(pass).size());
  return CUDNN_STATUS_SUCCESS;
}
}  // namespace

#define LSEMU_CUDNN_PROBLEM(call, x, w, conv, y)                                        \
  Problem p;                                                                          \
  if (const cudnnStatus_t st = MakeProblem(call, handle, x, w, conv, y, &p);          \
      st != CUDNN_STATUS_SUCCESS)                                                     \
    return st

cudnnStatus_t cudnnGetConvolutionForwardAlgorithmMaxCount(cudnnHandle_t handle, int* count) {
  return MaxCount(handle, count, "cudnnGetConvolutionForwardAlgorithmMaxCount", Pass::kForward);
}
cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t x, const cudnnFilterDescriptor_t w,
    const cudnnConvolutionDescriptor_t conv, const cudnnTensorDescriptor_t y, int requested,
    int* returned, cudnnConvolutionFwdAlgoPerf_t* results) {
  const char* call = "cudnnGetConvolutionForwardAlgorithm_v7";
  LSEMU_CUDNN_PROBLEM(call, x, w, conv, y);
  return Heuristics<cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionFwdAlgo_t>(
      call, Pass::kForward, p, conv->math, requested, returned, results);
}
cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(cudnnHandle_t handle, const cudnnTensorDescriptor_t x,
                                                      const cudnnFilterDescriptor_t w,
                                                      const cudnnConvolutionDescriptor_t conv,
                                                      const cudnnTensorDescriptor_t y,
                                                      cudnnConvolutionFwdAlgo_t algo, size_t* bytes) {
  const char* call = "cudnnGetConvolutionForwardWorkspaceSize";
  LSEMU_CUDNN_PROBLEM(call, x, w, conv, y);
  return WorkspaceQuery(call, Pass::kForward, p, algo, bytes);
}
cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t handle, const void* alpha,
                                      const cudnnTensorDescriptor_t x_desc, const void* x,
                                      const cudnnFilterDescriptor_t w_desc, const void* w,
                                      const cudnnConvolutionDescriptor_t conv,
                                      cudnnConvolutionFwdAlgo_t algo, void* workspace,
                                      size_t workspace_bytes, const void* beta,
                                      const cudnnTensorDescriptor_t y_desc, void* y) {
  const char* call = "cudnnConvolutionForward";
  LSEMU_CUDNN_PROBLEM(call, x_desc, w_desc, conv, y_desc);
  return Execute(call, handle, Pass::kForward, algo, p, alpha, beta, x, w, y, workspace, workspace_bytes);
}

cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithmMaxCount(cudnnHandle_t handle, int* count) {
  return MaxCount(handle, count, "cudnnGetConvolutionBackwardDataAlgorithmMaxCount", Pass::kBackwardData);
}
cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithm_v7(
    cudnnHandle_t handle, const cudnnFilterDescriptor_t w, const cudnnTensorDescriptor_t dy,
    const cudnnConvolutionDescriptor_t conv, const cudnnTensorDescriptor_t dx, int requested,
    int* returned, cudnnConvolutionBwdDataAlgoPerf_t* results) {
  const char* call = "cudnnGetConvolutionBackwardDataAlgorithm_v7";
  LSEMU_CUDNN_PROBLEM(call, dx, w, conv, dy);
  return Heuristics<cudnnConvolutionBwdDataAlgoPerf_t, cudnnConvolutionBwdDataAlgo_t>(
      call, Pass::kBackwardData, p, conv->math, requested, returned, results);
}
cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(
    cudnnHandle_t handle, const cudnnFilterDescriptor_t w, const cudnnTensorDescriptor_t dy,
    const cudnnConvolutionDescriptor_t conv, const cudnnTensorDescriptor_t dx,
    cudnnConvolutionBwdDataAlgo_t algo, size_t* bytes) {
  const char* call = "cudnnGetConvolutionBackwardDataWorkspaceSize";
  LSEMU_CUDNN_PROBLEM(call, dx, w, conv, dy);
  return WorkspaceQuery(call, Pass::kBackwardData, p, algo, bytes);
}
cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t handle, const void* alpha,
                                           const cudnnFilterDescriptor_t w_desc, const void* w,
                                           const cudnnTensorDescriptor_t dy_desc, const void* dy,
                                           const cudnnConvolutionDescriptor_t conv,
                                           cudnnConvolutionBwdDataAlgo_t algo, void* workspace,
                                           size_t workspace_bytes, const void* beta,
                                           const cudnnTensorDescriptor_t dx_desc, void* dx) {
  const char* call = "cudnnConvolutionBackwardData";
  LSEMU_CUDNN_PROBLEM(call, dx_desc, w_desc, conv, dy_desc);
  return Execute(call, handle, Pass::kBackwardData, algo, p, alpha, beta, dy, w, dx, workspace,
                 workspace_bytes);
}

cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(cudnnHandle_t handle, int* count) {
  return MaxCount(handle, count, "cudnnGetConvolutionBackwardFilterAlgorithmMaxCount", Pass::kBackwardFilter);
}
cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithm_v7(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t x, const cudnnTensorDescriptor_t dy,
    const cudnnConvolutionDescriptor_t conv, const cudnnFilterDescriptor_t dw, int requested,
    int* returned, cudnnConvolutionBwdFilterAlgoPerf_t* results) {
  const char* call = "cudnnGetConvolutionBackwardFilterAlgorithm_v7";
  LSEMU_CUDNN_PROBLEM(call, x, dw, conv, dy);
  return Heuristics<cudnnConvolutionBwdFilterAlgoPerf_t, cudnnConvolutionBwdFilterAlgo_t>(
      call, Pass::kBackwardFilter, p, conv->math, requested, returned, results);
}
cudnnStatus_t cudnnGetConvolutionBackwardFilterWorkspaceSize(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t x, const cudnnTensorDescriptor_t dy,
    const cudnnConvolutionDescriptor_t conv, const cudnnFilterDescriptor_t dw,
    cudnnConvolutionBwdFilterAlgo_t algo, size_t* bytes) {
  const char* call = "cudnnGetConvolutionBackwardFilterWorkspaceSize";
  LSEMU_CUDNN_PROBLEM(call, x, dw, conv, dy);
  return WorkspaceQuery(call, Pass::kBackwardFilter, p, algo, bytes);
}
cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t handle, const void* alpha,
                                             const cudnnTensorDescriptor_t x_desc, const void* x,
                                             const cudnnTensorDescriptor_t dy_desc, const void* dy,
                                             const cudnnConvolutionDescriptor_t conv,
                                             cudnnConvolutionBwdFilterAlgo_t algo, void* workspace,
                                             size_t workspace_bytes, const void* beta,
                                             const cudnnFilterDescriptor_t dw_desc, void* dw) {
  const char* call = "cudnnConvolutionBackwardFilter";
  LSEMU_CUDNN_PROBLEM(call, x_desc, dw_desc, conv, dy_desc);
  return Execute(call, handle, Pass::kBackwardFilter, algo, p, alpha, beta, x, dy, dw, workspace,
                 workspace_bytes);
}
