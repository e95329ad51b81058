#pragma once
// Raw launchers (no ATen) of the fused source -> NVFP4 kernels (source_nvfp4.cu): a quantized
// source stack (FP8 block or MXFP4) read once per pass and NVFP4 written, without the bf16
// stack between. Every element is first decoded to bf16 exactly as the decode kernels do
// (source_decode.cuh), then quantized with the NVFP4 kernel's block math (nvfp4/nvfp4.h), so
// the bytes equal nvfp4's quantize of fp8_block_dequant / mxfp4_dequant's output.
#include <cstdint>

namespace moeq {

// An FP8-block stack: w [E, R, C] F8_E4M3 bytes, scale [E, ceil(R/bm), ceil(C/bn)] F32 (or
// BF16: scale_bf16), contiguous. C % 16 == 0 and bn % 16 == 0 (16 columns share a scale).
struct Fp8BlockStack {
  const uint8_t* w = nullptr;
  const void* scale = nullptr;
  bool scale_bf16 = false;
  int64_t E = 0, R = 0, C = 0, bm = 0, bn = 0;
};

// An MXFP4 stack: blocks [E, R, C/32, 16] U8 (two E2M1 codes a byte, low nibble first),
// scales [E, R, C/32] U8 E8M0, contiguous; C % 32 == 0.
struct Mxfp4Stack {
  const uint8_t* blocks = nullptr;
  const uint8_t* scales = nullptr;
  int64_t E = 0, R = 0, C = 0;
};

// Flags the kernels set in *bad (OR-ed bits).
constexpr int kSourceNonFinite = 1;   // a decoded element is NaN or Inf
constexpr int kSourceBadScale = 2;    // an E8M0 scale byte is 0xFF (NaN)

// Per-expert abs-max of the decoded (bf16) stack into amax (E floats, zeroed by the caller).
void source_absmax_cuda(const Fp8BlockStack& s, float* amax, int* bad, void* stream);
void source_absmax_cuda(const Mxfp4Stack& s, float* amax, int* bad, void* stream);

// NVFP4 of the decoded stack under the per-expert amax (E floats on the device: the stack's
// own, from source_absmax_cuda, or one shared with other stacks). Writes q (E*R*C/2 bytes),
// scales (E*R*C/16 E4M3 bytes) and global_scale (E floats), all 8-byte aligned.
void source_nvfp4_cuda(const Fp8BlockStack& s, const float* amax, uint8_t* q, uint8_t* scales, float* global_scale,
                       int* bad, void* stream);
void source_nvfp4_cuda(const Mxfp4Stack& s, const float* amax, uint8_t* q, uint8_t* scales, float* global_scale,
                       int* bad, void* stream);

}  // namespace moeq
