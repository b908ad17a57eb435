// LSTM and GRU cell kernels on the GPU, one time step over a batch, mirroring
// kernels/cpu/recurrent.h: the same RecurrentStep (rows gate_stride / state_stride
// floats apart), the same gate layouts (LSTM [i, f, c, o], GRU [z, r, hh] with
// reset_after), the same null-pointer meanings and the same formulas in the same
// order, with the CPU's polynomial exp / tanh (kernels/cuda/fast_math.h), so every
// output is bitwise the CPU's scalar arithmetic (the CPU kernels' AVX2 clone may fuse
// multiply-adds: last-bit differences, see tests/cuda/sequence_replay.h). One thread
// per (sample, unit). Pointers are device memory; asynchronous on `stream`.
// Thread-safe; ordering is the stream's.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cpu/recurrent.h"

namespace lockstep::kernels::cuda {

using RecurrentStep = ::lockstep::kernels::cpu::RecurrentStep;

// gates (pre-activations in, [sigmoid(i), sigmoid(f + forget_bias), tanh(g),
// sigmoid(o)] out); c = f * c_prev + i * g, h = o * tanh(c); c_prev null: zero state.
void LstmCellForward(const RecurrentStep& s, float* gates, const float* c_prev, float* c, float* h,
                     float forget_bias, cudaStream_t stream);

// dh = dy (may be null; rows dy_stride apart) + dh_carry (may be null; (batch, units)
// contiguous). dc (batch, units): in the gradient from the later step, out the one for
// c_prev. dgates (rows gate_stride apart) = d(pre-activations); may be gates itself
// (each element is read before it is written, by the same thread).
void LstmCellBackward(const RecurrentStep& s, const float* gates, const float* c_prev,
                      const float* c, const float* dy, int64_t dy_stride, const float* dh_carry,
                      float* dc, float* dgates, cudaStream_t stream);

// gates (input projections in, [z, r, hh] out); rec (h_prev U in, ignored when h_prev
// is null; h_prev U + b_r out); rec_bias (3 * units); h = z * h_prev + (1 - z) * hh.
void GruCellForward(const RecurrentStep& s, float* gates, float* rec, const float* rec_bias,
                    const float* h_prev, float* h, cudaStream_t stream);

// dgates, drec (rows gate_stride apart) and dh_prev = dh * z ((batch, units); may
// alias dh_carry). dgates may be gates and drec rec: each element is read before it is
// written, by the same thread.
void GruCellBackward(const RecurrentStep& s, const float* gates, const float* rec,
                     const float* h_prev, const float* dy, int64_t dy_stride,
                     const float* dh_carry, float* dh_prev, float* dgates, float* drec,
                     cudaStream_t stream);

}  // namespace lockstep::kernels::cuda
