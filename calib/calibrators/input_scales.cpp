#include "calib/calibrators/input_scales.h"

#include <algorithm>
#include <cmath>

#include "calib/calibrators/awq_fold.h"
#include "calib/calibrators/awq_job.h"
#include "core/error.h"
#include "formats/format.h"
#include "model/fusion.h"

namespace moeq {
namespace {

// The fusion group of a site (`layers.3.experts.17.{gate,up}`, `layers.3.attn.{q,k,v}`), else "":
// its members share one input (vLLM fuses them), so one input scale.
std::string fused_key(const Site& s) { return fusion_group(s); }

// An AWQ-folded site's input is x / s (calib/calibrators/awq_fold.h: down's, and gate/up's and
// the other readers of a folded norm): its amax is max_j channel_amax_j / s_j, from the
// per-channel amax of calib.h5.
float awq_input_amax(const SitePlan& sp, const CalibSite& c, const std::string& path) {
  if (!sp.calibrator.awq) return c.amax;
  const at::Tensor s = awq_input_scales(*sp.calibrator.awq, *sp.site);
  if (!s.defined() || (s == 1).all().item<bool>()) return c.amax;
  if (c.channel_amax.size() != static_cast<size_t>(s.numel()))
    throw Error(path + ": site " + sp.site->name + " (calibrator awq, input_quant) has " + std::to_string(c.channel_amax.size()) +
                " per-channel amax values, its AWQ scales " + std::to_string(s.numel()) +
                ": the scaled input's amax needs them; re-run moeq calibrate with --channel-amax");
  const at::Tensor ch = at::tensor(c.channel_amax, at::kFloat);
  const float a = (ch / s).max().item<float>();
  return a > 0 ? a : c.amax;
}

}  // namespace

bool format_quantizes_inputs(const std::string& format) {
  const QuantFormat* f = find_format(format);
  return f && f->traits().input_quant != InputQuant::None;
}

float input_scale_from_amax(const std::string& format, float amax) {
  if (!std::isfinite(amax) || amax <= 0)
    throw Error("input amax " + std::to_string(amax) + " gives no usable input scale (must be finite and > 0)");
  if (format_quantizes_inputs(format)) return amax / format_by_name(format).traits().input_amax_divisor;
  throw Error("format " + format + " has no static input scale in moeq (activation quantization: nvfp4, fp8)");
}

float input_global_scale_from_amax(float amax) {
  if (!std::isfinite(amax) || amax <= 0)
    throw Error("input amax " + std::to_string(amax) + " gives no usable input global scale (must be finite and > 0)");
  // torch evaluates `scalar / tensor` as tensor.reciprocal() * scalar: so does compressed-tensors' generate_gparam.
  return (1.0f / amax) * (448.0f * 6.0f);
}

std::map<std::string, InputScale> input_scales(const Plan& plan, const CalibData& calib, const std::string& path) {
  std::map<std::string, float> amax_of;  // site name -> amax
  std::map<std::string, float> fused;    // fusion group -> the largest amax
  for (const auto& sp : plan.sites) {
    if (!sp.quantize || !sp.input_quant) continue;
    const Site& s = *sp.site;
    const CalibSite* c = calib.find(s.name);
    if (!c)
      throw Error(path + " has no activation statistics for site " + s.name + " (" + s.module +
                  "), whose rule quantizes its input (input_quant): the forward reports no input for it. Disable "
                  "input_quant for it in the recipe, or re-run moeq calibrate with a moeq that observes it");
    if (!std::isfinite(c->amax) || c->amax <= 0)
      throw Error(path + ": site " + s.name + " (" + s.module + ") has input amax " + std::to_string(c->amax) +
                  "; its input scale would not be finite and > 0. Disable input_quant for it, or calibrate with other data");
    amax_of[s.name] = awq_input_amax(sp, *c, path);
    if (const std::string k = fused_key(s); !k.empty()) fused[k] = std::max(fused[k], amax_of[s.name]);
  }
  std::map<std::string, InputScale> out;
  for (const auto& sp : plan.sites) {
    if (!sp.quantize || !sp.input_quant) continue;
    const std::string k = fused_key(*sp.site);
    const float amax = k.empty() ? amax_of.at(sp.site->name) : fused.at(k);
    try {
      out[sp.site->name] = {amax, input_scale_from_amax(sp.format, amax)};
    } catch (const Error& e) {
      throw Error("site " + sp.site->name + ": " + e.what());
    }
  }
  return out;
}

}  // namespace moeq
