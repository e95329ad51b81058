#pragma once
// FP4 E2M1 elements, shared by NVFP4 and MXFP4; usable on the host and in CUDA kernels
// (plain C++, no ATen, no CUDA types) so both devices run the same arithmetic.
//   magnitudes by index 0..7: 0, 0.5, 1, 1.5, 2, 3, 4, 6; code = sign << 3 | index
//   packing: two codes per byte, the EVEN element in the LOW nibble.
#include <cstdint>
#include <cstring>

#include "formats/kernel_types.h"

namespace moeq {

// Index 0..7 of |a| rounded to the nearest E2M1 magnitude, ties to the even index (the
// index's low bit is the mantissa bit), saturating to 6 above 5. Branch-free. A NaN gets 7,
// as torch.searchsorted gives in ModelOpt (only reachable there through a 0 divisor).
MOEQ_HD inline uint8_t e2m1_index(float a) {
  return static_cast<uint8_t>(7 - (a <= 5.f) - (a < 3.5f) - (a <= 2.5f) - (a < 1.75f) - (a <= 1.25f) -
                              (a < 0.75f) - (a <= 0.25f));
}

// Code of v with the given sign bit (the caller decides what counts as negative: the
// two formats differ on -0.0, see nvfp4.h and mxfp4.h).
MOEQ_HD inline uint8_t e2m1_code(float v, bool negative) {
  return static_cast<uint8_t>((negative ? 8 : 0) | e2m1_index(v < 0.f ? -v : v));
}

MOEQ_HD inline uint8_t e2m1_pack(uint8_t even, uint8_t odd) { return static_cast<uint8_t>(even | (odd << 4)); }

MOEQ_HD inline float e2m1_magnitude(uint8_t index) {
  // 0, 0.5, 1, 1.5, 2, 3, 4, 6 without a table (device code has no host constant arrays).
  const int e = index >> 1, m = index & 1;
  return e == 0 ? 0.5f * m : static_cast<float>((2 + m) << (e - 1)) * 0.5f;
}

MOEQ_HD inline uint32_t float_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

MOEQ_HD inline float bits_float(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

}  // namespace moeq
