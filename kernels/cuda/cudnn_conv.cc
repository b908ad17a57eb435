// cuDNN convolutions (legacy API) for lockstep's NHWC / HWIO layouts. Per shape, one
// plan: the x, y, filter and convolution descriptors and, for each of the three
// passes, the first algorithm of cuDNN's heuristics (cudnnGetConvolution*Algorithm_v7;
// no cudnnFind*, which would allocate and time) that succeeds, fits the workspace cap,
// and, when asked, is deterministic. fp32 plans use no tensor cores; TF32 plans (for
// operands rounded to bf16) may, but skip the FFT and Winograd algorithms.
// Workspace layout: [OHWI filter scratch, rounded up to 256 bytes][cuDNN workspace].
#include "kernels/cuda/cudnn_conv.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "common/check.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cudnn_check.h"
#include "kernels/cuda/filter_layout.h"

namespace lockstep::kernels::cuda {
namespace {

constexpr size_t kWorkspaceAlign = 256;

size_t AlignUp(size_t n, size_t align) { return (n + align - 1) / align * align; }

std::string Describe(const Conv2dShape& s) {
  std::ostringstream os;
  os << "N=" << s.batch << " H=" << s.in_h << " W=" << s.in_w << " C=" << s.in_c
     << " -> K=" << s.out_c << " kernel " << s.kernel_h << "x" << s.kernel_w << " stride "
     << s.stride_h << "," << s.stride_w << " pad " << s.pad_h << "," << s.pad_w;
  return os.str();
}

// cuDNN takes int dimensions, and its legacy tensors hold at most 2^31-1 elements.
void CheckElements(const char* what, std::initializer_list<int64_t> dims, const Conv2dShape& s) {
  constexpr int64_t kIntMax = std::numeric_limits<int>::max();
  int64_t count = 1;
  for (const int64_t d : dims) {
    count *= d;  // both factors <= 2^31 (checked), so no int64 overflow
    LS_CHECK_LE(count, kIntMax) << "CudnnConvolution: " << what
                                << " has too many elements for cuDNN: " << Describe(s);
  }
}

void CheckShape(const Conv2dShape& s) {
  LS_CHECK(s.batch >= 0 && s.in_h > 0 && s.in_w > 0 && s.in_c > 0 && s.out_c > 0 &&
           s.kernel_h > 0 && s.kernel_w > 0 && s.stride_h > 0 && s.stride_w > 0 && s.pad_h >= 0 &&
           s.pad_w >= 0)
      << "CudnnConvolution: bad shape " << Describe(s);
  constexpr int64_t kIntMax = std::numeric_limits<int>::max();
  for (const int64_t v : {s.batch, s.in_h, s.in_w, s.in_c, s.out_c, s.kernel_h, s.kernel_w,
                          s.stride_h, s.stride_w, s.pad_h, s.pad_w}) {
    LS_CHECK_LE(v, kIntMax) << "CudnnConvolution: dimension exceeds cuDNN's int: " << Describe(s);
  }
  LS_CHECK(s.out_h() > 0 && s.out_w() > 0)
      << "CudnnConvolution: kernel larger than padded input: " << Describe(s);
  CheckElements("x", {s.batch, s.in_h, s.in_w, s.in_c}, s);
  CheckElements("y", {s.batch, s.out_h(), s.out_w(), s.out_c}, s);
  CheckElements("w", {s.kernel_h, s.kernel_w, s.in_c, s.out_c}, s);
}

int Int(int64_t v) { return static_cast<int>(v); }  // after CheckShape

FilterDims FilterOf(const Conv2dShape& s) { return {s.kernel_h, s.kernel_w, s.in_c, s.out_c}; }

// The descriptors and chosen algorithms of one shape (batch > 0).
struct ConvPlan {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  cudnnConvolutionFwdAlgo_t fwd_algo{};
  cudnnConvolutionBwdDataAlgo_t bwd_data_algo{};
  cudnnConvolutionBwdFilterAlgo_t bwd_filter_algo{};
  size_t fwd_bytes = 0, bwd_data_bytes = 0, bwd_filter_bytes = 0;  // cuDNN workspace
  // The math type each chosen algorithm was offered with, set before it runs (the
  // passes share one convolution descriptor).
  cudnnMathType_t fwd_math = CUDNN_FMA_MATH, bwd_data_math = CUDNN_FMA_MATH, bwd_filter_math = CUDNN_FMA_MATH;
  size_t scratch_bytes = 0;  // the OHWI filter, rounded up to kWorkspaceAlign
  FilterDims filter;

