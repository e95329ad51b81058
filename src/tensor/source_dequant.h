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
#include <vector>

namespace moeq {

// `what` names the tensor in errors. Inputs may be strided views; the output is contiguous.
at::Tensor fp8_block_dequant(const at::Tensor& w, const at::Tensor& scale_inv, int64_t bm, int64_t bn,
                             const std::string& what);
at::Tensor mxfp4_dequant(const at::Tensor& blocks, const at::Tensor& scales, const std::string& what);

// The checks the decoders make (dtypes, the scales' shape, one device), throwing moeq::Error
// naming `what`; they return the dimensions seen as a stack.
struct Fp8BlockShape {
  int64_t E, R, C;  // w = E matrices of [R, C] (E = product of the leading dimensions)
};
Fp8BlockShape check_fp8_block(const at::Tensor& w, const at::Tensor& scale_inv, int64_t bm, int64_t bn,
                              const std::string& what);
struct Mxfp4Shape {
  int64_t R = 0, G = 0;          // rows (over all leading dimensions), 32-element groups a row
  std::vector<int64_t> decoded;  // the decoded tensor's shape [.., R, 32 G]
};
Mxfp4Shape check_mxfp4(const at::Tensor& blocks, const at::Tensor& scales, const std::string& what);

}  // namespace moeq
