#pragma once
// x / s correctly rounded without a division per element, for the CUDA kernels of the formats
// whose references divide by a per-tensor or per-group scale (FP8, INT4/INT8). With
// r = RN(1/s) computed once per scale:
//   y = RN(x * r),  q = RN(y + r * RN(x - s * y))     (two FMAs; the residual is exact)
// (Markstein's correction step), with q's sign taken from x (a zero quotient's). Used only
// where checked: x a bf16 or f16 value with 2^-60 <= |x| <= 2^60 or x = +-0, s a bf16 / f16
// value or s = a / 448 for a bf16 / f16 amax a, s in [2^-60, 2^60]. tests/formats/
// test_fast_div.cpp compares q with x / s for every such x and s, bitwise (2^31 pairs per
// family, a hidden test: `moeq_tests "[.fast_div]"`), and a sample of them always; outside
// the range the kernels divide.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "formats/kernel_types.h"

namespace moeq {

// Whether a scale s allows fast_div (r = RN(1/s) then normal too).
MOEQ_HD inline bool fast_div_scale_ok(float s) { return s >= 0x1p-60f && s <= 0x1p60f; }

// Whether x is in fast_div's checked range: 2^-60 <= |x| <= 2^60, or x = +-0.
MOEQ_HD inline bool fast_div_applies(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  u &= 0x7FFFFFFFu;
  return u - 0x21800000u <= 0x3C000000u || u == 0;
}

// RN(x / s) for fast_div_applies(x), given r = RN(1/s) and fast_div_scale_ok(s).
MOEQ_HD inline float fast_quotient(float x, float s, float r) {
  const float y = x * r;
  return std::copysign(std::fma(r, std::fma(-s, y, x), y), x);  // the sign: a zero's
}

// RN(x / s) given r = RN(1/s) and fast_div_scale_ok(s); divides when x is outside the range.
// (Kernels compute fast_quotient for a whole unit and redo it with the division when one
// element is outside, so the common path has no branch per element.)
MOEQ_HD inline float fast_div(float x, float s, float r) {
  return fast_div_applies(x) ? fast_quotient(x, s, r) : x / s;
}

}  // namespace moeq