  ConvPlan() = default;
  ConvPlan(const ConvPlan&) = delete;
  ConvPlan& operator=(const ConvPlan&) = delete;
  ~ConvPlan() {  // no checks: may run during unwinding
    if (conv != nullptr) cudnnDestroyConvolutionDescriptor(conv);
    if (w != nullptr) cudnnDestroyFilterDescriptor(w);
    if (y != nullptr) cudnnDestroyTensorDescriptor(y);
    if (x != nullptr) cudnnDestroyTensorDescriptor(x);
  }

  size_t total_bytes() const {
    return scratch_bytes + std::max({fwd_bytes, bwd_data_bytes, bwd_filter_bytes});
  }
};

// Algorithms that transform their operands before multiplying (FFT, Winograd): their
// tensor-core products are of transformed values, which bf16 rounding does not make
// exact in TF32.
bool TransformsOperands(cudnnConvolutionFwdAlgo_t a) {
  return a == CUDNN_CONVOLUTION_FWD_ALGO_FFT || a == CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING ||
         a == CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD || a == CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED;
}
bool TransformsOperands(cudnnConvolutionBwdDataAlgo_t a) {
  return a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT || a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING ||
         a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD || a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED;
}
bool TransformsOperands(cudnnConvolutionBwdFilterAlgo_t a) {
  return a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT || a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING ||
         a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED;
}

// What a plan's algorithms must be.
struct Constraints {
  bool deterministic;
  bool tf32;  // TF32 tensor cores allowed (the operands are bf16 values)
  size_t cap;
};

// The first heuristic result we may use, and the math type to run it with; false (with
// each rejection appended to *rejected) when there is none. workspace_size(algo, math,
// &bytes) asks cuDNN what the algorithm needs for this problem with that math type: the
// heuristic's `memory` is an estimate. Without TF32 the math type is CUDNN_FMA_MATH
// whatever a result says (a result offered as CUDNN_DEFAULT_MATH would run on TF32
// tensor cores).
template <typename Perf, typename Algo, typename SizeFn>
bool ChooseAlgorithm(const std::vector<Perf>& results, int returned, const Constraints& c,
                     SizeFn workspace_size, Algo* algo, cudnnMathType_t* math, size_t* bytes,
                     std::string* rejected) {
  const size_t cap = c.cap;
  for (int i = 0; i < returned; ++i) {
    const Perf& r = results[static_cast<size_t>(i)];
    std::string why;
    if (r.status != CUDNN_STATUS_SUCCESS) {
      why = cudnnGetErrorString(r.status);
    } else if (c.deterministic && r.determinism != CUDNN_DETERMINISTIC) {
      why = "non-deterministic";
    } else if (r.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) {
      why = "tensor-op math with conversion";  // fp16 products: neither fp32 nor bf16 values
    } else if (!c.tf32 && r.mathType == CUDNN_TENSOR_OP_MATH) {
      why = "tensor-op math";  // TF32 products: not fp32 accuracy
    } else if (c.tf32 && TransformsOperands(r.algo)) {
      why = "transforms its operands (not exact in TF32)";
    } else if (r.memory > cap) {
      why = "workspace " + std::to_string(r.memory) + " bytes over the cap";
    } else {
      const cudnnMathType_t run_math = c.tf32 ? r.mathType : CUDNN_FMA_MATH;
      size_t need = 0;
      const cudnnStatus_t st = workspace_size(r.algo, run_math, &need);
      if (st != CUDNN_STATUS_SUCCESS) {
        why = std::string("workspace query: ") + cudnnGetErrorString(st);
      } else if (need > cap) {
        why = "workspace " + std::to_string(need) + " bytes over the cap";
      } else {
        *algo = r.algo;
        *math = run_math;
        *bytes = std::max(need, r.memory);
        return true;
      }
    }
    *rejected += " algo " + std::to_string(static_cast<int>(r.algo)) + ": " + why + ";";
  }
  return false;
}

// The plan of s, or null with *why set when cuDNN offers no usable algorithm for one of
// the passes (e.g. none deterministic for this shape).
std::unique_ptr<ConvPlan> MakePlan(cudnnHandle_t handle, const Conv2dShape& s, const Constraints& want,
                                   std::string* why) {
  auto p = std::make_unique<ConvPlan>();
  p->filter = FilterOf(s);
  p->scratch_bytes =
      AlignUp(static_cast<size_t>(FilterCount(p->filter)) * sizeof(float), kWorkspaceAlign);
  LS_CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->x));
  LS_CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->y));
  LS_CUDNN_CHECK(cudnnCreateFilterDescriptor(&p->w));
  LS_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&p->conv));
  // Tensor dimensions are given as (n, c, h, w) whatever the format; NHWC sets the strides.
  LS_CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->x, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, Int(s.batch),
                                            Int(s.in_c), Int(s.in_h), Int(s.in_w)));
  // An NHWC filter is (k, r, s, c) = (out_c, kh, kw, in_c) in memory: OHWI.
  LS_CUDNN_CHECK(cudnnSetFilter4dDescriptor(p->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC, Int(s.out_c),
                                            Int(s.in_c), Int(s.kernel_h), Int(s.kernel_w)));
  // The CPU kernels' im2col convolution is a cross-correlation (no filter flip).
  LS_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(p->conv, Int(s.pad_h), Int(s.pad_w),
                                                 Int(s.stride_h), Int(s.stride_w), 1, 1,
                                                 CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  // fp32 exactness: CUDNN_DEFAULT_MATH would still let cuDNN run fp32 convolutions on
  // TF32 tensor cores on Ampere and later (10-bit mantissa products, ~1e-3 relative
  // error); CUDNN_FMA_MATH restricts it to fp32 FMA kernels. With TF32 allowed the
  // heuristics may offer both kinds (CUDNN_DEFAULT_MATH); each pass then runs with the
  // math type its algorithm was offered with. Set again before each pass's heuristics:
  // the workspace queries set each candidate's.
  const cudnnMathType_t offered = want.tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
  LS_CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv, offered));
  int n = 0, c = 0, h = 0, w = 0;
  LS_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(p->conv, p->x, p->w, &n, &c, &h, &w));
  LS_CHECK(n == s.batch && c == s.out_c && h == s.out_h() && w == s.out_w())
      << "CudnnConvolution: cuDNN's output " << n << "x" << h << "x" << w << "x" << c
      << " differs from the shape's for " << Describe(s);
  LS_CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->y, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, n, c, h, w));

  const std::string mode = std::string(want.deterministic ? " (deterministic only)" : "") + (want.tf32 ? " (TF32)" : "");
  int max_count = 0, returned = 0;
  std::string rejected;

  LS_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(handle, &max_count));
  std::vector<cudnnConvolutionFwdAlgoPerf_t> fwd(static_cast<size_t>(std::max(max_count, 1)));
  LS_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(handle, p->x, p->w, p->conv, p->y,
                                                        max_count, &returned, fwd.data()));
  const auto fwd_size = [&](cudnnConvolutionFwdAlgo_t algo, cudnnMathType_t math, size_t* bytes) {
    LS_CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv, math));
    return cudnnGetConvolutionForwardWorkspaceSize(handle, p->x, p->w, p->conv, p->y, algo, bytes);
  };
  if (!ChooseAlgorithm(fwd, returned, want, fwd_size, &p->fwd_algo, &p->fwd_math, &p->fwd_bytes, &rejected)) {
    *why = "no forward algorithm" + mode + " for " + Describe(s) + ":" + rejected;
    return nullptr;
  }

  rejected.clear();
  LS_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(handle, &max_count));
  std::vector<cudnnConvolutionBwdDataAlgoPerf_t> bwd_data(
      static_cast<size_t>(std::max(max_count, 1)));
  LS_CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv, offered));
  LS_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(
      handle, p->w, p->y, p->conv, p->x, max_count, &returned, bwd_data.data()));
  const auto bwd_data_size = [&](cudnnConvolutionBwdDataAlgo_t algo, cudnnMathType_t math, size_t* bytes) {
    LS_CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv, math));
    return cudnnGetConvolutionBackwardDataWorkspaceSize(handle, p->w, p->y, p->conv, p->x, algo,
                                                        bytes);
  };
  if (!ChooseAlgorithm(bwd_data, returned, want, bwd_data_size, &p->bwd_data_algo, &p->bwd_data_math,
                       &p->bwd_data_bytes, &rejected)) {
    *why = "no backward-data algorithm" + mode + " for " + Describe(s) + ":" + rejected;
    return nullptr;
  }

  rejected.clear();
  LS_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(handle, &max_count));
  std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> bwd_filter(
      static_cast<size_t>(std::max(max_count, 1)));
  LS_CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv, offered));
  LS_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
      handle, p->x, p->y, p->conv, p->w, max_count, &returned, bwd_filter.data()));
  const auto bwd_filter_size = [&](cudnnConvolutionBwdFilterAlgo_t algo, cudnnMathType_t math, size_t* bytes) {
    LS_CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv, math));
    return cudnnGetConvolutionBackwardFilterWorkspaceSize(handle, p->x, p->y, p->conv, p->w, algo,
                                                          bytes);
  };
  if (!ChooseAlgorithm(bwd_filter, returned, want, bwd_filter_size, &p->bwd_filter_algo, &p->bwd_filter_math,
                       &p->bwd_filter_bytes, &rejected)) {
    *why = "no backward-filter algorithm" + mode + " for " + Describe(s) + ":" + rejected;
    return nullptr;
  }
  return p;
}

