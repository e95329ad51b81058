#pragma once
// FP8 E4M3 weights with a per-tensor or per-output-channel fp32 scale:
//   weight_scale = amax / 448, weight = fp8_e4m3fn(clamp(w / weight_scale, -448, 448))
// (ModelOpt's FP8 math; the cast rounds to nearest even like torch's .to(float8_e4m3fn)).
// Parts: weight  F8_E4M3 [.., out, in]; weight_scale F32 [] / [E] (tensor) or [.., out, 1] (channel).
#include <cstdint>

#include "formats/kernel_types.h"

namespace moeq {
// scales: E (tensor) or E*rows (channel) floats, already computed. q: numel bytes.
void fp8_quantize_cuda(const WeightBatch& w, bool per_channel, const float* scales, uint8_t* q, void* stream);
// Per-expert (channel=false) or per-row amax into `amax`; sets *bad (device int) on NaN/Inf.
void absmax_cuda(const WeightBatch& w, bool per_row, float* amax, int* bad, void* stream);
}  // namespace moeq
