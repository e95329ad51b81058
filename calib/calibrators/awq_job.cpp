#include "calib/calibrators/awq_job.h"

#include <unistd.h>

#include <algorithm>
#include <cfloat>
#include <filesystem>

#include "calib/calibrators/awq.h"
#include "calib/calibrators/awq_attn.h"
#include "calib/calibrators/awq_norm.h"
#include "calib/calibrators/awq_quant.h"
#include "calib/hessian_file.h"
#include "core/error.h"
#include "formats/format.h"
#include "io/safetensors.h"
#include "io/safetensors_writer.h"
#include "tensor/aten_view.h"

namespace moeq {

const char* const kAwqScalesFile = "moeq_awq/scales.safetensors";

namespace {

// The scales file's tensor of one input: layers.L.experts.{down,gate_up}.awq_scale, layers.L.attn.{qkv,o}.awq_scale.
const char* const kInputs[][2] = {{"experts", "down"}, {"experts", "gate_up"}, {"attn", "qkv"}, {"attn", "o"}};

std::string scale_name(int64_t layer, const std::string& input = "down") {
  for (const auto& [module, name] : kInputs)
    if (input == name) return "layers." + std::to_string(layer) + "." + module + "." + input + ".awq_scale";
  throw Error("awq: no input " + input);
}

at::Tensor& scales_of(AwqScales::Layer& l, const std::string& input) {
  return input == "down" ? l.scales : input == "gate_up" ? l.gate_up : input == "qkv" ? l.attn_in : l.attn_o;
}

const AwqScales::Layer* layer_of(const AwqScales& a, int64_t layer) {
  auto it = a.layers.find(layer);
  return it == a.layers.end() ? nullptr : &it->second;
}

// gate/up's shared input of one layer: the joint search (awq_norm.h) over the experts' gate
// rows and up rows (the latter after down's fold: the weights the jobs quantize).
void attach_gate_up(AwqScales& out, int64_t layer, std::vector<const SitePlan*> gates,
                    const std::map<std::pair<int64_t, int64_t>, const SitePlan*>& up_of, const Model& model, const at::Device& dev) {
  const Checkpoint& ck = *model.checkpoint;
  std::sort(gates.begin(), gates.end(), [](const SitePlan* a, const SitePlan* b) { return a->site->expert < b->site->expert; });
  const SitePlan& first = *gates[0];
  AwqScales::Layer& L = out.layers[layer];
  L.norm = awq_norm_fold(model, layer);
  const int64_t E_model = static_cast<int64_t>(std::count_if(model.sites.sites.begin(), model.sites.sites.end(), [&](const Site& s) {
    return s.layer == layer && s.role == Role::Expert && s.proj == "gate";
  }));
  if (static_cast<int64_t>(gates.size()) != E_model)
    throw Error(first.site->name + ": calibrator awq on gate/up's input scales the norm output every expert of layer " +
                std::to_string(layer) + " reads, but the rule covers " + std::to_string(gates.size()) + " of its " +
                std::to_string(E_model) + " experts; give every expert of the layer the same awq rule");
  const WeightCalibrator& cal = first.calibrator;
  const QuantFormat& fmt = format_by_name(first.format);
  const at::Tensor H_all = cal.hessians->hessian(layer, "gate_up");
  const at::Tensor tok_all = cal.hessians->tokens(layer, "gate_up");
  std::vector<at::Tensor> ws;
  std::vector<int64_t> experts;
  for (const SitePlan* sp : gates) {
    const auto up = up_of.find({layer, sp->site->expert});
    if (up == up_of.end() || up->second->format != first.format || sp->format != first.format ||
        sp->params.block_size != first.params.block_size || up->second->params.block_size != first.params.block_size)
      throw Error(sp->site->name + ": calibrator awq on gate/up's input needs gate and up of every expert of the layer quantized "
                  "with awq in one format (" + first.site->name + " is " + first.format + ")");
    if (sp->site->expert >= H_all.size(0))
      throw Error(cal.hessians->path() + ": layer " + std::to_string(layer) + " gate_up has Hessians for " +
                  std::to_string(H_all.size(0)) + " experts, the plan has expert " + std::to_string(sp->site->expert));
    const at::Tensor g = site_weight(ck, *sp->site).to(dev).to(at::kFloat);
    at::Tensor u = site_weight(ck, *up->second->site).to(dev).to(at::kFloat);
    if (L.scales.defined()) u = u / L.scales.select(0, sp->site->expert).to(dev).unsqueeze(-1);
    ws.push_back(at::cat({g, u}, 0));
    experts.push_back(sp->site->expert);
  }
  const at::Tensor W = at::stack(ws);  // [E, 2I, in]
  if (W.size(2) != H_all.size(1))
    throw Error(cal.hessians->path() + ": layer " + std::to_string(layer) + " gate_up Hessians are " + std::to_string(H_all.size(1)) +
                " wide, the weights " + first.site->name + " have " + std::to_string(W.size(2)) + " inputs");
  const at::Tensor idx = at::tensor(experts, at::kLong);
  const at::Tensor H = H_all.index_select(0, idx).to(dev);
  const at::Tensor tokens = tok_all.index_select(0, idx);
  const AwqSharedResult r =
      awq_shared_search(W, H, tokens, awq_format_block(fmt, first, W), awq_fake_quant(fmt, first.params), cal.awq_alpha_step);
  const double best = r.loss[r.best].item<double>();
  const int64_t rows = tokens.sum().item<int64_t>();
  const std::string where = "layers." + std::to_string(layer) + ".experts.gate_up";
  if (rows < cal.gptq_min_tokens || !(best < r.plain)) {
    L.gate_up = at::ones({W.size(2)}, at::kFloat);
    out.fallbacks.push_back(where + ": " +
                            (rows < cal.gptq_min_tokens ? std::to_string(rows) + " routed calibration rows < min_tokens " +
                                                              std::to_string(cal.gptq_min_tokens)
                                                        : std::string("no alpha lowers the output error below s = 1")) +
                            ": s = 1 (the norm and its readers unchanged)");
    return;
  }
  L.gate_up = r.scales.contiguous();
  L.gate_up_alpha = r.alphas[static_cast<size_t>(r.best)];
  L.gate_up_gain = r.plain > 0 ? best / r.plain : 1.0;
}

}  // namespace

at::Tensor AwqScales::expert_scales(int64_t layer, int64_t expert) const {
  const Layer* l = layer_of(*this, layer);
  if (!l || !l->scales.defined() || expert < 0 || expert >= l->scales.size(0)) return at::Tensor();
  return l->scales.select(0, expert);
}

bool plan_uses_awq(const Plan& plan) {
  for (const auto& sp : plan.sites)
    if (sp.quantize && sp.calibrator.is_awq()) return true;
  return false;
}

std::shared_ptr<const AwqScales> attach_awq_scales(Plan& plan, const Model& model, const at::Device& dev) {
  if (!plan_uses_awq(plan)) return nullptr;
  const Checkpoint& ck = *model.checkpoint;
  const ModelConfig& cfg = model.config;
  auto routed = [](const SitePlan& sp) { return sp.site->role == Role::Expert && sp.site->expert >= 0; };
  for (const auto& sp : plan.sites)
    if (sp.quantize && sp.calibrator.is_awq() && !routed(sp) && !(sp.site->role == Role::Attention && sp.site->layer >= 0))
      throw Error(sp.site->name + " (" + role_name(sp.site->role) + "): " + (sp.rule ? sp.rule->describe() : std::string("its rule")) +
                  " uses calibrator awq, which covers routed experts and attention; give this site's rule calibrator max or mse");
  bool any_down = false;
  for (const auto& sp : plan.sites) any_down = any_down || (sp.quantize && sp.calibrator.is_awq() && routed(sp) && sp.calibrator.awq_down);
  // gpt-oss's experts (model_type gpt_oss; swiglu_limit defaults to 7 when the config omits it).
  if (any_down && (cfg.text_model_type == "gpt_oss" || (cfg.text.is_object() && cfg.text.contains("swiglu_limit"))))
    throw Error(cfg.path + ": the experts' activation clamps up_proj's output (swiglu_limit: gpt-oss's (up + 1) * glu), so "
                "down_proj's AWQ scales do not fold into up_proj exactly; calibrator awq does not apply to this model "
                "(use gptq, mse or max, or awq inputs: [gate_up])");
  std::map<std::pair<int64_t, int64_t>, const SitePlan*> up_of, gate_of;  // (layer, expert) -> up's / gate's plan
  std::map<int64_t, std::vector<const SitePlan*>> downs;         // layer -> awq down sites
  std::map<int64_t, std::vector<const SitePlan*>> gates;         // layer -> awq gate sites (gate_up searched)
  std::map<int64_t, std::vector<const SitePlan*>> attention;     // layer -> awq attention sites
  for (const auto& sp : plan.sites) {
    if (!sp.quantize || !sp.calibrator.is_awq()) continue;
    if (!sp.calibrator.hessians)
      throw Error(sp.site->name + ": calibrator awq has no Hessians (pass --calib CALIB.h5 made by moeq calibrate --gptq-hessians)");
    if (!routed(sp)) {
      attention[sp.site->layer].push_back(&sp);
      continue;
    }
    if (sp.site->proj == "up") up_of[{sp.site->layer, sp.site->expert}] = &sp;
    if (sp.site->proj == "gate") gate_of[{sp.site->layer, sp.site->expert}] = &sp;
    if (sp.site->proj == "down" && sp.calibrator.awq_down) downs[sp.site->layer].push_back(&sp);
    if (sp.site->proj == "gate" && sp.calibrator.awq_gate_up) gates[sp.site->layer].push_back(&sp);
  }
  auto out = std::make_shared<AwqScales>();
  for (auto& [layer, sites] : downs) {
    std::sort(sites.begin(), sites.end(), [](const SitePlan* a, const SitePlan* b) { return a->site->expert < b->site->expert; });
    for (const SitePlan* sp : sites)
      if (!up_of.count({layer, sp->site->expert}))
        throw Error(sp->site->name + ": " + (sp->rule ? sp->rule->describe() : std::string("its rule")) +
                    " uses calibrator awq, whose down_proj scales fold into up_proj's rows, but " +
                    "layers." + std::to_string(layer) + ".experts." + std::to_string(sp->site->expert) +
                    ".up is not quantized with calibrator awq; give gate, up and down of the experts the same rule");
    const SitePlan& first = *sites[0];
    const WeightCalibrator& cal = first.calibrator;
    const QuantFormat& fmt = format_by_name(first.format);
    for (const SitePlan* sp : sites)
      if (sp->format != first.format || sp->params.block_size != first.params.block_size)
        throw Error(sp->site->name + ": calibrator awq needs one format for a layer's down_proj experts (" + first.site->name +
                    " is " + first.format + ")");
    const at::Tensor H_all = cal.hessians->hessian(layer, "down");
    const at::Tensor tok_all = cal.hessians->tokens(layer, "down");
    const int64_t E_all = H_all.size(0), in = H_all.size(1);
    std::vector<at::Tensor> ws;
    std::vector<int64_t> experts;
    for (const SitePlan* sp : sites) {
      if (sp->site->expert >= E_all)
        throw Error(cal.hessians->path() + ": layer " + std::to_string(layer) + " down has Hessians for " + std::to_string(E_all) +
                    " experts, the plan has expert " + std::to_string(sp->site->expert));
      ws.push_back(site_weight(ck, *sp->site).to(dev).to(at::kFloat));
      experts.push_back(sp->site->expert);
    }
    const at::Tensor W = at::stack(ws);  // [E, out, in]
    if (W.size(2) != in)
      throw Error(cal.hessians->path() + ": layer " + std::to_string(layer) + " down Hessians are " + std::to_string(in) + " x " +
                  std::to_string(in) + ", the weights " + first.site->name + " have " + std::to_string(W.size(2)) + " inputs");
    const at::Tensor idx = at::tensor(experts, at::kLong);
    const at::Tensor H = H_all.index_select(0, idx).to(dev);
    const at::Tensor tokens = tok_all.index_select(0, idx);
    // mean|x| ~ RMS: sqrt(diag(H) / 2) (H = 2/n X^T X). A dead channel (no signal) gets the
    // expert's smallest live value: its s does not change down's output, but awq_lite's
    // 1e-4 clamp would put a 1e4-fold spread into up's rows.
    at::Tensor x_mean = (at::diagonal(H, 0, -2, -1) / 2).clamp_min(0).sqrt();
    {
      const at::Tensor live_min = at::where(x_mean > 0, x_mean, at::full_like(x_mean, INFINITY)).amin(-1, true);
      x_mean = at::where(x_mean > 0, x_mean, at::where(at::isfinite(live_min), live_min, at::ones_like(live_min)));
    }
    const AwqFakeQuant fq = awq_fake_quant(fmt, first.params);
    const int64_t block = awq_format_block(fmt, first, W);
    const AwqResult r = awq_search(W, H, x_mean, block, fq, cal.awq_alpha_step);
    // s = 1 (the plain path) as a candidate too, and too few tokens.
    const at::Tensor d1 = W - fq(W);
    const at::Tensor plain = ((at::bmm(d1, H) * d1).sum({1, 2}) / (2.0 * W.size(1))).to(at::kCPU);
    const at::Tensor best = r.loss.gather(1, r.best.view({-1, 1})).squeeze(1).to(at::kCPU);
    const at::Tensor few = tokens < cal.gptq_min_tokens;
    const at::Tensor keep1 = few | (best >= plain);
    AwqScales::Layer L;
    L.scales = at::ones({E_all, in}, at::kFloat);
    L.alpha = at::full({E_all}, -1.0f);
    L.gain = at::ones({E_all}, at::kFloat);
    const at::Tensor alphas = at::tensor(r.alphas, at::kDouble).to(at::kFloat);
    // Any constant c gives the same down error (s c and s alike); c is chosen so the folded up
    // (rows / s) keeps the original up's amax, so gate and up's shared global scale stays put.
    std::vector<at::Tensor> ups;
    for (const SitePlan* sp : sites) ups.push_back(site_weight(ck, *up_of.at({layer, sp->site->expert})->site).to(at::kFloat));
    const at::Tensor up_rows = at::stack(ups).abs().amax(-1);  // [E, in]: up's rows are down's inputs
    const at::Tensor s_cpu = r.scales.to(at::kCPU);
    const at::Tensor c = (up_rows / s_cpu).amax(-1, true) / up_rows.amax(-1, true).clamp_min(FLT_MIN);
    const at::Tensor s_norm = at::where(c > 0, s_cpu * c, s_cpu);
    const at::Tensor sc = at::where(keep1.view({-1, 1}), at::ones_like(s_norm), s_norm);
    L.scales.index_copy_(0, idx, sc);
    L.alpha.index_copy_(0, idx, at::where(keep1, at::full_like(best, -1.0f), alphas.index_select(0, r.best.to(at::kCPU))));
    L.gain.index_copy_(0, idx, at::where(keep1, at::ones_like(best), best / plain.clamp_min(FLT_MIN)));
    const auto tk = tokens.contiguous();
    const auto f = few.contiguous(), k1 = keep1.contiguous();
    for (size_t i = 0; i < sites.size(); ++i) {
      if (!k1.data_ptr<bool>()[i]) continue;
      out->fallbacks.push_back(sites[i]->site->name + ": " +
                               (f.data_ptr<bool>()[i] ? std::to_string(tk.data_ptr<int64_t>()[i]) + " routed calibration tokens < min_tokens " +
                                                            std::to_string(cal.gptq_min_tokens)
                                                      : std::string("no alpha lowers the output error below s = 1")) +
                               ": s = 1 (plain " + first.format + ")");
    }
    out->layers[layer] = std::move(L);
  }
  for (auto& [layer, sites] : gates) attach_gate_up(*out, layer, sites, up_of, model, dev);
  for (auto& [layer, sites] : attention) attach_attention_scales(*out, layer, sites, model, dev);
  for (auto& sp : plan.sites) {
    if (!sp.quantize) continue;
    if (sp.calibrator.is_awq()) {
      sp.calibrator.awq = out;
      continue;
    }
    // A site the fold changes (a reader of a folded norm: router, shared expert, q/k/v; v_proj
    // under o's fold) quantized by another calibrator: its job folds it first (gptq with the
    // folded Hessian, gptq_job.cpp).
    if (!awq_folds(*out, *sp.site)) continue;
    sp.calibrator.awq = out;
  }
  return out;
}

std::vector<at::Tensor> awq_fold_stacks(const std::vector<SiteBatch>& job, const std::vector<at::Tensor>& stacks) {
  std::vector<at::Tensor> out;
  for (size_t j = 0; j < job.size(); ++j) {
    const SiteBatch& b = job[j];
    bool folds = false;
    for (const SitePlan* sp : b.sites) folds = folds || sp->calibrator.awq != nullptr;
    if (!folds) {
      out.push_back(stacks[j]);
      continue;
    }
    auto fold = [](const SitePlan& sp, const at::Tensor& w) {
      return (sp.calibrator.awq ? awq_fold_weight(*sp.calibrator.awq, *sp.site, w) : w).to(at::kFloat);
    };
    if (b.sites.size() == 1) {
      out.push_back(fold(*b.sites[0], stacks[j]));
      continue;
    }
    std::vector<at::Tensor> per;
    for (size_t i = 0; i < b.sites.size(); ++i) per.push_back(fold(*b.sites[i], stacks[j].select(0, static_cast<int64_t>(i))));
    out.push_back(at::stack(per));
  }
  return out;
}

void write_awq_scales(const AwqScales& a, const std::string& export_dir) {
  const std::string dir = export_dir + "/" + std::filesystem::path(kAwqScalesFile).parent_path().string();
  const std::string tmp = dir + "/tmp-" + std::to_string(::getpid());
  std::filesystem::create_directories(tmp);
  std::vector<TensorSpec> specs;
  std::vector<std::pair<std::string, at::Tensor>> data;
  for (const auto& [layer, l] : a.layers) {
    if (l.scales.defined()) {
      specs.push_back({scale_name(layer), DType::F32, {l.scales.size(0), l.scales.size(1)}});
      data.emplace_back(scale_name(layer), l.scales.contiguous());
    }
    for (const auto& [input, t] : {std::pair<const char*, const at::Tensor*>{"gate_up", &l.gate_up}, {"qkv", &l.attn_in}, {"o", &l.attn_o}})
      if (t->defined()) {
        specs.push_back({scale_name(layer, input), DType::F32, {t->size(0)}});
        data.emplace_back(scale_name(layer, input), t->contiguous());
      }
  }
  {
    SafetensorsWriter w(tmp, specs, ~0ull,
                        {{"format", "moeq-awq-scales"},
                         {"awq_scale", "down_proj's input channel j: the export's down weight = source x s_j (columns), "
                                       "up weight = source / s_j (rows); consumers need nothing of it"},
                         {"gate_up_awq_scale", "gate/up's input channel j (the norm before the MoE): the export's norm weight = "
                                               "source / s_j ((1 + w) norms: (1 + w) / s_j - 1), gate, up, router and shared "
                                               "expert weights = source x s_j (columns)"},
                         {"qkv_awq_scale", "the attention's input channel j (input_layernorm's output): the norm weight = source / s_j "
                                           "((1 + w) norms: (1 + w) / s_j - 1), q/k/v (every reader's) weights = source x s_j (columns)"},
                         {"o_awq_scale", "o_proj's input channel (h, d): o weight = source x s (columns); v_proj's row (g, d) and its "
                                         "bias = source / s of head g * heads / kv_heads (the heads of a kv group share s)"}});
    for (const auto& [name, t] : data) w.write(name, t.data_ptr(), t.nbytes());
    w.finish();
  }
  std::filesystem::rename(tmp + "/model.safetensors", export_dir + "/" + kAwqScalesFile);
  std::filesystem::remove_all(tmp);
}

std::shared_ptr<const AwqScales> read_awq_scales(const std::string& export_dir, const Model* source) {
  const std::string path = export_dir + "/" + kAwqScalesFile;
  if (!std::filesystem::exists(path)) return nullptr;
  const auto f = SafetensorsFile::open(path);
  if (!f->metadata().count("format") || f->metadata().at("format") != "moeq-awq-scales")
    throw Error(path + ": not a moeq AWQ scales file (metadata format is not moeq-awq-scales)");
  auto out = std::make_shared<AwqScales>();
  for (const auto& t : f->tensors()) {
    const std::string pre = "layers.";
    std::string input;
    size_t post_len = 0;
    for (const auto& [module, name] : kInputs) {
      const std::string post = std::string(".") + module + "." + name + ".awq_scale";
      if (t.name.rfind(pre, 0) == 0 && t.name.size() > pre.size() + post.size() &&
          t.name.compare(t.name.size() - post.size(), post.size(), post) == 0) {
        input = name;
        post_len = post.size();
      }
    }
    const size_t dims = input == "down" ? 2 : 1;
    if (input.empty() || t.dtype != DType::F32 || t.shape.size() != dims)
      throw Error(path + ": unexpected tensor " + t.name +
                  " (expected layers.L.experts.down.awq_scale F32 [E, in], or layers.L.experts.gate_up / attn.qkv / attn.o"
                  ".awq_scale F32 [in])");
    const int64_t layer = std::stoll(t.name.substr(pre.size(), t.name.size() - pre.size() - post_len));
    const at::Tensor v = at::from_blob(const_cast<uint8_t*>(f->data(t)), t.shape, at::TensorOptions().dtype(at::kFloat)).clone();
    AwqScales::Layer& l = out->layers[layer];
    scales_of(l, input) = v;
    if (!source) continue;
    if (input == "gate_up") l.norm = awq_norm_fold(*source, layer);
    if (input == "qkv") l.attn_norm = awq_attn_norm_fold(*source, layer);
    if (input == "o") l.vo = awq_vo_fold(*source, layer);
  }
  return out;
}

}  // namespace moeq
