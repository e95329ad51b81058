#pragma once
// Activation fake quantization as the deployed W8A8 / W4A4 kernels compute it, for compare's
// output error with --calib. The math runs in float32; the result has x's dtype.
//
// FP8 W8A8, static per-tensor scale (vLLM static_scaled_fp8_quant: scaled_fp8_conversion<true>
// in csrc/quantization/w8a8/fp8/common.cuh, with the inverted scale 1 / input_scale):
//   q  = e4m3(clamp(x * (1 / input_scale), -448, 448))     (round to nearest even)
//   x' = q * input_scale
// NVFP4 W4A4 (vLLM scaled_fp4_quant: cvt_warp_fp16_to_fp4 in csrc/quantization/fp4/nvfp4_utils.cuh;
// vLLM's ModelOpt NVFP4 linear passes gs = 1 / input_scale, input_scale = amax / (6 * 448) from
// calibration). Per block of 16 consecutive inputs along the last dimension, dynamically:
//   sf  = e4m3_satfinite(gs * (block_amax * (1/6)))        (round to nearest even; 0 when the
//                                                           block is 0 or sf underflows E4M3)
//   out = sf != 0 ? 1 / (sf * (1 / gs)) : 0
//   q   = e2m1_satfinite(x * out)                           (round to nearest even, |q| <= 6)
//   x'  = q * sf * input_scale                              (the GEMM's alpha = input_scale * weight_scale_2)
// Deviations: vLLM takes its reciprocals with rcp.approx.ftz (within an ulp of the IEEE
// quotient moeq uses), so an input exactly on a rounding tie may round the other way there.
// ModelOpt's own fake quantization of NVFP4 inputs (modelopt 0.47, triton fp4_fake_quant_block:
// kernels/quantization/common/nvfp4_quant.py) divides by sf * input_scale instead and replaces a
// dequantized block scale below 1e-5 by 1, which zeroes blocks of inputs below ~6e-5 that the
// kernel above keeps.
#include <ATen/ATen.h>

namespace moeq {

// E2M1 value of v (float32), rounded to nearest even on the magnitude, saturating at 6.
at::Tensor e2m1_round(const at::Tensor& v);

// input_scale: float32 on x's device, a scalar [] (one scale for every row) or [rows] for
// x [rows, in] (a scale per row: routed experts, each row with its expert's scale).
// NVFP4 needs the last dimension to be a multiple of 16 (throws moeq::Error otherwise).
at::Tensor fp8_input_fake_quant(const at::Tensor& x, const at::Tensor& input_scale);
at::Tensor nvfp4_input_fake_quant(const at::Tensor& x, const at::Tensor& input_scale);

}  // namespace moeq
