// GemmPrecision::kBf16Inputs for convolutions, shared by the backends. A convolution
// is a GEMM, so each pass computes on its two operands rounded to bf16 (forward: x
// and w; backward-data: dy and w; backward-filter: x and dy), with fp32 products
// (exact: bf16 x bf16 fits in fp32), fp32 sums and fp32 outputs. A backend rounds the
// operands into the front of the convolution's workspace, one after the other, and runs its
// fp32 convolution on the copies, with the rest of the workspace as its own. On a GPU
// the copies may then go through TF32 tensor cores: TF32 holds bf16 values exactly.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "kernels/cpu/conv.h"

namespace lockstep {

class Bf16ConvOperands {
 public:
  explicit Bf16ConvOperands(const kernels::cpu::Conv2dShape& s)
      : x_(s.batch * s.in_h * s.in_w * s.in_c),
        w_(s.kernel_h * s.kernel_w * s.in_c * s.out_c),
        dy_(s.col_rows() * s.out_c),
        bytes_(std::max({Slot(x_) + Slot(w_), Slot(dy_) + Slot(w_), Slot(x_) + Slot(dy_)})) {}

  // The copies of the pass that needs most (each copy a multiple of 256 bytes: the
  // workspace after them keeps its alignment, which cuDNN wants).
  size_t bytes() const { return bytes_; }

  // round(src, dst, n) each operand into its slot; they then point at the copies.
  // Returns the workspace after the slots.
  template <typename RoundFn>
  void* Forward(void* workspace, const float** x, const float** w, RoundFn round) const {
    return RoundInto(workspace, x, x_, w, w_, round);
  }
  template <typename RoundFn>
  void* BackwardData(void* workspace, const float** dy, const float** w, RoundFn round) const {
    return RoundInto(workspace, dy, dy_, w, w_, round);
  }
  template <typename RoundFn>
  void* BackwardFilter(void* workspace, const float** x, const float** dy, RoundFn round) const {
    return RoundInto(workspace, x, x_, dy, dy_, round);
  }

 private:
  static size_t Slot(int64_t floats) { return (static_cast<size_t>(floats) * sizeof(float) + 255) / 256 * 256; }

  template <typename RoundFn>
  void* RoundInto(void* workspace, const float** a, int64_t na, const float** b, int64_t nb, RoundFn round) const {
    auto* first = static_cast<float*>(workspace);
    auto* second = reinterpret_cast<float*>(static_cast<char*>(workspace) + Slot(na));
    round(*a, first, na);
    round(*b, second, nb);
    *a = first;
    *b = second;
    return static_cast<char*>(workspace) + bytes();
  }

  int64_t x_, w_, dy_;
  size_t bytes_;
};

}  // namespace lockstep