using ShapeKey = std::array<int64_t, 11>;

ShapeKey KeyOf(const Conv2dShape& s) {
  return {s.batch,    s.in_h,     s.in_w,     s.in_c,  s.out_c, s.kernel_h,
          s.kernel_w, s.stride_h, s.stride_w, s.pad_h, s.pad_w};
}

// The filter scratch and the cuDNN workspace behind it.
struct WorkspaceParts {
  float* filter;
  void* cudnn;
};

WorkspaceParts Split(const ConvPlan& p, void* workspace) {
  LS_CHECK(workspace != nullptr) << "CudnnConvolution: null workspace (need " << p.total_bytes()
                                 << " bytes)";
  LS_CHECK_EQ(reinterpret_cast<uintptr_t>(workspace) % kWorkspaceAlign, uintptr_t{0})
      << "CudnnConvolution: workspace must be " << kWorkspaceAlign << "-byte aligned";
  return {static_cast<float*>(workspace), static_cast<char*>(workspace) + p.scratch_bytes};
}

}  // namespace

struct CudnnConvolution::Impl {
  cudnnHandle_t handle = nullptr;
  Constraints constraints{true, false, 0};
  struct Entry {
    std::unique_ptr<ConvPlan> plan;  // null: unsupported, see why
    std::string why;
  };
  std::map<ShapeKey, Entry> plans;

