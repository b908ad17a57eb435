// Philox4x32-10 (Random123's reference constants) and the dropout kernels it
// drives. The mask depends only on (seed, layer, step, global sample, element),
// never on how the batch was split over ranks. Pure functions; thread-safe.
#include "kernels/cpu/dropout.h"

#include "common/check.h"

namespace lockstep::kernels::cpu {
namespace {

constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;  // golden ratio
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;  // sqrt(3) - 1

inline void MulHiLo(uint32_t a, uint32_t b, uint32_t* hi, uint32_t* lo) {
  const uint64_t p = static_cast<uint64_t>(a) * b;
  *hi = static_cast<uint32_t>(p >> 32);
  *lo = static_cast<uint32_t>(p);
}

}  // namespace

std::array<uint32_t, 4> Philox4x32(std::array<uint32_t, 4> ctr, std::array<uint32_t, 2> key) {
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      key[0] += kPhiloxW0;
      key[1] += kPhiloxW1;
    }
    uint32_t hi0, lo0, hi1, lo1;
    MulHiLo(kPhiloxM0, ctr[0], &hi0, &lo0);
    MulHiLo(kPhiloxM1, ctr[2], &hi1, &lo1);
    ctr = {hi1 ^ ctr[1] ^ key[0], lo1, hi0 ^ ctr[3] ^ key[1], lo0};
  }
  return ctr;
}

void DropoutForward(const DropoutKey& key, const float* x, float* y, uint8_t* mask, int64_t rows,
                    int64_t row_len, int64_t first_global_row, float rate) {
  LS_CHECK(rate >= 0.0f && rate < 1.0f) << "DropoutForward: rate " << rate << " not in [0, 1)";
  LS_CHECK_GE(first_global_row, 0) << "DropoutForward";
  const float scale = 1.0f / (1.0f - rate);
  const std::array<uint32_t, 2> k = {static_cast<uint32_t>(key.seed),
                                     static_cast<uint32_t>(key.seed >> 32)};
  const uint32_t step_lo = static_cast<uint32_t>(key.step);
  const uint32_t step_hi = static_cast<uint32_t>(key.step >> 32) ^ (key.layer << 16);
  for (int64_t r = 0; r < rows; ++r) {
    const uint32_t sample = static_cast<uint32_t>(first_global_row + r);
    const int64_t off = r * row_len;
    for (int64_t e0 = 0; e0 < row_len; e0 += 4) {
      const std::array<uint32_t, 4> bits =
          Philox4x32({static_cast<uint32_t>(e0 / 4), sample, step_lo, step_hi}, k);
      const int64_t lanes = row_len - e0 < 4 ? row_len - e0 : 4;
      for (int64_t j = 0; j < lanes; ++j) {
        const int64_t i = off + e0 + j;
        const bool keep = UniformFromBits(bits[j]) >= rate;
        mask[i] = keep ? 1 : 0;
        y[i] = keep ? x[i] * scale : 0.0f;
      }
    }
  }
}

void DropoutBackward(const float* dy, const uint8_t* mask, float* dx, int64_t n, float rate) {
  LS_CHECK(rate >= 0.0f && rate < 1.0f) << "DropoutBackward: rate " << rate << " not in [0, 1)";
  const float scale = 1.0f / (1.0f - rate);
  for (int64_t i = 0; i < n; ++i) dx[i] = mask[i] ? dy[i] * scale : 0.0f;
}

}  // namespace lockstep::kernels::cpu
