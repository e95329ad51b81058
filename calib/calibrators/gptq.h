#pragma once
// GPTQ (Frantar et al. 2022, arXiv:2210.17323) on expert stacks: blockwise error feedback
// through the inverse Hessian, with the format's scales fixed beforehand from the weights
// (as llm-compressor 0.14 does: its observer computes the scales, then GPTQ quantizes every
// column on that grid; ModelOpt likewise fixes NVFP4 block scales first). Every step follows
// llm-compressor's quantize_weight (modifiers/gptq/gptq_quantize.py), batched over experts:
//   act_order: columns permuted by descending diag(H) (each keeps its own group's scale,
//              llm-compressor's actorder "weight"), restored at the end
//   dead input channels (diag(H) == 0): diag set to 1, the weight's column zeroed
//   damping: H += damp * mean(diag(H)) * I; Hinv = upper Cholesky factor of H^-1; an expert
//            whose H is not positive definite gets the identity (plain rounding) and is flagged
//   per block of block_size columns, per column i: q = quantize(w_i) on the fixed grid,
//            err = (w_i - q) / Hinv[i,i], the block's later columns -= err * Hinv[i, i:];
//            after the block, later columns -= Err_block @ Hinv[block, later]
// In float32 ATen ops on the stack's device. Oracle: tests/python/make_gptq_reference.py
// (llm-compressor's own function on the CPU), tests/quant/test_gptq.cpp.
#include <ATen/ATen.h>

#include <cstdint>

namespace moeq {

struct GptqOptions {
  int64_t block_size = 128;
  double damp = 0.01;
  bool act_order = false;
};

// The grid a column is quantized on: E2M1 values (NVFP4, MXFP4 elements) or integers in
// [qmin, qmax] (INT4/INT8 symmetric), times a per-element effective scale.
enum class GptqGrid { E2M1, Int };

struct GptqResult {
  at::Tensor q;         // [E, out, in] float32: the quantized weights (grid values x scale)
  at::Tensor identity;  // [E] bool: H was not positive definite after damping (plain rounding)
};

// w [E, out, in] (any float dtype), h [E, in, in] float32 (2/n X^T X), scale [E, out, in]
// float32: the effective scale of every element (NVFP4: fp8 block scale x global scale).
// For Int, qmin/qmax bound the codes. Throws moeq::Error on mismatched shapes.
GptqResult gptq_quantize(const at::Tensor& w, const at::Tensor& h, const at::Tensor& scale, GptqGrid grid,
                         const GptqOptions& opt, double qmin = 0, double qmax = 0);

// gptq_quantize over consecutive chunks of experts whose Hessians take at most chunk_bytes
// (float32; at least one expert a chunk), each chunk's Hessians moved to w's device in turn, so h
// may stay on the host. gptq_quantize holds about six copies of its Hessians at once (damped,
// Cholesky factor, inverse, its factor, act_order's gathers); chunking bounds that. Every op is
// per matrix, so the result equals one gptq_quantize call (tests/quant/test_gptq.cpp).
GptqResult gptq_quantize_chunked(const at::Tensor& w, const at::Tensor& h, const at::Tensor& scale, GptqGrid grid,
                                 const GptqOptions& opt, int64_t chunk_bytes, double qmin = 0, double qmax = 0);

// The grid value of v / scale times scale (one column or any shape): what gptq_quantize
// puts on the grid, and what the formats' codes dequantize to.
at::Tensor gptq_round(const at::Tensor& v, const at::Tensor& scale, GptqGrid grid, double qmin, double qmax);

}  // namespace moeq