  // The cached plan (or the reason there is none) of s (batch > 0, shape checked),
  // made on first use.
  const Entry& EntryFor(const Conv2dShape& s) {
    Entry& e = plans[KeyOf(s)];
    if (e.plan == nullptr && e.why.empty()) e.plan = MakePlan(handle, s, constraints, &e.why);
    return e;
  }
  const ConvPlan& PlanFor(const Conv2dShape& s) {
    const Entry& e = EntryFor(s);
    LS_CHECK(e.plan != nullptr) << "CudnnConvolution: " << e.why << " (check Supports first)";
    return *e.plan;
  }
};

CudnnConvolution::CudnnConvolution(bool deterministic, bool allow_tf32, size_t algorithm_workspace_cap)
    : impl_(std::make_unique<Impl>()) {
  impl_->constraints = Constraints{deterministic, allow_tf32, algorithm_workspace_cap};
  LS_CUDNN_CHECK(cudnnCreate(&impl_->handle));
}

CudnnConvolution::~CudnnConvolution() {
  impl_->plans.clear();  // descriptors before the handle
  if (impl_->handle != nullptr) cudnnDestroy(impl_->handle);
}

bool CudnnConvolution::deterministic() const { return impl_->constraints.deterministic; }
bool CudnnConvolution::allow_tf32() const { return impl_->constraints.tf32; }

