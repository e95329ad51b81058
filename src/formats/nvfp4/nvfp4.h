#pragma once
// NVFP4 as NVIDIA Model Optimizer computes it (modelopt 0.47.0, NVFP4QTensor.quantize with
// block 16, on CPU), every fp32 operation in its order:
//   weight_scale_2 = amax / 2688                   (6 * 448; a true division, as on CPU)
//   s   = block_amax / (6 * weight_scale_2);  s == 0 -> 1;  clamp [2^-9, 448];  fp8 e4m3 (RNE)
//   v   = x / (float(fp8 s) * weight_scale_2)     (the ROUNDED scale)
//   code = (v < 0) << 3 | E2M1 index of |v|      (so -0.0 gets code 0, a tiny negative 8)
// amax: the weight's own (per expert of a stack), or given. Deviation: where ModelOpt would
// get weight_scale_2 == 0 (all-zero weight, or amax < 2688 * 2^-150) it divides 0 by 0 and
// writes NaN scales; moeq stores weight_scale_2 = 1 instead (as FP8 does for a zero tensor):
// every block then gets scale 1 and codes 0, and dequantizes to exact zeros.
// (ModelOpt on a CUDA device gets amax * (1/2688): ATen on CUDA multiplies by the reciprocal
// of a CPU-scalar divisor. Seen on an H200: 23% of random amax values then differ from the
// CPU result, matched here, by one ulp of weight_scale_2.)
// Parts: weight U8 [.., out, in/2]; weight_scale F8_E4M3 [.., out, in/16];
//        weight_scale_2 F32 [] (2D) or [E] (stack).
#include <cstdint>

#include "formats/e2m1.h"
#include "formats/e2m1_fast.h"
#include "formats/kernel_types.h"

namespace moeq {

constexpr int64_t kNvfp4Block = 16;
constexpr const char* kNvfp4Name = "nvfp4";  // for code that is about NVFP4 itself (its MSE search, bench source)

MOEQ_HD inline float nvfp4_global_scale(float amax) {
  const float s2 = amax / 2688.f;
  return s2 == 0.f ? 1.f : s2;
}

// fp8 e4m3fn bits of s in [2^-9, 448], round to nearest even (what torch's cast does),
// with integer ops only so the host and the device agree bit for bit.
MOEQ_HD inline uint8_t fp8_e4m3_encode_scale(float s) {
  const uint32_t u = float_bits(s);
  const uint32_t e = u >> 23;  // biased fp32 exponent (s > 0)
  if (e >= 121) {              // fp8 normal: keep 3 mantissa bits; a carry bumps the exponent
    uint32_t r = u >> 20;
    const uint32_t rem = u & 0xFFFFFu;
    r += (rem > 0x80000u || (rem == 0x80000u && (r & 1u))) ? 1u : 0u;
    return static_cast<uint8_t>(r - (120u << 3));
  }
  // fp8 subnormal: the count of 2^-9 units (8 becomes the smallest normal, 2^-6).
  const uint32_t m = (u & 0x7FFFFFu) | 0x800000u;
  const uint32_t k = 141u - e;  // 21..23 for s in [2^-9, 2^-6)
  uint32_t q = m >> k;
  const uint32_t rem = m & ((1u << k) - 1u), half = 1u << (k - 1u);
  q += (rem > half || (rem == half && (q & 1u))) ? 1u : 0u;
  return static_cast<uint8_t>(q);
}

// Value of a non-negative, finite fp8 e4m3fn code (all block scales are).
MOEQ_HD inline float fp8_e4m3_decode(uint8_t c) {
  const uint32_t e = (c >> 3) & 0xFu, m = c & 7u;
  return e == 0 ? static_cast<float>(m) * 0.001953125f  // m * 2^-9
                : bits_float(((e + 120u) << 23) | (m << 20));
}

// The block's fp8 scale byte from its abs-max.
MOEQ_HD inline uint8_t nvfp4_scale_code(float bmax, float global_scale) {
  float s = bmax / (6.f * global_scale);
  if (s == 0.f) s = 1.f;
  s = s < 0.001953125f ? 0.001953125f : (s > 448.f ? 448.f : s);
  return fp8_e4m3_encode_scale(s);
}

// One block of 16 values: its fp8 scale byte and 8 packed bytes (the reference arithmetic).
MOEQ_HD inline void nvfp4_block(const float* x, float global_scale, uint8_t* scale_out, uint8_t* packed) {
  float bmax = 0.f;
  for (int i = 0; i < 16; ++i) {
    const float a = x[i] < 0.f ? -x[i] : x[i];
    bmax = a > bmax ? a : bmax;
  }
  const uint8_t sc = nvfp4_scale_code(bmax, global_scale);
  *scale_out = sc;
  const float denom = fp8_e4m3_decode(sc) * global_scale;
  for (int i = 0; i < 16; i += 2) {
    const float v0 = x[i] / denom, v1 = x[i + 1] / denom;
    packed[i / 2] = e2m1_pack(e2m1_code(v0, v0 < 0.f), e2m1_code(v1, v1 < 0.f));
  }
}

// The 16 codes of nvfp4_block for the divisor denom, element i at bits 4i of the two words
// (= the packed bytes, little-endian), without a per-element division (e2m1_fast.h).
MOEQ_HD inline void nvfp4_codes_fast(const float* x, float denom, uint32_t* words) {
  E2m1Bounds b;
  words[0] = words[1] = 0;
  if (e2m1_bounds(denom, &b)) {
    for (int i = 0; i < 16; ++i) words[i / 8] |= static_cast<uint32_t>(e2m1_code_bounded(x[i], b)) << (4 * (i % 8));
  } else {  // denom 0 (a subnormal global scale): the division's Inf/NaN quotients
    for (int i = 0; i < 16; ++i) {
      const float v = x[i] / denom;
      words[i / 8] |= static_cast<uint32_t>(e2m1_code(v, v < 0.f)) << (4 * (i % 8));
    }
  }
}

// CUDA: the stack's quantization, launched on `stream`. given_amax: E floats on the device,
// or null to use each expert's own abs-max (computed by the abs-max pass first).
// scratch: fused_scratch_ints(E) = 2E + 1 zeroed device ints; scratch[2E] is set when an
// element is NaN or Inf. Writes q (numel/2 bytes), scales (numel/16), global_scale (E floats).
void nvfp4_quantize_cuda(const WeightBatch& w, const float* given_amax, int* scratch, uint8_t* q, uint8_t* scales,
                         float* global_scale, void* stream);

}  // namespace moeq
