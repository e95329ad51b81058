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
// scales: E (tensor) or E*rows (channel) floats, already computed. q: numel bytes.
// Sets *bad (device int) on NaN/Inf (needed when the amax was given, not computed).
void fp8_quantize_cuda(const WeightBatch& w, bool per_channel, const float* scales, uint8_t* q, int* bad, void* stream);
// Per-expert (channel=false) or per-row amax into `amax`; sets *bad (device int) on NaN/Inf.
void absmax_cuda(const WeightBatch& w, bool per_row, float* amax, int* bad, void* stream);
}  // namespace moeq
