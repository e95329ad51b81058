#pragma once
// bitsandbytes 4-bit formats "nf4" and "fp4" (bitsandbytes' own FP4, not NVFP4), byte for
// byte as bitsandbytes.functional.quantize_4bit(w, blocksize, quant_type,
// compress_statistics=double_quant) writes them with its CUDA kernel (bnb4_kernels.h says
// how that differs from its CPU path, and what moeq reproduces).
//
// Each expert is one flat tensor of n = out * in elements (blocks may cross rows; the last
// block may be short): absmax per block of block_size (32..4096, a power of two; default
// 64), code = the NF4/FP4 entry chosen by bitsandbytes' thresholds for w / absmax, two codes
// per byte with the FIRST element in the HIGH nibble (an odd n pads a zero).
// Double quantization: offset = mean(absmax) (torch's mean on the quantizing device, as
// bitsandbytes computes it), then absmax - offset is quantized to 8 bits in blocks of 256
// with bitsandbytes' signed dynamic map. Dequantize: code value * absmax in fp32 (FP4 takes
// its sign from bit 3, so code 8 gives -0.0, as bitsandbytes' kernels do), then the cast.
//
// Parts (QuantState.as_dict(packed=True) names; a 3D stack adds a leading E dim to each):
//   weight            uint8 [ceil(n/2), 1]
//   absmax            float32 [blocks]          (uint8 [blocks] with double_quant)
//   quant_map         float32 [16]
//   nested_absmax     float32 [ceil(blocks/256)] (double_quant)
//   nested_quant_map  float32 [256]              (double_quant)
//   nested_offset     float32 []                 (double_quant; bitsandbytes keeps it in the JSON)
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "formats/format.h"

namespace moeq {

// bitsandbytes' packed non-tensor quant state, `quant_state.bitsandbytes__nf4|fp4`: the
// json.dumps() text of {quant_type, blocksize, dtype, shape[, nested_blocksize, nested_dtype,
// nested_offset]}, stored as a uint8 tensor of these bytes. shape is one expert's [out, in].
std::string bnb4_quant_state_json(const std::string& quant_type, int64_t block_size, at::ScalarType dtype,
                                  const std::vector<int64_t>& shape, std::optional<float> nested_offset);
// The same for expert `expert` of a quantized nf4/fp4 weight (0 for a 2D weight).
std::string bnb4_quant_state_json(const QuantizedTensor& q, int64_t expert = 0);
// Those bytes as the uint8 [len] tensor bitsandbytes stores.
at::Tensor bnb4_quant_state_tensor(const QuantizedTensor& q, int64_t expert = 0);

// The double-quantization stage alone: absmax float32 [E, blocks] and offset float32 [E]
// (same device) -> {uint8 codes [E, blocks], nested_absmax float32 [E, ceil(blocks/256)]}.
std::pair<at::Tensor, at::Tensor> bnb4_quantize_nested(const at::Tensor& absmax, const at::Tensor& offset);

}  // namespace moeq
