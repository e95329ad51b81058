#pragma once
// The NVFP4 block-scale MSE search of one 16-element block (src/quant/mse_search.h), written
// once for the host and the CUDA kernel (nvfp4_mse.cu) so both pick the same byte: every
// operation is a separately rounded fp32 op (no FMA contraction on the device) and the
// error of each candidate is summed in double in element order.
#include <cstdint>

#include "formats/e2m1.h"
#include "formats/nvfp4/nvfp4.h"

namespace moeq {

constexpr int kNvfp4SweepCandidates = 126;  // fp8 e4m3fn bytes 1..126: every positive finite value

MOEQ_HD inline float mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
MOEQ_HD inline float sub_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}

// The scale byte ModelOpt's export gives a static block amax (NVFP4QTensor.
// get_weights_scaling_factor_from_quantizer): amax / 6 (0 -> 1), * 448 / (global amax / 6),
// clamped to [2^-9, 448], rounded to e4m3. (global_amax > 0: zero experts are not searched.)
MOEQ_HD inline uint8_t nvfp4_static_amax_byte(float block_amax, float global_amax) {
  float s = block_amax / 6.f;
  if (s == 0.f) s = 1.f;
  float v = mul_rn(s, 448.f) / (global_amax / 6.f);
  v = v < 0.001953125f ? 0.001953125f : (v > 448.f ? 448.f : v);
  return fp8_e4m3_encode_scale(v);
}

// Squared error of the block x[16] quantized with scale denom (fp8 scale x global scale), as
// the export holds it: sum of ((E2M1 value of x / denom) * denom - x)^2, in double, in order.
MOEQ_HD inline double nvfp4_block_sq_error(const float* x, float denom) {
  double err = 0.0;
  for (int i = 0; i < kNvfp4Block; ++i) {
    const float v = x[i] / denom;
    const float m = mul_rn(e2m1_magnitude(e2m1_index(v < 0.f ? -v : v)), denom);
    const float d = sub_rn(v < 0.f ? -m : m, x[i]);
    err += static_cast<double>(mul_rn(d, d));
  }
  return err;
}

// The scale byte of least squared error for the block x[16] (the smallest byte on ties, as
// an argmin over ascending candidates), under the global scale of global_amax. mult: K
// multipliers of the block amax (each turned into a byte by nvfp4_static_amax_byte), or null
// for the sweep over the 126 positive e4m3 values.
// The sweep starts at the max path's byte and walks down and up, stopping where a lower bound
// of the error exceeds the best so far: below, the largest element saturates at 6 x scale
// (error >= (amax - 6 scale)^2); above, elements under a quarter scale round to 0 (error >=
// the sum of their squares, summed in the same order as the error, so the bound is exact).
// The result is the exhaustive search's; the bounds only skip candidates that cannot win.
MOEQ_HD inline uint8_t nvfp4_mse_block_byte(const float* x, float global_amax, const float* mult, int64_t K) {
  float bmax = 0.f;
  for (int i = 0; i < kNvfp4Block; ++i) {
    const float a = x[i] < 0.f ? -x[i] : x[i];
    bmax = a > bmax ? a : bmax;
  }
  const float g = nvfp4_global_scale(global_amax);
  double best = 0.0;
  uint8_t best_byte = 0;
  if (mult) {
    uint8_t prev = 0;
    for (int64_t k = 0; k < K; ++k) {
      const uint8_t byte = nvfp4_static_amax_byte(mul_rn(bmax, mult[k]), global_amax);
      if (byte == prev) continue;  // the candidate before gave this scale: the same error, and the first wins
      prev = byte;
      const double err = nvfp4_block_sq_error(x, mul_rn(fp8_e4m3_decode(byte), g));
      if (best_byte == 0 || err < best) best = err, best_byte = byte;
    }
    return best_byte;
  }
  float s = bmax / (6.f * g);  // the max path's scale (nvfp4_block)
  if (s == 0.f) s = 1.f;
  s = s < 0.001953125f ? 0.001953125f : (s > 448.f ? 448.f : s);
  const int start = fp8_e4m3_encode_scale(s);
  best_byte = static_cast<uint8_t>(start);
  best = nvfp4_block_sq_error(x, mul_rn(fp8_e4m3_decode(best_byte), g));
  for (int k = start - 1; k >= 1; --k) {
    const float denom = mul_rn(fp8_e4m3_decode(static_cast<uint8_t>(k)), g);
    // |6 denom rounded - amax| rounded, squared: at least t^2 (1 - 2^-20) (margins for 3 roundings).
    const double t = static_cast<double>(bmax) - 6.0 * static_cast<double>(denom) * (1.0 + 2.4e-7);
    if (t > 0.0 && t * t * (1.0 - 1e-6) > best) break;
    const double err = nvfp4_block_sq_error(x, denom);
    if (err <= best) best = err, best_byte = static_cast<uint8_t>(k);  // a smaller byte wins a tie
  }
  for (int k = start + 1; k <= kNvfp4SweepCandidates; ++k) {
    const float denom = mul_rn(fp8_e4m3_decode(static_cast<uint8_t>(k)), g);
    // Elements surely below a quarter scale (x / denom <= 0.25 after rounding) quantize to 0.
    const double quarter = 0.25 * static_cast<double>(denom) * (1.0 - 1e-6);
    double lower = 0.0;
    for (int i = 0; i < kNvfp4Block; ++i)
      if ((x[i] < 0.f ? -x[i] : x[i]) <= quarter) lower += static_cast<double>(mul_rn(x[i], x[i]));
    if (lower > best) break;
    const double err = nvfp4_block_sq_error(x, denom);
    if (err < best) best = err, best_byte = static_cast<uint8_t>(k);
  }
  return best_byte;
}

// CUDA: out[b] = nvfp4_mse_block_byte of every block of the stack, with amax[expert] (E
// device floats) and mult (K device floats, or null for the sweep), launched on `stream`.
void nvfp4_mse_search_cuda(const WeightBatch& w, const float* amax, const float* mult, int64_t K, uint8_t* out, void* stream);

}  // namespace moeq
