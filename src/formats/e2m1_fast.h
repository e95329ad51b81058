#pragma once
// E2M1 codes without a per-element division, for the CUDA kernels; byte-identical to
// e2m1.h's reference arithmetic (tests/formats/test_e2m1_fast.cpp checks every bf16 input
// against it on many divisors, and the values next to every boundary).
//
// NVFP4 codes v = RN(x / d) (d > 0: the block's rounded scale times the global scale). The
// code depends on v only through e2m1_index's 7 comparisons with fixed thresholds t and the
// sign test v < 0, and RN is monotone, so each comparison is one on the exact quotient:
//   RN(q) <= t  <=>  q <= t + ulp(t)/2     (t = 0.25, 1.25, 2.5, 5: even mantissas, the tie
//                                           at the midpoint rounds down to t)
//   RN(q) <  t  <=>  q <  t - ulp(t-)/2    (t = 0.75, 1.75, 3.5: the float below t is odd,
//                                           the tie rounds up to t)
//   RN(q) <  0  <=>  q < -2^-150           (-2^-150 itself rounds to -0)
// With q = |x| / d these become |x| <= B * d. The midpoints B have 25 significant bits and d
// 24, so B * d is exact in double; a float |x| is <= a real R exactly when |x| <= RD(R), and
// < R exactly when |x| < RU(R) (RD/RU: R rounded down/up to float), so each comparison is one
// float comparison with a bound computed once per block. d must be finite and positive (a
// d of 0, possible with a subnormal global scale, keeps the division).
//
// MXFP4 codes v = x * 2^-e, an exact product, so e2m1_index_exact rounds v itself with one
// FMA: v * k + 2^23 rounds v * k to an integer (ties to even), k = 2, 1, 1/2 on [0, 2),
// [2, 4), [4, inf), which are E2M1's spacings 0.5, 1, 2.
#include <cmath>
#include <cstdint>

#include "formats/e2m1.h"

namespace moeq {

// A real (exact in double) rounded down / up to float.
MOEQ_HD inline float double_to_float_down(double r) {
#ifdef __CUDA_ARCH__
  return __double2float_rd(r);
#else
  float f = static_cast<float>(r);
  if (static_cast<double>(f) > r) f = std::nextafter(f, -INFINITY);
  return f;
#endif
}
MOEQ_HD inline float double_to_float_up(double r) {
#ifdef __CUDA_ARCH__
  return __double2float_ru(r);
#else
  float f = static_cast<float>(r);
  if (static_cast<double>(f) < r) f = std::nextafter(f, INFINITY);
  return f;
#endif
}

// The largest float below f (f > 0; +inf gives FLT_MAX).
MOEQ_HD inline float float_below(float f) { return bits_float(float_bits(f) - 1); }

// Bounds of one divisor d: e2m1_index(|x / d|) is the number of i with |x| > le[i] (le
// ascending); the code's sign bit is x < neg.
struct E2m1Bounds {
  float le[7];
  float neg;
};

// false (b untouched) when d is not finite and positive.
MOEQ_HD inline bool e2m1_bounds(float d, E2m1Bounds* b) {
  if (!(d > 0.f && d <= 3.40282347e38f)) return false;
  const double dd = d;
  b->le[0] = double_to_float_down((0.25 + 0x1p-26) * dd);              // RN(q) <= 0.25
  b->le[1] = float_below(double_to_float_up((0.75 - 0x1p-25) * dd));   // RN(q) <  0.75
  b->le[2] = double_to_float_down((1.25 + 0x1p-24) * dd);              // RN(q) <= 1.25
  b->le[3] = float_below(double_to_float_up((1.75 - 0x1p-24) * dd));   // RN(q) <  1.75
  b->le[4] = double_to_float_down((2.5 + 0x1p-23) * dd);               // RN(q) <= 2.5
  b->le[5] = float_below(double_to_float_up((3.5 - 0x1p-23) * dd));    // RN(q) <  3.5
  b->le[6] = double_to_float_down((5.0 + 0x1p-22) * dd);               // RN(q) <= 5
  b->neg = -double_to_float_down(dd * 0x1p-150);                       // RN(x / d) < 0
  return true;
}

// e2m1_code(x / d, x / d < 0) from d's bounds: a 3-step search over the ascending bounds.
// Any x: NaN gets 7 (as the division gives; `!(a <= t)` is true for NaN), +-Inf 7 / 15.
MOEQ_HD inline uint8_t e2m1_code_bounded(float x, const E2m1Bounds& b) {
  const float a = std::fabs(x);
  const bool c4 = !(a <= b.le[3]);
  const bool c2 = !(a <= (c4 ? b.le[5] : b.le[1]));
  const bool c1 = !(a <= (c4 ? (c2 ? b.le[6] : b.le[4]) : (c2 ? b.le[2] : b.le[0])));
  return static_cast<uint8_t>((x < b.neg ? 8 : 0) | (c4 ? 4 : 0) | (c2 ? 2 : 0) | (c1 ? 1 : 0));
}

// e2m1_index(v) for v >= 0 or NaN (7), with one FMA instead of 7 comparisons.
MOEQ_HD inline uint8_t e2m1_index_exact(float v) {
  const float k = v < 2.f ? 2.f : (v < 4.f ? 1.f : 0.5f);
  const uint32_t base = v < 2.f ? 0x4B000000u : (v < 4.f ? 0x4B000000u - 2u : 0x4B000000u - 4u);
#ifdef __CUDA_ARCH__
  const float r = __fmaf_rn(v, k, 8388608.f);
#else
  const float r = std::fma(v, k, 8388608.f);
#endif
  const uint32_t i = float_bits(r) - base;  // NaN and huge v give more than 7
  return static_cast<uint8_t>(i < 7u ? i : 7u);
}

}  // namespace moeq
