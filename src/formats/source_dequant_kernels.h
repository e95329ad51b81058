#pragma once
// Raw launchers (no ATen) decoding quantized source checkpoints on a CUDA device; the math
// is io/source_dequant.h's, byte for byte (fp32 product, then round-to-nearest-even to bf16).
#include <cstdint>

namespace moeq {

// out[e, r, c] = bf16(float(fp8 e4m3 w[e, r, c]) * scale[e, r / bm, c / bn]); scale is F32
// (scale_bf16 = false) or BF16 [E, ceil(R/bm), ceil(C/bn)]. All contiguous.
void fp8_block_dequant_cuda(const uint8_t* w, const void* scale, bool scale_bf16, int64_t E, int64_t R, int64_t C,
                            int64_t bm, int64_t bn, uint16_t* out_bf16, void* stream);

// out[r, 32 g + 2 j + h] = bf16(e2m1(nibble h of blocks[r, g, j]) * 2^(scales[r, g] - 127)),
// low nibble first; rows R, groups G. *bad is set to 1 when a scale is 0xFF (E8M0 NaN).
void mxfp4_dequant_cuda(const uint8_t* blocks, const uint8_t* scales, int64_t R, int64_t G, uint16_t* out_bf16,
                        int* bad, void* stream);

}  // namespace moeq
