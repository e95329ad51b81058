#pragma once
// What a format is, as data. Every question the rest of moeq asks about a format (its element
// encoding and scales, how its activations are quantized, which calibrators fit it, its error
// floor) is answered here by the format itself (QuantFormat::traits()), so code outside
// src/formats/ asks the traits instead of comparing format names. Consumers' vocabularies
// (ModelOpt quant_algo, compressed-tensors schemes, bitsandbytes) are derived from these facts
// by the code that speaks them.
#include <cstdint>

namespace moeq {

// What one weight element's code is.
enum class ElementKind {
  Float,     // a minifloat (exponent_bits / mantissa_bits: E2M1, E4M3) times its scales
  Int,       // a signed integer, scaled per group (optionally with a zero point)
  Codebook,  // an index into a table of levels, scaled by the block's absmax (bitsandbytes nf4/fp4)
};

// How moeq quantizes a linear's input for this format (a rule's input_quant).
enum class InputQuant {
  None,           // not at all: the format is weight-only in moeq
  DynamicBlocks,  // per-block scales computed at run time under one static per-tensor scale (W4A4)
  StaticTensor,   // one static per-tensor scale (W8A8)
};

// How the weight block scales are stored.
enum class BlockScale {
  None,      // no block scales (per-tensor or per-channel only)
  E4M3,      // FP8 E4M3 values (times a per-tensor scale)
  E8M0,      // a shared power-of-two exponent (OCP MX)
  Float,     // the weight dtype or f32, one per group / block
};

// The weight-scale search moeq's mse calibrator runs for the format (src/quant/mse_search.h).
enum class MseSearch {
  None,           // not covered: calibrator mse is refused
  BlockScales,    // per-block scales (and with fp8_scale_sweep, among the E4M3 values)
  TensorOrChannel,  // the per-tensor or per-channel amax, as the granularity says
};

struct FormatTraits {
  ElementKind kind = ElementKind::Float;
  int bits = 0;  // bits of one element's code
  int exponent_bits = 0, mantissa_bits = 0;  // Float kinds: E2M1 is 2, 1; E4M3 is 4, 3
  // Elements per block scale: the fixed size (block_fixed), or the default of FormatParams'
  // block_size; 0 where the format has no blocks.
  int64_t block = 0;
  bool block_fixed = false;
  BlockScale block_scale = BlockScale::None;
  // A per-tensor (global) scale over the blocks, for every granularity (nvfp4's weight_scale_2);
  // see QuantFormat::has_tensor_scale for the param-dependent answer.
  bool global_scale = false;
  // FormatParams::granularity ("tensor" or "channel") picks the scale's extent (fp8).
  bool granularity_param = false;

  // Activations: how, the divisor of ModelOpt's input_scale = amax / divisor, and the label
  // of a model whose linears quantize weights and inputs so ("W4A4").
  InputQuant input_quant = InputQuant::None;
  float input_amax_divisor = 0.f;
  const char* activation_label = "";

  // Calibrators: GPTQ's grid covers the format (ints: symmetric only); the mse search it takes.
  bool gptq = false;
  MseSearch mse = MseSearch::None;

  // The source's E2M1 codes of an MXFP4 checkpoint carry over exactly where the scales allow
  // (src/quant/mxfp4_to_nvfp4.h).
  bool keeps_mxfp4_codes = false;

  // Below this SQNR (dB) a decoded weight does not come from its source: moeq verify's floor,
  // and the contract test's bound on dequantize(quantize(w)) of Gaussian weights.
  double sqnr_floor_db = 10.0;
};

// fp8_scale_sweep (ModelOpt) picks block scales among the FP8 E4M3 values: formats whose mse
// search is over E4M3 block scales.
inline bool takes_fp8_scale_sweep(const FormatTraits& t) {
  return t.mse == MseSearch::BlockScales && t.block_scale == BlockScale::E4M3;
}

}  // namespace moeq
