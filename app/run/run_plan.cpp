#include "app/run/run_plan.h"

#include <cstdio>

#include "app/run/stages.h"
#include "core/error.h"
#include "export/fused_consumer_rules.h"
#include "export/layout.h"

namespace moeq {
namespace {

// Nothing silent: an expert left in bf16 needs a rule that says so; the writer and the
// consumer's loader must accept every quantized site; activation quantization needs --calib.
void check_plan(const QuantizeOptions& opt, const RunPlan& r, const std::string& family) {
  std::vector<std::string> unruled;
  size_t input_quant_sites = 0;
  for (const auto& sp : r.plan.sites) {
    if (sp.site->role == Role::Expert && !sp.quantize && !sp.rule) unruled.push_back(sp.site->name);
    if (sp.input_quant) ++input_quant_sites;
  }
  if (!unruled.empty())
    throw Error(opt.recipe + ": " + std::to_string(unruled.size()) + " expert sites match no rule and would stay " +
                "unquantized (first: " + unruled[0] + "); add a rule for them, or one with enable: false to keep them");
  try {
    for (const auto& sp : r.plan.sites)
      if (sp.quantize) r.writer->check(sp);
    if (r.recipe.consumer_checks)
      check_fused_consumer_plan(r.plan, family, r.writer->name());
    else
      std::fprintf(stderr, "warning: %s: consumer_checks: false: the export is not checked against vLLM's loader "
                   "(fusion groups, whole MoE layers, gpt-oss expert layout); it may not load there\n", opt.recipe.c_str());
  } catch (const Error& e) {
    throw Error(opt.recipe + ": " + e.what());
  }
  if (input_quant_sites && opt.calib.empty())
    throw Error(opt.recipe + ": the recipe quantizes activations of " + std::to_string(input_quant_sites) +
                " sites (input_quant), which needs input scales from calibration: pass --calib CALIB.h5, or set "
                "weight_only: true in the recipe for a weight-only export");
}

// Activation scales from calibration, for the model it was made for only; GPTQ's Hessians.
void load_calibration(const QuantizeOptions& opt, const Model& model, RunPlan& r) {
  r.hessians = attach_hessians_for(r.plan, opt.calib, model);
  r.awq = attach_awq_scales(r.plan, model, r.device);  // before the input scales: x / s at down
  if (opt.calib.empty()) return;
  r.calib = read_calib_for(opt.calib, model);
  r.in_scales = input_scales(r.plan, r.calib, opt.calib);
  if (r.in_scales.empty() && !r.hessians)
    r.calib_warnings.push_back("--calib " + opt.calib + ": the recipe quantizes no activations (no input_quant site" +
                               std::string(r.recipe.weight_only ? ", weight-only" : "") + "), so the file is not used");
}

}  // namespace

RunPlan plan_quantize_run(const QuantizeOptions& opt, const Model& model) {
  RunPlan r;
  r.recipe = load_recipe(opt.recipe);
  if (opt.weight_only) r.recipe.weight_only = true;
  r.plan = make_plan(r.recipe, model.sites.sites, opt.strict);
  r.writer = export_layout_for(r.recipe).writer.get();
  check_plan(opt, r, model.plugin->family);
  r.device = checked_device(opt.device);
  load_calibration(opt, model, r);
  const SiteMap& map = model.sites;
  if (!map.unclaimed.empty() && opt.strict)
    throw Error(opt.model + ": " + std::to_string(map.unclaimed.size()) + " tensors not claimed by plugin " +
                model.plugin->family + " (first: " + map.unclaimed[0] + ") (--strict)");
  return r;
}

}  // namespace moeq
