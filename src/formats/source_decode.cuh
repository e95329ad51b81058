#pragma once
// Device decoding of quantized-source elements (math: tensor/source_dequant.h), shared by the
// decode kernels (source_dequant.cu) and the fused source -> NVFP4 kernels (source_nvfp4.cu),
// so that both compute every element with the same instructions.
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace moeq {

__device__ __forceinline__ float fp8_e4m3_to_float(uint8_t b) {
  __nv_fp8_e4m3 v;
  v.__x = b;
  return static_cast<float>(v);
}

__device__ __forceinline__ uint16_t bf16_bits(float f) {
  const __nv_bfloat16 h = __float2bfloat16_rn(f);
  return *reinterpret_cast<const uint16_t*>(&h);
}

// f rounded to bf16 (nearest even), as a float: what a bf16 tensor holds and its readers load.
__device__ __forceinline__ float bf16_round(float f) { return __uint_as_float(static_cast<uint32_t>(bf16_bits(f)) << 16); }

// One FP8-block element: bf16(fp32 product of the code's value and its block's scale_inv).
__device__ __forceinline__ uint16_t fp8_block_bits(uint8_t q, float s) { return bf16_bits(__fmul_rn(fp8_e4m3_to_float(q), s)); }

// scale_inv[i] as a float (F32, or BF16 when bf16).
__device__ __forceinline__ float load_block_scale(const void* scale, bool bf16, int64_t i) {
  return bf16 ? __bfloat162float(reinterpret_cast<const __nv_bfloat16*>(scale)[i]) : reinterpret_cast<const float*>(scale)[i];
}

// 2^(e - 127) for an E8M0 byte e in 0..254 (e = 0: the fp32 subnormal 2^-127); 0xFF is NaN
// in E8M0 and the callers flag it before using the value.
__device__ __forceinline__ float e8m0_value(uint32_t e) {
  return e == 0 ? __uint_as_float(0x00400000u) : __uint_as_float(e << 23);
}

// The value of a 4-bit E2M1 code (bit 3 the sign): 0, 0.5, 1, 1.5, 2, 3, 4, 6 (code 8 is -0).
__device__ __forceinline__ float e2m1_code_value(uint32_t c) {
  const uint32_t m = c & 7u;
  const uint32_t mag = m < 2u ? m * 0x3F000000u                            // 0, 0.5
                              : ((126u + (m >> 1)) << 23) | ((m & 1u) << 22);  // 1, 1.5, 2, 3, 4, 6
  return __uint_as_float(mag | ((c & 8u) << 28));
}

// One MXFP4 element as bf16 bits: e2m1 * 2^(e - 127). The product has at most two significant
// bits, so it is exact in fp32 (subnormals included: the smallest, 0.5 * 2^-127, is 2^-128) or
// overflows to Inf, as ldexpf does; and exact in bf16 again.
__device__ __forceinline__ uint16_t mxfp4_bits(uint32_t code, float scale) {
  return bf16_bits(__fmul_rn(e2m1_code_value(code), scale));
}

}  // namespace moeq