bool CudnnConvolution::Supports(const Conv2dShape& s, std::string* why) {
  CheckShape(s);
  if (s.batch == 0) return true;
  const Impl::Entry& e = impl_->EntryFor(s);
  if (e.plan == nullptr && why != nullptr) *why = e.why;
  return e.plan != nullptr;
}

size_t CudnnConvolution::WorkspaceBytes(const Conv2dShape& s) {
  CheckShape(s);
  if (s.batch == 0) return 0;
  return impl_->PlanFor(s).total_bytes();
}

void CudnnConvolution::Forward(const Conv2dShape& s, const float* x, const float* w, float* y,
                               void* workspace, cudaStream_t stream) {
  CheckShape(s);
  if (s.batch == 0) return;
  const ConvPlan& p = impl_->PlanFor(s);
  const WorkspaceParts ws = Split(p, workspace);
  FilterHwioToOhwi(p.filter, w, ws.filter, stream);
  LS_CUDNN_CHECK(cudnnSetStream(impl_->handle, stream));
  LS_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, p.fwd_math));
  const float one = 1.0f, zero = 0.0f;  // beta 0: cuDNN does not read y
  LS_CUDNN_CHECK(cudnnConvolutionForward(impl_->handle, &one, p.x, x, p.w, ws.filter, p.conv,
                                         p.fwd_algo, p.fwd_bytes > 0 ? ws.cudnn : nullptr,
                                         p.fwd_bytes, &zero, p.y, y));
}

void CudnnConvolution::BackwardData(const Conv2dShape& s, const float* dy, const float* w,
                                    float* dx, void* workspace, cudaStream_t stream) {
  CheckShape(s);
  if (s.batch == 0) return;
  const ConvPlan& p = impl_->PlanFor(s);
  const WorkspaceParts ws = Split(p, workspace);
  FilterHwioToOhwi(p.filter, w, ws.filter, stream);
  LS_CUDNN_CHECK(cudnnSetStream(impl_->handle, stream));
  LS_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, p.bwd_data_math));
  const float one = 1.0f, zero = 0.0f;  // beta 0: dx overwritten, not read
  LS_CUDNN_CHECK(cudnnConvolutionBackwardData(
      impl_->handle, &one, p.w, ws.filter, p.y, dy, p.conv, p.bwd_data_algo,
      p.bwd_data_bytes > 0 ? ws.cudnn : nullptr, p.bwd_data_bytes, &zero, p.x, dx));
}

void CudnnConvolution::BackwardFilter(const Conv2dShape& s, const float* x, const float* dy,
                                      float beta, float* dw, void* workspace, cudaStream_t stream) {
  CheckShape(s);
  LS_CHECK(beta == 0.0f || beta == 1.0f) << "CudnnConvolution::BackwardFilter: beta " << beta;
  if (s.batch == 0) {  // the gradient is zero: dw = beta * dw
    if (beta == 0.0f) {
      const size_t bytes = static_cast<size_t>(FilterCount(FilterOf(s))) * sizeof(float);
      LS_CUDA_CHECK(cudaMemsetAsync(dw, 0, bytes, stream));
    }
    return;
  }
  const ConvPlan& p = impl_->PlanFor(s);
  const WorkspaceParts ws = Split(p, workspace);
  LS_CUDNN_CHECK(cudnnSetStream(impl_->handle, stream));
  LS_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, p.bwd_filter_math));
  // The gradient goes to the OHWI scratch with beta 0, then one deterministic pass adds
  // (or copies) it into the HWIO dw: cuDNN's own beta would need dw in OHWI.
  const float one = 1.0f, zero = 0.0f;
  LS_CUDNN_CHECK(cudnnConvolutionBackwardFilter(
      impl_->handle, &one, p.x, x, p.y, dy, p.conv, p.bwd_filter_algo,
      p.bwd_filter_bytes > 0 ? ws.cudnn : nullptr, p.bwd_filter_bytes, &zero, p.w, ws.filter));
  FilterOhwiToHwio(p.filter, ws.filter, beta, dw, stream);
}

}  // namespace lockstep::kernels::cuda
