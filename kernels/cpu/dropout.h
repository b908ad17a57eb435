// Dropout driven by the Philox4x32-10 counter-based RNG, so a mask is a pure
// function of (seed, layer, step, global sample index, element index): the same
// on every backend and every world size. Raw pointers; thread-safe.
#pragma once

#include <array>
#include <cstdint>

namespace lockstep::kernels::cpu {

// Philox4x32 with 10 rounds (Salmon et al., SC'11), the generator cuRAND and
// PyTorch also use. Returns 4 random words for one counter.
std::array<uint32_t, 4> Philox4x32(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key);

// Uniform float in [0, 1) from a 32-bit word (top 24 bits).
inline float UniformFromBits(uint32_t bits) { return static_cast<float>(bits >> 8) * (1.0f / 16777216.0f); }

struct DropoutKey {
  uint64_t seed = 0;
  uint32_t layer = 0;   // layer index in the model
  uint64_t step = 0;    // global optimizer step (x micro-batch, see runtime)
};

// For a (rows x row_len) x whose row r is global sample first_global_row + r:
// element e of that sample is kept when Uniform(Philox(counter={e/4, sample, step_lo,
// step_hi ^ (layer << 16)}, key=seed)[e%4]) >= rate. Kept elements are scaled by 1/(1-rate);
// mask[i] = 1 when kept. y == x allowed. rate must be in [0, 1). The sample index enters
// the counter as its low 32 bits.
void DropoutForward(const DropoutKey& key, const float* x, float* y, uint8_t* mask, int64_t rows,
                    int64_t row_len, int64_t first_global_row, float rate);
// dx = dy * mask / (1 - rate). dx == dy allowed.
void DropoutBackward(const float* dy, const uint8_t* mask, float* dx, int64_t n, float rate);

}  // namespace lockstep::kernels::cpu
