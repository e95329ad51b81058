#pragma once
// Static activation scales of a W4A4 / W8A8 export, from the amax in calib.h5, with
// ModelOpt's export math (modelopt/torch/export/quant_utils.py get_activation_scaling_factor):
//   NVFP4: input_scale = amax / (6 * 448)   (E2M1 max x E4M3 max: the per-tensor scale of the
//          dynamic per-block FP8 scales)
//   FP8:   input_scale = amax / 448
// in float32. The members of a fusion group (model/fusion.h: gate/up of one expert or MLP,
// q/k/v, ...) share the largest of their amax (modelopt preprocess_linear_fusion), so vLLM can
// fuse them.
#include <map>
#include <string>

#include "calib/calib_file.h"
#include "recipe/recipe.h"

namespace moeq {

// Whether moeq quantizes activations for `format` (a static input scale exists: nvfp4, fp8).
bool format_quantizes_inputs(const std::string& format);
// Throws moeq::Error for formats whose activations moeq does not quantize, and for an amax
// that is not finite and > 0.
float input_scale_from_amax(const std::string& format, float amax);
// compressed-tensors' NVFP4 input_global_scale (generate_gparam): (448 * 6) / amax, which
// torch evaluates as (1 / amax) * 2688 in float32; not always 1 / input_scale_from_amax.
float input_global_scale_from_amax(float amax);

struct InputScale {
  float amax = 0;   // the amax the scale comes from (a fusion group's: the largest of its members')
  float scale = 0;  // input_scale_from_amax(format, amax)
};

// Site name -> input scale, for every planned site with input_quant. Throws moeq::Error
// naming the site and the calibration file when the file has no statistics for it.
std::map<std::string, InputScale> input_scales(const Plan& plan, const CalibData& calib, const std::string& calib_path);

}  // namespace moeq
