// Conv2d by im2col + one cuBLASLt GEMM per chunk of whole samples, the CPU's plan
// (kernels/cpu/conv.cc) without its cache pieces and threads: the GEMM sees a whole
// chunk. im2col is one thread per cols element; col2im gathers (one thread per dx
// element summing the cols entries that read it, in a fixed order), so there are no
// atomics and every result is bitwise repeatable. Index math: conv_index.h.
#include <algorithm>

#include "common/check.h"
#include "kernels/cuda/conv.h"
#include "kernels/cuda/conv_index.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/launch.cuh"

namespace lockstep::kernels::cuda {
namespace {

__global__ void Im2colKernel(ConvDims d, const float* x, float* cols) {
  const int64_t total = d.batch * d.out_h * d.out_w * d.col_cols;
  LS_GRID_STRIDE_LOOP(i, total) {  // i = row * col_cols + col: consecutive threads, consecutive c
    cols[i] = Im2colValue(d, x, i / d.col_cols, i % d.col_cols);
  }
}

__global__ void Col2imKernel(ConvDims d, const float* cols, float* dx) {
  const int64_t total = d.batch * d.in_h * d.in_w * d.in_c;
  LS_GRID_STRIDE_LOOP(i, total) { dx[i] = Col2imGatherValue(d, cols, i); }
}

bool IsPointwise(const Conv2dShape& s) {
  return s.kernel_h == 1 && s.kernel_w == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_h == 0 &&
         s.pad_w == 0;
}

void CheckShape(const Conv2dShape& s) {
  LS_CHECK(s.batch >= 0 && s.in_h > 0 && s.in_w > 0 && s.in_c > 0 && s.out_c > 0 &&
           s.kernel_h > 0 && s.kernel_w > 0 && s.stride_h > 0 && s.stride_w > 0 && s.pad_h >= 0 &&
           s.pad_w >= 0)
      << "Conv2d: bad shape";
  LS_CHECK(s.out_h() > 0 && s.out_w() > 0)
      << "Conv2d: kernel " << s.kernel_h << "x" << s.kernel_w << " larger than padded input "
      << s.in_h << "x" << s.in_w << " (pad " << s.pad_h << "," << s.pad_w << ")";
}

// The im2col scratch of a non-pointwise conv, checked.
float* Cols(const Conv2dShape& s, void* workspace) {
  LS_CHECK(workspace != nullptr || s.batch == 0)
      << "Conv2d: null workspace (needs Conv2dWorkspaceBytes bytes)";
  return static_cast<float*>(workspace);
}

// fn(n0, piece) for the chunks of whole samples, in order; `piece` is `s` with the
// chunk's batch.
template <typename Fn>
void ForEachChunk(const Conv2dShape& s, size_t max_chunk_bytes, Fn&& fn) {
  const int64_t chunk = ConvChunkSamples(s, max_chunk_bytes);
  for (int64_t n0 = 0; n0 < s.batch; n0 += chunk) {
    Conv2dShape piece = s;
    piece.batch = std::min(chunk, s.batch - n0);
    fn(n0, piece);
  }
}

GemmOptions TensorCoreOptions(bool allow_tf32) {
  GemmOptions options;
  options.allow_tf32 = allow_tf32;
  return options;
}

}  // namespace

void Im2col(const Conv2dShape& s, const float* x, float* cols, cudaStream_t stream) {
  CheckShape(s);
  const ConvDims d = ResolveConvDims(s);
  const int64_t total = d.batch * d.out_h * d.out_w * d.col_cols;
  if (total == 0) return;
  Im2colKernel<<<GridFor(total), kThreads, 0, stream>>>(d, x, cols);
  LS_CUDA_CHECK_LAUNCH();
}

void Col2im(const Conv2dShape& s, const float* cols, float* dx, cudaStream_t stream) {
  CheckShape(s);
  const ConvDims d = ResolveConvDims(s);
  const int64_t total = d.batch * d.in_h * d.in_w * d.in_c;
  if (total == 0) return;
  Col2imKernel<<<GridFor(total), kThreads, 0, stream>>>(d, cols, dx);
  LS_CUDA_CHECK_LAUNCH();
}

namespace internal {

size_t Conv2dWorkspaceBytes(const Conv2dShape& s, size_t max_chunk_bytes) {
  CheckShape(s);
  if (IsPointwise(s)) return 0;  // cols == x, no copy
  const int64_t per_sample = s.out_h() * s.out_w() * s.col_cols();
  return static_cast<size_t>(ConvChunkSamples(s, max_chunk_bytes) * per_sample) * sizeof(float);
}

void Conv2dForward(cublasLtHandle_t lt, GemmWorkspace gemm_workspace, const Conv2dShape& s,
                   const float* x, const float* w, float* y, void* workspace,
                   size_t max_chunk_bytes, cudaStream_t stream, bool allow_tf32,
                   GemmEpilogue epilogue, const float* bias) {
  CheckShape(s);
  const bool needs_bias = epilogue == GemmEpilogue::kBias || epilogue == GemmEpilogue::kBiasRelu;
  LS_CHECK(needs_bias == (bias != nullptr)) << "Conv2dForward: a bias epilogue needs a bias, and only it";
  GemmOptions options = TensorCoreOptions(allow_tf32);
  options.epilogue = epilogue;  // per output row: the chunks' GEMMs apply it to theirs
  options.bias = bias;
  const int64_t k = s.col_cols(), pix = s.out_h() * s.out_w(), in_per = s.in_h * s.in_w * s.in_c;
  if (IsPointwise(s)) {
    // y (NHW x Cout) = x (NHW x Cin) * w (Cin x Cout).
    Sgemm(lt, false, false, s.col_rows(), s.out_c, k, 1.0f, x, k, w, s.out_c, 0.0f, y, s.out_c,
          options, gemm_workspace, stream);
    return;
  }
  float* cols = Cols(s, workspace);
  ForEachChunk(s, max_chunk_bytes, [&](int64_t n0, const Conv2dShape& piece) {
    Im2col(piece, x + n0 * in_per, cols, stream);
    Sgemm(lt, false, false, piece.batch * pix, s.out_c, k, 1.0f, cols, k, w, s.out_c, 0.0f,
          y + n0 * pix * s.out_c, s.out_c, options, gemm_workspace, stream);
  });
}

void Conv2dBackwardData(cublasLtHandle_t lt, GemmWorkspace gemm_workspace, const Conv2dShape& s,
                        const float* dy, const float* w, float* dx, void* workspace,
                        size_t max_chunk_bytes, cudaStream_t stream, bool allow_tf32) {
  CheckShape(s);
  const int64_t k = s.col_cols(), pix = s.out_h() * s.out_w(), in_per = s.in_h * s.in_w * s.in_c;
  if (IsPointwise(s)) {
    // dx (NHW x Cin) = dy (NHW x Cout) * w^T.
    Sgemm(lt, false, true, s.col_rows(), k, s.out_c, 1.0f, dy, s.out_c, w, s.out_c, 0.0f, dx, k,
          TensorCoreOptions(allow_tf32), gemm_workspace, stream);
    return;
  }
  float* cols = Cols(s, workspace);
  ForEachChunk(s, max_chunk_bytes, [&](int64_t n0, const Conv2dShape& piece) {
    // dcols (rows x KhKwCin) = dy * w^T, then gathered back onto the chunk's dx.
    Sgemm(lt, false, true, piece.batch * pix, k, s.out_c, 1.0f, dy + n0 * pix * s.out_c, s.out_c, w,
          s.out_c, 0.0f, cols, k, TensorCoreOptions(allow_tf32), gemm_workspace, stream);
    Col2im(piece, cols, dx + n0 * in_per, stream);
  });
}

void Conv2dBackwardFilter(cublasLtHandle_t lt, GemmWorkspace gemm_workspace, const Conv2dShape& s,
                          const float* x, const float* dy, float beta, float* dw, void* workspace,
                          size_t max_chunk_bytes, cudaStream_t stream, bool allow_tf32) {
  CheckShape(s);
  LS_CHECK(beta == 0.0f || beta == 1.0f) << "Conv2dBackwardFilter: beta " << beta;
  const int64_t k = s.col_cols(), pix = s.out_h() * s.out_w(), in_per = s.in_h * s.in_w * s.in_c;
  if (IsPointwise(s) || s.batch == 0) {
    // dw (Cin x Cout) = x^T dy; with no samples the GEMM's k is 0: dw = beta * dw.
    Sgemm(lt, true, false, k, s.out_c, s.col_rows(), 1.0f, x, k, dy, s.out_c, beta, dw, s.out_c,
          TensorCoreOptions(allow_tf32), gemm_workspace, stream);
    return;
  }
  float* cols = Cols(s, workspace);
  float b = beta;  // the first chunk applies the caller's beta, later chunks accumulate
  ForEachChunk(s, max_chunk_bytes, [&](int64_t n0, const Conv2dShape& piece) {
    Im2col(piece, x + n0 * in_per, cols, stream);
    // dw (KhKwCin x Cout) = cols^T * dy.
    Sgemm(lt, true, false, k, s.out_c, piece.batch * pix, 1.0f, cols, k, dy + n0 * pix * s.out_c,
          s.out_c, b, dw, s.out_c, TensorCoreOptions(allow_tf32), gemm_workspace, stream);
    b = 1.0f;
  });
}

}  // namespace internal

size_t Conv2dWorkspaceBytes(const Conv2dShape& s) {
  return internal::Conv2dWorkspaceBytes(s, kConv2dMaxWorkspaceBytes);
}

void Conv2dForward(cublasLtHandle_t lt, GemmWorkspace gemm_workspace, const Conv2dShape& s,
                   const float* x, const float* w, float* y, void* workspace, cudaStream_t stream,
                   bool allow_tf32, GemmEpilogue epilogue, const float* bias) {
  internal::Conv2dForward(lt, gemm_workspace, s, x, w, y, workspace, kConv2dMaxWorkspaceBytes,
                          stream, allow_tf32, epilogue, bias);
}

void Conv2dBackwardData(cublasLtHandle_t lt, GemmWorkspace gemm_workspace, const Conv2dShape& s,
                        const float* dy, const float* w, float* dx, void* workspace,
                        cudaStream_t stream, bool allow_tf32) {
  internal::Conv2dBackwardData(lt, gemm_workspace, s, dy, w, dx, workspace,
                               kConv2dMaxWorkspaceBytes, stream, allow_tf32);
}

void Conv2dBackwardFilter(cublasLtHandle_t lt, GemmWorkspace gemm_workspace, const Conv2dShape& s,
                          const float* x, const float* dy, float beta, float* dw, void* workspace,
                          cudaStream_t stream, bool allow_tf32) {
  internal::Conv2dBackwardFilter(lt, gemm_workspace, s, x, dy, beta, dw, workspace,
                                 kConv2dMaxWorkspaceBytes, stream, allow_tf32);
}

}  // namespace lockstep::kernels::cuda
