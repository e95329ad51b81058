#pragma once
// compare --calib: the forward's input transforms for a plan whose rules quantize activations
// (input_quant). Every input-quantized linear gets its input fake-quantized as the deployed
// kernel does (app/compare/act_fake_quant.h) with the input scale the export carries
// (calib/calibrators/input_scales.h: from calib.h5, ModelOpt's math, gate and up sharing the larger amax):
// dense linears per site, routed experts per expert (each row with its expert's scale).
#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "calib/calib_file.h"
#include "recipe/recipe.h"

namespace moeq {

struct InputTransforms {
  std::function<at::Tensor(const Site&, const at::Tensor&)> linear;
  std::function<at::Tensor(int64_t, const std::string&, const at::Tensor&, const at::Tensor&)> experts;
  int64_t sites = 0;              // input-quantized sites
  std::set<std::string> formats;  // their formats
};

// Empty (no functions set, sites 0) when the plan quantizes no input. Throws moeq::Error (naming
// the calibration file and the site) when a site has no statistics or no usable scale, and when
// an expert's gate and up disagree on input quantization (their input is one tensor).
InputTransforms plan_input_transforms(const Plan& plan, const CalibData& calib, const std::string& calib_path);

// The same from explicit scales (compare --exports: the scales an export carries). Each entry is
// one input-quantized linear of the forward's site map with its format and its static input scale
// (act_fake_quant.h's convention); num_experts: the routed experts per MoE layer. `where` starts
// every error (the gate/up rule above: gate and up must agree on the format; their scales must be
// equal, callers pick one first).
struct InputSite {
  const Site* site = nullptr;
  std::string format;
  float scale = 0;
};
InputTransforms input_transforms_of(const std::vector<InputSite>& sites, const std::map<int64_t, int64_t>& num_experts,
                                    const std::string& where);

// "W4A4", "W8A8", or both joined by " + ", for the formats of input-quantized sites.
std::string activation_label(const std::set<std::string>& formats);

}  // namespace moeq
