// Pointwise LSTM and GRU cell kernels on the CPU, one time step over a batch.
// The matrix products (input projection for all steps, recurrent product per
// step) are GEMMs done by the caller; these kernels apply the gate
// nonlinearities and the state update, and their exact derivatives.
// Gate layouts follow Keras: LSTM [i, f, c, o], GRU [z, r, h] with
// reset_after=True (the reset gate multiplies h_prev U_h + b_rh).
// Raw pointers, no allocation; thread-safe for disjoint outputs.
#pragma once

#include <cstdint>

namespace lockstep::kernels::cpu {

// One time step of a batch. Gate rows (G * units floats, G = 4 for LSTM, 3 for
// GRU) of consecutive samples are gate_stride floats apart; state rows (units
// floats: c, h) are state_stride apart. With (batch, T, ...) buffers and step t,
// pass pointers offset by t rows and strides T * row.
struct RecurrentStep {
  int64_t batch = 0;
  int64_t units = 0;
  int64_t gate_stride = 0;
  int64_t state_stride = 0;
};

// gates: in the pre-activations x W + h_prev U + b, out the activations
// [sigmoid(i), sigmoid(f + forget_bias), tanh(g), sigmoid(o)].
// c = f * c_prev + i * g; h = o * tanh(c). c_prev null means a zero state.
void LstmCellForward(const RecurrentStep& s, float* gates, const float* c_prev, float* c, float* h,
                     float forget_bias);

// Backward of one step. dh = dy (may be null; rows dy_stride apart) + dh_carry
// (may be null; (batch, units) contiguous). dc (batch, units) contiguous: in, the
// gradient reaching c from the later step (zeros at the last step); out, the
// gradient for c_prev. dgates (rows gate_stride apart): d(pre-activations); may be
// gates itself (each element is read before it is written).
void LstmCellBackward(const RecurrentStep& s, const float* gates, const float* c_prev,
                      const float* c, const float* dy, int64_t dy_stride, const float* dh_carry,
                      float* dc, float* dgates);

// gates: in the input projections x W + b_i, out the activations [z, r, hh].
// rec: in h_prev U (ignored when h_prev is null: a zero state), out
// h_prev U + b_r (kept for backward). h = z * h_prev + (1 - z) * hh with
// hh = tanh(x_h + r * (h_prev U_h + b_rh)). rec rows are gate_stride apart.
void GruCellForward(const RecurrentStep& s, float* gates, float* rec, const float* rec_bias,
                    const float* h_prev, float* h);

// Backward of one step. dh as for LSTM. Writes dgates = d(input projections),
// drec = d(h_prev U + b_r) (rows gate_stride apart), and dh_prev = dh * z, the
// direct path only (the caller adds drec U^T). dh_prev may alias dh_carry; dgates may
// be gates and drec rec, both or neither (each element is read before it is written).
void GruCellBackward(const RecurrentStep& s, const float* gates, const float* rec,
                     const float* h_prev, const float* dy, int64_t dy_stride,
                     const float* dh_carry, float* dh_prev, float* dgates, float* drec);

}  // namespace lockstep::kernels::cpu
