#pragma once
// Recipes: an ordered list of rules that pick a format (or no quantization) for each site.
// Later rules override earlier ones, as in NVIDIA Model Optimizer's quant_cfg. moeq reads
// its own YAML form and ModelOpt-style `quantize: {quant_cfg: [...]}` YAML.
//
// Protected roles (router, embeddings, lm_head, mtp, tower) are never quantized unless the rule that
// decides a site names that role in its `roles:` list.
#include <memory>
#include <string>
#include <vector>

#include "formats/format.h"
#include "model/site.h"

namespace moeq {

class HessianFile;  // calib/hessian_file.h
class AwqScales;    // calib/calibrators/awq_job.h

// How a rule's weight scales are chosen (docs/weight_calibration.md). `max` uses the
// weights' abs-max; `mse` searches for the scales with the least squared weight error, as
// NVIDIA Model Optimizer's `mse` algorithm: candidate amax = max amax x linspace(start,
// stop, num_steps()) (per tensor: per expert of a stack; per row for FP8 channel scales;
// per 16-element block for NVFP4, whose global scale stays the max), or with
// fp8_scale_sweep every NVFP4 block scale tried among the 126 positive finite FP8 E4M3 values.
// `gptq` (routed experts, other linears; docs/gptq.md) quantizes with the format's max scales and
// GPTQ's error feedback through per-expert / per-input Hessians (moeq calibrate --gptq-hessians).
// `awq` (routed experts and attention; docs/awq.md) searches per-input-channel scales of down_proj
// (s = mean|x|^a / mean|w|^(1-a), a on a grid) minimising tr(dW H dW^T) with the same
// Hessians, folded exactly into up_proj's rows, and one per-layer scale of gate/up's shared
// input folded into the norm that feeds it; for attention one scale of q/k/v's input (folded into
// input_layernorm) and one of o_proj's (folded into v_proj's rows); then the format's max path.
struct WeightCalibrator {
  std::string method = "max";  // max | mse | gptq | awq
  double start_multiplier = 0.25, stop_multiplier = 4.0, step_size = 0.1;
  bool fp8_scale_sweep = false;
  int64_t gptq_block_size = 128;   // columns per GPTQ block
  double gptq_dampening = 0.01;    // fraction of the mean Hessian diagonal added to it
  bool gptq_act_order = false;     // columns by descending Hessian diagonal
  bool gptq_observer_mse = false;  // `observer: mse`: integer group scales by a shrink search first (int_mse_scales.h)
  int64_t gptq_min_tokens = 64;    // experts with fewer routed calibration tokens keep max (reported); also awq's
  double awq_alpha_step = 0.1;     // awq: the exponent grid 0, step, ..., 1 (ModelOpt awq_lite's alpha_step)
  // awq: which inputs get scales: the experts' down_proj's (folded into up's rows) and gate_up's
  // (the layer's norm output: one scale per layer folded into the norm, docs/awq.md), attention's
  // qkv (the input norm's output) and o (folded into v_proj's rows). Default all. With `inputs`
  // given, an input whose fold the family does not allow is an error; by default such a site is
  // quantized without scales and listed (an `awq fallback:` line).
  bool awq_down = true, awq_gate_up = true, awq_qkv = true, awq_o = true;
  bool awq_inputs_given = false;
  // gptq with AWQ's scales first (`awq: true` or `awq: {inputs, alpha_step}` in a gptq mapping):
  // the awq search and fold as for method awq, then GPTQ on the folded weights through the
  // folded Hessians (input x / s: H -> S^-1 H S^-1). is_awq() and is_gptq() both hold.
  bool gptq_awq = false;
  // The AWQ scales (computed after planning, calib/calibrators/awq_job.h; null before).
  std::shared_ptr<const AwqScales> awq;
  // The Hessians (attached after planning from the --calib file's side file; null before).
  std::shared_ptr<const HessianFile> hessians;
  std::string note;            // why a ModelOpt-style `algorithm: mse` left this rule at max
  bool is_mse() const { return method == "mse"; }
  bool is_gptq() const { return method == "gptq"; }
  bool is_awq() const { return method == "awq" || gptq_awq; }
  bool needs_hessians() const { return is_gptq() || is_awq(); }
  // ceil((stop - start) / step) + 1, in double as ModelOpt computes it (defaults: 39).
  int64_t num_steps() const;
  // "max", "mse (amax x 0.25..4, 39 steps)", "mse (fp8 scale sweep)"; also the batch key.
  std::string describe() const;
};

// The formats a calibrator method can search; "" when it applies to `format`, else why not.
std::string calibrator_misfit(const WeightCalibrator& c, const std::string& format);

struct RecipeRule {
  int index = 0;                     // 1-based position in the recipe
  int line = 0;                      // line in the YAML file
  std::vector<std::string> sites;    // glob (fnmatch) or `re:` regex over canonical site names
  std::vector<std::string> modules;  // glob or `re:` over checkpoint module names (model.layers.0.mlp...)
  std::vector<Role> roles;           // optional role filter; naming a protected role unprotects it
  bool enable = true;
  std::string format;                // required when enable
  FormatParams params;
  bool input_quant = false;          // also quantize activations (W4A4 / W8A8): needs calibration
  WeightCalibrator calibrator;       // the rule's `calibrator`, else the recipe's, else max
  std::string describe() const;      // "rule 2 (line 7)"
};

struct Recipe {
  std::string path, name, description;
  // The export layout's name, kept as data: export/layout.h's export_layout_for checks it where
  // the plan meets the export, naming path:export_line (0 when the recipe has no `export` key).
  std::string export_format = "modelopt";
  int export_line = 0;
  bool weight_only = false;                // ignore input_quant (no calibration needed)
  bool modelopt_style = false;             // rules came from a ModelOpt quant_cfg (match <module>.weight_quantizer)
  // false: skip the refusals of plans vLLM cannot load (split fusion groups, partial MoE layers,
  // per-expert gpt-oss experts: export/fused_consumer_rules.h), for consumers other than vLLM;
  // quantize says so on stderr.
  bool consumer_checks = true;
  std::vector<RecipeRule> rules;
};

// Parses and validates a recipe file. Throws moeq::Error naming file, line and key, with
// a suggestion for misspelled keys and the list of known formats for unknown ones.
Recipe load_recipe(const std::string& path);
Recipe parse_recipe(const std::string& yaml_text, const std::string& path);

struct SitePlan {
  const Site* site = nullptr;
  bool quantize = false;
  std::string format;
  FormatParams params;
  bool input_quant = false;
  const RecipeRule* rule = nullptr;  // the rule that decided, or null
  std::string reason;                // why skipped (or "rule N" for quantized)
  WeightCalibrator calibrator;       // how the weight scales are chosen (quantized sites)
};

struct Plan {
  std::vector<SitePlan> sites;        // one per site, in site order
  std::vector<std::string> warnings;  // rules that matched nothing, shapes that did not fit
};

// Decides every site. strict: warnings become errors.
Plan make_plan(const Recipe& recipe, const std::vector<Site>& sites, bool strict);

bool is_protected_role(Role r);
bool parse_role(const std::string& s, Role* out);
// fnmatch glob, or std::regex (ECMAScript, full match) when the pattern starts with `re:`.
bool pattern_matches(const std::string& pattern, const std::string& text);

}  // namespace moeq
