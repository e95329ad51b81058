#pragma once
// Quantized source -> NVFP4 without the bf16 stack between (the headline conversion of issue 14:
// DeepSeek-V3 / R1's FP8-block experts to NVFP4; and gpt-oss's MXFP4 experts). On a CUDA device
// one kernel pair (formats/source_nvfp4_kernels.h) reads the source twice (abs-max, then
// quantize) and writes NVFP4; the result is byte for byte format nvfp4's quantize of the
// decoded stack (tensor/source_dequant.h), which is what these functions compute on the CPU,
// and on the device for FP8 blocks whose column count is not a multiple of 16.
// amax: as QuantFormat::quantize's (nullopt: each expert's own abs-max of the decoded weight;
// given: [] for one matrix, [E] for a stack, e.g. the shared amax of a gate/up pair).
// `what` names the tensor in errors.
#include <ATen/ATen.h>

#include <optional>
#include <string>

#include "formats/format.h"

namespace moeq {

// w [R, C] or [E, R, C] F8_E4M3, scale_inv [.., ceil(R/bm), ceil(C/bn)] F32 or BF16.
QuantizedTensor fp8_block_to_nvfp4(const at::Tensor& w, const at::Tensor& scale_inv, int64_t bm, int64_t bn,
                                   const FormatParams& p, const std::optional<at::Tensor>& amax, const std::string& what);
// blocks [R, G, 16] or [E, R, G, 16] U8, scales [.., R, G] U8 E8M0 (decoded: [.., R, 32 G]).
QuantizedTensor mxfp4_source_to_nvfp4(const at::Tensor& blocks, const at::Tensor& scales, const FormatParams& p,
                                      const std::optional<at::Tensor>& amax, const std::string& what);

// The abs-max of the decoded weight, per expert: F32 [] for one matrix, [E] for a stack (on
// the weight's device), without writing the decoded weight on a CUDA device.
at::Tensor fp8_block_decoded_amax(const at::Tensor& w, const at::Tensor& scale_inv, int64_t bm, int64_t bn,
                                  const std::string& what);
at::Tensor mxfp4_decoded_amax(const at::Tensor& blocks, const at::Tensor& scales, const std::string& what);

}  // namespace moeq
