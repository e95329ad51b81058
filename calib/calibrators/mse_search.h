#pragma once
// MSE-optimal weight scales: NVIDIA Model Optimizer's `mse` weight calibration (0.47,
// modelopt/torch/quantization/calib/mse.py) on moeq's formats, on whole expert stacks, on
// the CPU or the GPU (docs/weight_calibration.md).
//
// Every search tries a list of candidates, measures each candidate's squared weight error
// (sum over the tensor, row or block of (dequantized - w)^2, in the export's own
// arithmetic, accumulated in double), and keeps the FIRST candidate with the least error
// (torch.argmin's tie rule, as ModelOpt):
//   FP8 tensor:  amax x linspace(start, stop, steps) per expert of the stack; a gate/up pair
//                searches one amax for both over their joint error (they share one scale).
//   FP8 channel: the same per row.
//   NVFP4:       per 16-element block, with the global scale fixed at the (shared) max amax:
//                fp8_scale_sweep: the block's FP8 E4M3 scale among its 126 positive finite
//                values; otherwise block amax x the multipliers, each turned into a scale
//                byte the way ModelOpt exports a static block amax.
#include <ATen/ATen.h>

#include <vector>

#include "recipe/recipe.h"

namespace moeq {

// The multipliers: torch.linspace(start, stop, num_steps) in float32, computed on the CPU.
at::Tensor mse_multipliers(const WeightCalibrator& c);

// FP8 per-tensor scales: the amax ([E] float, on the stacks' device) whose scale
// (amax / 448) gives the least squared error of all `stacks` together (each [E, out, in] or
// [out, in] with E = 1). initial: the max amax [E] (a gate/up pair: the larger of the two).
at::Tensor fp8_tensor_mse_amax(const std::vector<at::Tensor>& stacks, const at::Tensor& initial, const WeightCalibrator& c);

// FP8 per-channel scales: one amax per row, [E, out] ([out] for a 2D weight).
at::Tensor fp8_channel_mse_amax(const at::Tensor& stack, const WeightCalibrator& c);

// NVFP4 block scales: FP8 E4M3 bytes (uint8 [E, out, in/16], [out, in/16] for 2D) with the
// global scale of amax ([] or [E]). An expert whose amax is 0 keeps the max path's scales
// (every candidate is exact there). The CPU loop and the CUDA kernel share one per-block
// function (formats/nvfp4_mse.h); torch_ops: the same search in ATen ops instead (the
// tests' second implementation), which gives the same bytes.
at::Tensor nvfp4_mse_block_scales(const at::Tensor& stack, const at::Tensor& amax, const WeightCalibrator& c,
                                  bool torch_ops = false);

// Squared error of every NVFP4 block of `stack` under the given global amax and scale
// bytes, [E, out, in/16] double: what the search minimizes (tests, reports).
at::Tensor nvfp4_block_errors(const at::Tensor& stack, const at::Tensor& amax, const at::Tensor& block_scales);

}  // namespace moeq
