#pragma once
// Decoding quantized source checkpoints to bf16, on the CPU (at::parallel_for) or a CUDA
// device (src/formats/source_dequant.cu), the same bytes on both:
//  FP8 block (DeepSeek-V3 / Qwen3-FP8): w [.., R, C] F8_E4M3, scale_inv [.., ceil(R/bm),
//    ceil(C/bn)] F32 or BF16; out = bf16_rne(float(w) * float(scale_inv[r / bm, c / bn])), the
//    math of transformers 5.17's Fp8Dequantize (finegrained_fp8.py: fp32 product, then .to(bf16)),
//    extended to partial edge blocks (which that code rejects or mis-sizes; DeepSeek's own
//    weight_dequant masks them).
//  MXFP4 (gpt-oss): blocks [.., R, G, 16] U8, two E2M1 codes per byte, low nibble first;
//    scales [.., R, G] U8 E8M0; out [.., R, 32 G] = bf16(e2m1 * 2^(scale - 127)) (exact), the
//    math of transformers 5.17's convert_moe_packed_tensors (mxfp4.py), before its transpose.
//    A scale byte 0xFF (E8M0 NaN) throws.
#include <ATen/ATen.h>

#include <string>

namespace moeq {

// `what` names the tensor in errors. Inputs may be strided views; the output is contiguous.
at::Tensor fp8_block_dequant(const at::Tensor& w, const at::Tensor& scale_inv, int64_t bm, int64_t bn,
                             const std::string& what);
at::Tensor mxfp4_dequant(const at::Tensor& blocks, const at::Tensor& scales, const std::string& what);

}  // namespace moeq
