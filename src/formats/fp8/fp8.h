#pragma once
// FP8 E4M3 weights with a per-tensor or per-output-channel fp32 scale:
//   weight_scale = amax' / 448, weight = fp8_e4m3fn(clamp(w / weight_scale, -448, 448))
// where amax' is ModelOpt's exported amax: 448 when amax is 0 (scale 1), else amax clamped
// to [FLT_MIN, FLT_MAX]. The +-448 clamp only acts when a given amax is below the weights'.
// (ModelOpt's FP8 math; the cast rounds to nearest even like torch's .to(float8_e4m3fn)).
// Parts: weight  F8_E4M3 [.., out, in]; weight_scale F32 [] / [E] (tensor) or [.., out, 1] (channel).
#include <cstdint>

#include "formats/kernel_types.h"

namespace moeq {
// weight_scale from a per-tensor amax (see above): a true division, as ATen's division by a
// device tensor computes it (scale_from_amax in fp8.cpp).
MOEQ_HD inline float fp8_scale_from_amax(float amax) {
  const float a = amax == 0.f ? 448.f : (amax < 1.17549435e-38f ? 1.17549435e-38f : (amax > 3.40282347e38f ? 3.40282347e38f : amax));
  return a / 448.f;
}
// Per-tensor scales: the per-expert amax (computed when given_amax is null) and the quantize
// pass (amax_quantize.cuh). scratch: 2E + 1 zeroed device ints, scratch[2E] set on NaN/Inf.
// Writes scales (E floats) and q (numel bytes).
inline bool fp8_tensor_kernel_applies(const WeightBatch& w) {
  return (reinterpret_cast<uintptr_t>(w.data) & 15u) == 0 && (w.rows * w.cols) % 16 == 0 && w.rows * w.cols > 0;
}
void fp8_quantize_tensor_cuda(const WeightBatch& w, const float* given_amax, int* scratch, float* scales, uint8_t* q,
                              void* stream);
// scales: E (tensor) or E*rows (channel) floats, already computed. q: numel bytes.
// Sets *bad (device int) on NaN/Inf (needed when the amax was given, not computed).
void fp8_quantize_cuda(const WeightBatch& w, bool per_channel, const float* scales, uint8_t* q, int* bad, void* stream);
// Per-expert (channel=false) or per-row amax into `amax`; sets *bad (device int) on NaN/Inf.
void absmax_cuda(const WeightBatch& w, bool per_row, float* amax, int* bad, void* stream);
}  // namespace moeq
