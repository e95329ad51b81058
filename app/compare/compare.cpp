#include "app/compare/compare.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <memory>
#include <optional>
#include <set>

#include "calib/calib_file.h"
#include "calib/dataset.h"
#include "app/compare/eval_outputs.h"
#include "app/compare/export_eval.h"
#include "app/compare/input_transform.h"
#include "core/error.h"
#include "tensor/aten_view.h"
#include "core/progress.h"
#include "export/layout.h"
#include "formats/format.h"
#include "io/checkpoint.h"
#include "model/model.h"
#include "model/plugin.h"
#include "app/run/batches.h"
#include "app/run/stages.h"
#include "calib/calibrators/awq_job.h"
#include "calib/calibrators/gptq_job.h"
#include "calib/calibrators/input_scales.h"
#include "recipe/recipe.h"
#include "model/site_bytes.h"

namespace moeq {
namespace {

double sqnr_db(double signal, double noise) {
  if (noise == 0) return std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(signal / noise);
}

double rel_err(double signal, double noise) {
  if (noise == 0) return 0;
  return signal == 0 ? std::numeric_limits<double>::infinity() : std::sqrt(noise / signal);
}

// The --formats shorthand: one rule, every site, default params. Protected roles stay
// unquantized because the rule does not name them (make_plan's rule).
// With activations (compare --calib), formats with a static input scale (nvfp4, fp8) quantize
// every quantized linear's input too (W4A4, W8A8).
Recipe format_recipe(const std::string& format, bool activations) {
  format_by_name(format);  // unknown: an error listing the known formats
  Recipe r;
  r.name = format;
  r.path = "--formats " + format;
  const bool inputs = activations && format_quantizes_inputs(format);
  r.weight_only = !inputs;
  RecipeRule rule;
  rule.index = 1;
  rule.sites = {"*"};
  rule.format = format;
  rule.input_quant = inputs;
  r.rules.push_back(rule);
  return r;
}

}  // namespace

void site_energies(const at::Tensor& w, const at::Tensor& deq, std::vector<double>* signal, std::vector<double>* noise) {
  const int64_t n = w.dim() == 3 ? w.size(0) : 1;
  const int64_t per = w.numel() / n;
  const float* a = w.data_ptr<float>();
  const float* b = deq.data_ptr<float>();
  signal->assign(n, 0.0);
  noise->assign(n, 0.0);
#pragma omp parallel for schedule(static)
  for (int64_t e = 0; e < n; ++e) {
    double s = 0, d = 0;
    const float* x = a + e * per;
    const float* y = b + e * per;
    for (int64_t i = 0; i < per; ++i) {
      const double v = x[i], r = v - static_cast<double>(y[i]);
      s += v * v;
      d += r * r;
    }
    (*signal)[e] = s;
    (*noise)[e] = d;
  }
}

namespace {

// Quantizes and dequantizes every quantized site of the plan; appends one SiteError each.
std::vector<SiteError> measure(const Checkpoint& ck, const Plan& plan, const at::Device& dev, const std::string& what) {
  std::map<const Site*, SiteError> by_site;
  uint64_t total = 0;
  for (const auto& sp : plan.sites)
    if (sp.quantize) total += stored_bytes(ck, *sp.site);
  Progress progress(what, total);
  for (const auto& job : plan_jobs(plan)) {
    std::vector<at::Tensor> stacks;
    for (const SiteBatch& b : job) stacks.push_back(load_stack(ck, b, dev));
    const std::vector<QuantizedTensor> qs = quantize_job(ck, job, stacks);
    // AWQ: the error against the folded source (the function the quantized weights approximate).
    const std::vector<at::Tensor> refs = job[0].sites[0]->calibrator.awq ? awq_fold_stacks(job, stacks) : stacks;
    for (size_t j = 0; j < job.size(); ++j) {
      const SiteBatch& b = job[j];
      const SitePlan& first = *b.sites[0];
      const QuantFormat& fmt = format_by_name(first.format);
      const QuantizedTensor& q = qs[j];
      const at::Tensor deq = fmt.dequantize(q, at::kFloat).to(at::kCPU).contiguous();
      const at::Tensor w = refs[j].to(at::kCPU).to(at::kFloat).contiguous();
      if (deq.sizes() != w.sizes())
        throw Error(first.format + ": dequantize returned shape " + std::to_string(deq.dim()) + "D for " +
                    first.site->name + " (expected the input's shape)");
      std::vector<double> sig, noi;
      site_energies(w, deq, &sig, &noi);
      const double bpw = fmt.bits_per_weight({first.site->view.rows, first.site->view.cols}, first.params);
      for (size_t i = 0; i < b.sites.size(); ++i) {
        const SitePlan& sp = *b.sites[i];
        const Site& s = *sp.site;
        SiteError e;
        e.site = s.name;
        e.format = sp.format;
        e.proj = s.proj;
        e.role = s.role;
        e.layer = s.layer;
        e.expert = s.expert;
        e.rows = s.view.rows;
        e.cols = s.view.cols;
        e.block_size = sp.params.block_size;
        e.bits_per_weight = bpw;
        e.signal = sig[i];
        e.noise = noi[i];
        e.sqnr_db = sqnr_db(e.signal, e.noise);
        e.rel_err = rel_err(e.signal, e.noise);
        by_site[&s] = e;
        progress.advance(stored_bytes(ck, s));
      }
    }
  }
  progress.done();
  std::vector<SiteError> out;
  for (const auto& sp : plan.sites)
    if (sp.quantize) out.push_back(by_site.at(sp.site));
  return out;
}

Variant evaluate(const Recipe& recipe, const Plan& plan, const SiteMap& map, const Checkpoint& ck,
                 const at::Device& dev, const CompareOptions& opt) {
  Variant v;
  v.name = recipe.name;
  v.source = recipe.path;
  v.export_format = recipe.export_format;
  v.warnings = plan.warnings;
  int64_t unruled = 0;
  std::set<std::string> formats, input_formats;
  for (const auto& sp : plan.sites) {
    if (sp.quantize) formats.insert(sp.format);
    else v.skipped[sp.reason]++;
    if (sp.site->role == Role::Expert && !sp.quantize && !sp.rule) unruled++;
    if (sp.quantize && sp.input_quant) {
      v.input_quant_sites++;
      input_formats.insert(sp.format);
    }
  }
  v.formats.assign(formats.begin(), formats.end());
  if (unruled)
    v.warnings.push_back(std::to_string(unruled) + " expert sites match no rule and stay unquantized (moeq quantize "
                         "refuses this recipe until a rule decides them)");
  if (v.input_quant_sites && opt.calib.empty()) {
    v.activations = "none: " + activation_label(input_formats) + " activations not measured (no --calib)";
    v.warnings.push_back("the recipe quantizes the activations of " + std::to_string(v.input_quant_sites) +
                         " sites (input_quant, " + activation_label(input_formats) +
                         "): measured here with weights only (weight error and, with --eval, the output error of "
                         "the weight-only fake-quantized model); pass --calib calib.h5 with --eval to quantize "
                         "activations too");
  }

  v.sites = measure(ck, plan, dev, "compare " + v.name);
  v.sites_total = static_cast<int64_t>(map.sites.size());

  // Size: every stored tensor at its stored size, quantized sites replaced by their bits.
  for (const auto& n : ck.names()) v.source_bytes += ck.info(n).nbytes();
  uint64_t stored_q = 0;
  double bits_q = 0;
  for (const auto& sp : plan.sites) {
    if (!sp.quantize) continue;
    const Site& s = *sp.site;
    const int64_t n = s.view.rows * s.view.cols;
    stored_q += stored_bytes(ck, s);
    v.quantized_weights += n;
  }
  for (const auto& e : v.sites) bits_q += e.bits_per_weight * static_cast<double>(e.rows * e.cols);
  v.expected_bytes = v.source_bytes - stored_q + static_cast<uint64_t>(std::ceil(bits_q / 8.0));
  v.bits_per_weight = v.quantized_weights ? bits_q / static_cast<double>(v.quantized_weights) : 0.0;

  summarize_variant(v, map, opt.worst_experts);
  return v;
}

}  // namespace

void summarize_variant(Variant& v, const SiteMap& map, int worst_experts) {
  std::vector<const SiteError*> all;
  std::map<std::string, std::vector<const SiteError*>> roles;
  std::map<std::string, int64_t> role_sites;
  std::map<int64_t, std::vector<const SiteError*>> layers;
  for (const Site& s : map.sites) {
    role_sites[role_name(s.role)]++;
    roles[role_name(s.role)];
  }
  for (const auto& e : v.sites) {
    all.push_back(&e);
    roles[role_name(e.role)].push_back(&e);
    if (e.layer >= 0) layers[e.layer].push_back(&e);
  }
  v.all = summarize(all, static_cast<int64_t>(map.sites.size()));
  for (const auto& [r, list] : roles) v.per_role[r] = summarize(list, role_sites[r]);
  for (const auto& [l, list] : layers) v.per_layer[l] = summarize(list, static_cast<int64_t>(list.size()));

  // Experts: all quantized projections of (layer, expert) together.
  std::map<std::pair<int64_t, int64_t>, std::vector<const SiteError*>> experts;
  for (const auto& e : v.sites)
    if (e.role == Role::Expert && e.expert >= 0) experts[{e.layer, e.expert}].push_back(&e);
  for (const auto& [key, list] : experts) {
    ExpertError x;
    x.layer = key.first;
    x.expert = key.second;
    double sig = 0, noi = 0;
    const SiteError* worst = list[0];
    for (const SiteError* e : list) {
      sig += e->signal;
      noi += e->noise;
      if (e->sqnr_db < worst->sqnr_db) worst = e;
    }
    x.sqnr_db = sqnr_db(sig, noi);
    x.rel_err = rel_err(sig, noi);
    x.worst_proj = worst->proj;
    x.worst_proj_sqnr_db = worst->sqnr_db;
    v.experts.push_back(x);
  }
  v.worst_experts = v.experts;
  std::stable_sort(v.worst_experts.begin(), v.worst_experts.end(),
                   [](const ExpertError& a, const ExpertError& b) { return a.sqnr_db < b.sqnr_db; });
  if (static_cast<int>(v.worst_experts.size()) > worst_experts) v.worst_experts.resize(std::max(0, worst_experts));
}

ErrorStats summarize(const std::vector<const SiteError*>& sites, int64_t total_sites) {
  ErrorStats s;
  s.sites = total_sites;
  s.quantized = static_cast<int64_t>(sites.size());
  int64_t n = 0;
  const SiteError* worst = nullptr;
  for (const SiteError* e : sites) {
    if (!std::isfinite(e->sqnr_db)) {
      s.exact++;
      continue;
    }
    s.mean_sqnr_db += e->sqnr_db;
    s.mean_rel_err += e->rel_err;
    s.max_rel_err = std::max(s.max_rel_err, e->rel_err);
    if (!worst || e->sqnr_db < worst->sqnr_db) worst = e;
    n++;
  }
  if (n) {
    s.mean_sqnr_db /= static_cast<double>(n);
    s.mean_rel_err /= static_cast<double>(n);
    s.min_sqnr_db = worst->sqnr_db;
    s.worst_site = worst->site;
  }
  return s;
}

namespace {

// The eval ids, undefined when no output error was asked for; info gets their source.
at::Tensor eval_ids(const CompareOptions& opt, EvalInfo* info) {
  if (opt.eval_dtype != "bfloat16" && opt.eval_dtype != "float32")
    throw Error("--eval-dtype must be bfloat16 or float32, got '" + opt.eval_dtype + "'");
  info->dtype = opt.eval_dtype;
  if (opt.eval_ref_mib < 0 || opt.eval_chunk_samples < 1)
    throw Error("--eval-ref-mib must not be negative and --eval-chunk must be at least 1");
  if (opt.eval_ids.defined()) {
    info->source = "ids given by the caller";
    return opt.eval_ids;
  }
  if (!opt.eval_ids_file.empty()) {
    auto f = Checkpoint::open_file(opt.eval_ids_file);
    if (!f->has("ids"))
      throw Error(opt.eval_ids_file + ": no tensor 'ids' (--eval-ids wants a safetensors file with ids [samples, seq] int64)");
    at::Tensor ids = tensor_view(*f, "ids").clone();
    if (ids.dim() != 2 || ids.scalar_type() != at::kLong)
      throw Error(opt.eval_ids_file + ": tensor 'ids' must be [samples, seq] int64");
    info->source = opt.eval_ids_file + " (pre-tokenized ids)";
    return ids;
  }
  if (opt.eval_file.empty()) return at::Tensor();
  CalibDataSpec spec;
  spec.path = opt.eval_file;
  spec.model_dir = opt.model;
  spec.samples = opt.eval_samples;
  spec.seq_len = opt.eval_seq_len;
  CalibTokens t = load_calibration_tokens(spec);
  info->source = t.description;
  return t.ids;
}

}  // namespace

namespace {

// Recipes first (all parsed before any work, so a typo fails fast), then formats; names made
// unique ("#2", ...).
std::vector<Recipe> compare_recipes(const CompareOptions& opt) {
  std::vector<Recipe> recipes;
  for (const auto& p : opt.recipes) {
    recipes.push_back(load_recipe(p));
    export_layout_for(recipes.back());  // an unknown `export:` fails fast too
  }
  for (const auto& f : opt.formats)
    if (f == "all")
      for (const auto& name : format_names()) recipes.push_back(format_recipe(name, !opt.calib.empty()));
    else
      recipes.push_back(format_recipe(f, !opt.calib.empty()));
  std::set<std::string> names;
  for (auto& r : recipes) {
    std::string n = r.name;
    for (int i = 2; names.count(n); ++i) n = r.name + "#" + std::to_string(i);
    r.name = n;
    names.insert(n);
  }
  return recipes;
}

CompareResult result_header(const CompareOptions& opt, const Model& model) {
  CompareResult res;
  res.model = opt.model;
  res.plugin = model.plugin->family;
  res.device = opt.device;
  for (const Site& s : model.sites.sites) {
    if (s.role == Role::Mtp) continue;  // MTP layers sit past the trunk's layers
    res.layers = std::max(res.layers, s.layer + 1);
    if (s.role == Role::Expert) res.experts_per_layer = std::max(res.experts_per_layer, s.expert + 1);
  }
  return res;
}

// Activation scales from calibration, for this model only; before the weight pass.
std::vector<InputTransforms> calib_inputs(const CompareOptions& opt, const Model& model, const std::vector<Plan>& plans,
                                          const at::Tensor& ids, EvalInfo& info) {
  std::vector<InputTransforms> inputs(plans.size());
  if (opt.calib.empty()) return inputs;
  if (!ids.defined())
    throw Error("--calib " + opt.calib + ": quantized activations show only in the output error; pass --eval DATA "
                "or --eval-ids IDS.safetensors too");
  const CalibData calib = read_calib_for(opt.calib, model);
  for (size_t k = 0; k < plans.size(); ++k) inputs[k] = plan_input_transforms(plans[k], calib, opt.calib);
  info.calib = opt.calib;
  return inputs;
}

// --activations-only: the source weights with v's activation quantization. No weight is
// quantized, so the row has no sites and the source's size.
Variant activations_only_twin(const Variant& v, const InputTransforms& inputs, const std::string& calib_name,
                              const SiteMap& map, int worst_experts) {
  Variant a = v;
  a.name = v.name + " (activations only)";
  a.activations_only_twin = true;
  a.activations_quantized = true;
  a.activations = activation_label(inputs.formats) + " (activations from " + calib_name +
                  "; weights at source precision: reference for " + v.name + ")";
  a.warnings = {"activations only: " + std::to_string(inputs.sites) + " input_quant sites fake-quantized as in " +
                v.name + ", every weight as stored in the source"};
  a.sites.clear();
  a.formats.clear();  // no weight quantized (the activation format is in `activations`)
  a.quantized_weights = 0;
  a.expected_bytes = a.source_bytes;
  a.bits_per_weight = 0;
  summarize_variant(a, map, worst_experts);
  return a;
}

// One forward pass per variant of the output error: its weight and input transforms.
struct EvalPasses {
  std::vector<WeightTransform> weights;
  std::vector<AuxTransform> aux;  // AWQ's folded norms (null: none)
  std::vector<InputTransforms> inputs;
};

// The variants in recipe order; a recipe whose activations are quantized is followed by its
// weights-only twin (same weights, activations unquantized).
EvalPasses add_variants(const CompareOptions& opt, const Model& model, const std::vector<Recipe>& recipes,
                        const std::vector<Plan>& plans, const std::vector<std::shared_ptr<const HessianFile>>& hessians,
                        const std::vector<InputTransforms>& inputs, bool eval, const at::Device& dev, CompareResult& res) {
  EvalPasses passes;
  const std::string calib_name = std::filesystem::path(opt.calib).filename().string();
  for (size_t k = 0; k < recipes.size(); ++k) {
    Variant v = evaluate(recipes[k], plans[k], model.sites, *model.checkpoint, dev, opt);
    if (eval) {
      passes.weights.push_back(plan_weight_transform(model.checkpoint, plans[k], dev));
      passes.aux.push_back(plan_aux_transform(model, plans[k]));
      passes.inputs.push_back(inputs[k]);
    }
    std::shared_ptr<const AwqScales> awq;
    for (const auto& sp : plans[k].sites)
      if (sp.calibrator.awq) awq = sp.calibrator.awq;
    if (awq) {
      v.warnings.push_back("weights by AWQ: expert input scales from the Hessians in " + hessians[k]->path() +
                           " (down_proj's folded into up_proj, gate_up's into the norm before the MoE and its other readers; "
                           "weight errors are against the folded source)");
      for (const auto& line : awq->fallbacks) v.warnings.push_back("awq fallback: " + line);
    } else if (hessians[k]) {
      v.warnings.push_back("weights by GPTQ with the Hessians (routed experts, and the linears the recipe runs GPTQ on) from " + hessians[k]->path());
      for (const auto& line : hessians[k]->fallbacks()) v.warnings.push_back("gptq fallback: " + line);
    }
    if (inputs[k].sites == 0) {
      if (!opt.calib.empty() && v.input_quant_sites == 0 && !hessians[k])
        v.warnings.push_back("--calib " + opt.calib + ": the recipe quantizes no activations (no input_quant site)");
      res.variants.push_back(std::move(v));
      continue;
    }
    Variant twin = v;
    v.activations_quantized = true;
    v.activations = activation_label(inputs[k].formats) + " (activations from " + calib_name + ")";
    twin.name = v.name + " (weights only)";
    twin.weights_only_twin = true;
    twin.activations = "none (weights only: reference for " + v.name + ")";
    twin.warnings.clear();
    std::optional<Variant> act;
    if (opt.activations_only && awq)
      v.warnings.push_back("--activations-only: no activations-only row for an AWQ recipe (its down_proj input scales "
                           "are for the folded weights x / s, not the source's)");
    else if (opt.activations_only)
      act = activations_only_twin(v, inputs[k], calib_name, model.sites, opt.worst_experts);
    res.variants.push_back(std::move(v));
    res.variants.push_back(std::move(twin));
    passes.weights.push_back(plan_weight_transform(model.checkpoint, plans[k], dev));
    passes.aux.push_back(plan_aux_transform(model, plans[k]));
    passes.inputs.push_back(InputTransforms{});
    if (act) {
      res.variants.push_back(std::move(*act));
      passes.weights.push_back(WeightTransform{});  // the source weights, as the reference forward's
      passes.aux.push_back(nullptr);                // and the source norms (no AWQ fold)
      passes.inputs.push_back(inputs[k]);
    }
  }
  return passes;
}

// compare --exports: each export's variant (and, when it quantizes activations, its weights-only
// twin).
void add_export_variants(bool eval, std::vector<ExportEval>& evals, EvalPasses& passes, CompareResult& res) {
  for (ExportEval& x : evals) {
    const bool twin = x.inputs.sites > 0;
    Variant v = x.variant;
    if (eval) {
      passes.weights.push_back(x.weights);
      passes.aux.push_back(x.aux);  // the export's norms, biases, ...
      passes.inputs.push_back(x.inputs);
    }
    res.variants.push_back(v);
    if (!twin) continue;
    Variant t = v;
    t.name = v.name + " (weights only)";
    t.weights_only_twin = true;
    t.activations_quantized = false;
    t.activations = "none (weights only: reference for " + v.name + ")";
    t.warnings.clear();
    res.variants.push_back(std::move(t));
    if (eval) {
      passes.weights.push_back(x.weights);
      passes.aux.push_back(x.aux);
      passes.inputs.push_back(InputTransforms{});
    }
  }
  res.eval.exports = static_cast<int64_t>(evals.size());
}

// Output error: every variant's fake-quantized model against the unquantized one.
void measure_outputs(const CompareOptions& opt, const Model& model, const EvalPasses& passes, const at::Tensor& ids,
                     const at::Device& dev, EvalInfo info, CompareResult& res) {
  EvalOptions eo;
  eo.ids = ids;
  eo.device = dev;
  eo.dtype = info.dtype == "float32" ? at::kFloat : at::kBFloat16;
  eo.chunk_samples = opt.eval_chunk_samples;
  eo.ref_budget_bytes = opt.eval_ref_mib << 20;
  eo.aux = passes.aux;
  const EvalResult er = evaluate_outputs(model, passes.weights, eo, passes.inputs);
  for (size_t k = 0; k < er.variants.size(); ++k) res.variants[k].output = er.variants[k];
  info.measured = true;
  info.samples = ids.size(0);
  info.seq_len = ids.size(1);
  info.tokens = er.variants.empty() ? 0 : er.variants[0].tokens;
  info.groups = er.groups;
  info.samples_per_group = er.samples_per_group;
  info.ref_budget_mib = opt.eval_ref_mib;
  info.seconds = er.seconds;
  info.expert_gemm = er.expert_gemm;
  info.ppl_ref = er.variants.empty() ? 0 : er.variants[0].ppl_ref;
  info.exports = res.eval.exports;
  res.eval = info;
}

}  // namespace

CompareResult run_compare(const CompareOptions& opt) {
  if (opt.recipes.empty() && opt.formats.empty() && opt.exports.empty())
    throw Error("nothing to compare: give --recipes R1.yaml R2.yaml ..., --formats nvfp4,fp8,... and/or --exports NAME=DIR ...");
  if (opt.activations_only && opt.calib.empty())
    throw Error("--activations-only adds rows with the recipes' activations quantized: give --calib calib.h5 and eval ids "
                "(--eval DATA or --eval-ids IDS.safetensors)");
  const at::Device dev = checked_device(opt.device);
  std::vector<Recipe> recipes = compare_recipes(opt);
  const Model model = open_model(opt.model);
  require_routed_experts(model);
  CompareResult res = result_header(opt, model);
  EvalInfo info;
  const at::Tensor ids = eval_ids(opt, &info);  // before the weight pass: bad eval input fails fast
  std::vector<Plan> plans;
  for (const auto& r : recipes) plans.push_back(make_plan(r, model.sites.sites, false));
  // GPTQ recipes: the Hessians from the side file beside --calib (calib/calibrators/gptq_job.h).
  std::vector<std::shared_ptr<const HessianFile>> hessians;
  for (auto& p : plans) hessians.push_back(attach_hessians_for(p, opt.calib, model));
  // AWQ recipes: the down_proj scales, before the input scales (the scaled input's amax).
  for (auto& p : plans) attach_awq_scales(p, model, dev);
  const std::vector<InputTransforms> inputs = calib_inputs(opt, model, plans, ids, info);
  // Exports are read (and their weight error measured) before the recipes' weight pass: an export
  // moeq cannot read fails fast.
  std::vector<ExportEval> exports;
  for (const auto& [name, dir] : opt.exports) exports.push_back(open_export_eval(model, name, dir, opt.worst_experts));
  EvalPasses passes = add_variants(opt, model, recipes, plans, hessians, inputs, ids.defined(), dev, res);
  add_export_variants(ids.defined(), exports, passes, res);
  if (ids.defined()) measure_outputs(opt, model, passes, ids, dev, info, res);
  return res;
}

}  // namespace moeq
