// Elementwise CPU kernels: bias, activations, scaling. Raw pointers, no
// allocation; thread-safe for disjoint outputs.
#pragma once

#include <cstdint>

namespace lockstep::kernels::cpu {

enum class Activation { kIdentity, kRelu, kTanh, kSigmoid, kGelu };

// y[r, c] = f(y[r, c] + bias[c]) in one pass; bias may be null. f must be one whose
// derivative is a function of its output (identity, ReLU, Tanh, Sigmoid), so that
// backward needs no pre-activation copy.
void BiasActivationForward(float* y, const float* bias, int64_t rows, int64_t cols, Activation act);
// True for activations BiasActivationForward accepts.
bool ActivationDerivativeFromOutput(Activation act);

// y[r, c] += bias[c] for a (rows x cols) row-major y.
void BiasAdd(float* y, const float* bias, int64_t rows, int64_t cols);
// dbias[c] = beta * dbias[c] + sum_r dy[r, c]. beta is 0 (overwrite) or 1 (accumulate).
void BiasBackward(const float* dy, int64_t rows, int64_t cols, float beta, float* dbias);

// y = f(x) over n elements (x == y allowed). GELU is the tanh approximation
// (as Keras/PyTorch "gelu(approximate='tanh')").
void ActivationForward(Activation act, const float* x, float* y, int64_t n);
// dx = dy * f'(x). Needs x (GELU) or y (ReLU, Tanh, Sigmoid use the output); pass both.
// dx == dy allowed.
void ActivationBackward(Activation act, const float* x, const float* y, const float* dy, float* dx,
                        int64_t n);

// x *= s over n elements.
void Scale(float* x, int64_t n, float s);
// y = a * x + y over n elements.
void Axpy(float a, const float* x, float* y, int64_t n);
// Sum of x[i]^2, accumulated in double in a fixed order (deterministic).
double SumOfSquares(const float* x, int64_t n);

}  // namespace lockstep::kernels::cpu
